"""X/Y/Z axes for ControlNet units, by sd-webui-controlnet's names (``[ControlNet] Weight`` …), as plain data.

sd-webui-controlnet's axes vary the first unit; ``[ControlNet 1] Weight`` and the like vary unit 1, 2 …. A value
replaces one field of that unit, everything else of the request is kept; a request without that unit is refused in
one line. `axes.py` turns the table into `Axis` objects (this module holds no `Axis`, so it imports nothing of it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from ..recipe.control_units import check_unit, read_units, unit_from_dict
from ..recipe.request import PaintRequest

FIELDS = (
    ("Weight", "float", "weight", 0.0),
    ("Guidance Start", "float", "guidance_start", 0.0),
    ("Guidance End", "float", "guidance_end", 0.0),
    ("Model", "str", "model", 0.9),
    ("Preprocessor", "str", "module", 0.0),
    ("Control Mode", "str", "control_mode", 0.0),
    ("Resize Mode", "str", "resize_mode", 0.0),
    ("Pre Resolution", "int", "processor_res", 0.0),
    ("Pre Threshold A", "float", "threshold_a", 0.0),
    ("Pre Threshold B", "float", "threshold_b", 0.0),
)
"""(name after ``[ControlNet] ``, value kind, the unit field it sets, cost) — sd-webui-controlnet's axes; a model
costs a load, so its axis runs outside cheaper ones (the extension's 0.9)."""
UNITS = 3
"""Units that get axes of their own: 0 (``[ControlNet] …``), 1 and 2 (``[ControlNet 1] …``)."""


def label(name: str, unit: int) -> str:
    """``[ControlNet] Weight`` for unit 0, ``[ControlNet 2] Weight`` for unit 2."""
    return f"[ControlNet] {name}" if unit == 0 else f"[ControlNet {unit}] {name}"


def aliases(name: str, unit: int) -> tuple[str, ...]:
    """Other spellings: ``ControlNet 0 weight`` for unit 0 (``ControlNet weight`` already matches the label)."""
    extra = {"Preprocessor": ("Module",), "Pre Resolution": ("Processor Res",)}.get(name, ())
    names = (name, *extra)
    own = tuple(f"ControlNet {unit} {each}" for each in names)
    return own + (tuple(f"ControlNet {each}" for each in extra) if unit == 0 else ())


def apply_to_unit(unit: int, field: str) -> Callable[[PaintRequest, Any, list[Any]], dict[str, Any]]:
    """The axis function: `field` of unit `unit` set to the value; the other units as they were."""

    def apply(request: PaintRequest, value: Any, values: list[Any]) -> dict[str, Any]:
        units = list(read_units(request.controlnet))
        if unit >= len(units):
            have = f"only {len(units)}" if units else "none"
            msg = f"controlnet: the axis varies unit {unit}, and the request has {have} (add units with --controlnet)"
            raise ValueError(msg)
        typed = unit_from_dict({field: value})  # typed and checked as a unit's own field (names, ranges)
        changes = {field: getattr(typed, field)}
        if field == "model":  # a new model: the old one's hash no longer applies
            changes["model_hash"] = typed.model_hash
        units[unit] = check_unit(dataclasses.replace(units[unit], **changes))
        return {"controlnet": tuple(units)}

    return apply


def control_axes() -> list[tuple[str, str, float, tuple[str, ...], Callable[..., dict[str, Any]]]]:
    """Every ControlNet axis as (label, kind, cost, aliases, apply), unit by unit."""
    return [
        (label(name, unit), kind, cost, aliases(name, unit), apply_to_unit(unit, field))
        for unit in range(UNITS)
        for name, kind, field, cost in FIELDS
    ]
