"""Option values: text (a magic line, ``%paint config``, a pasted recipe) → typed values, and each value's checks.

The rules come from the fields' metadata (``fields/``): types, ranges, choices, A1111 keys. `PaintRequest` checks
a whole request with them; the pasted-data reader checks one value at a time (`check_value`) to paint around what
it cannot honour.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import fields
from typing import Any

from .. import library
from .control_units import ControlUnit, check_unit, read_units
from .fields import DTYPE_ALIASES, MAX_SIDE, MachineOptions
from .samplers import read_sampler, read_schedule
from .step_cache import normalise_cache

_FIELDS = {f.name: f for f in fields(MachineOptions)}
INFOTEXT_KEYS = {f.metadata["infotext"]: f.name for f in fields(MachineOptions) if f.metadata.get("infotext")}
"""A1111's infotext key → the option it sets."""


OPTIONS_LIST_HINT = "every option: %%paint? or %paint config"
"""Where a refusal of an unknown option points, instead of listing all seventy."""


def unknown_option_line(what: str, closest: list[str]) -> str:
    """The one line an unknown option gets: its closest names, and where the full list is."""
    hint = f"; did you mean {' or '.join(closest)}?" if closest else ""
    return f"unknown option {what}{hint} ({OPTIONS_LIST_HINT})"


def option_fields() -> tuple[dataclasses.Field, ...]:
    """Return the request's fields: the one declaration every front end is generated from."""
    return fields(MachineOptions)


def field_kind(f: dataclasses.Field) -> str:
    """The option's value type as a name: ``int``, ``float``, ``bool`` or ``str`` (``int | None`` is ``int``)."""
    return str(f.type).replace(" | None", "").replace("Optional[", "").rstrip("]")


def coerce_value(name: str, value: Any) -> Any:
    """Turn a value typed as text (magic line, config, infotext) into the option's type.

    Raises
    ------
    ValueError
        If the text is not a value of that type, naming the option.
    """
    f = _FIELDS.get(name)
    if f is None:
        raise ValueError(unknown_option_line(f"'{name}'", difflib.get_close_matches(name, _FIELDS, n=3)))
    kind = field_kind(f)
    if kind == "tuple":  # ControlNet units: dicts, unit texts (one per --controlnet), or units
        return read_units(value)
    if value is None or not isinstance(value, str):
        if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value
    text = value.strip()
    try:
        if kind == "int":
            if text.lower() in ("", "none", "auto") and f.default is None:
                return None
            return int(float(text)) if re.fullmatch(r"-?\d+(\.0*)?", text) else int(text)
        if kind == "float":
            return float(text)
        if kind == "bool":
            lowered = text.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError
    except ValueError:
        expected = {"int": "a whole number", "float": "a number"}.get(kind, "true or false")
        msg = f"{name}: expected {expected} (got '{text}')"
        raise ValueError(msg) from None
    if name == "dtype":
        return DTYPE_ALIASES.get(text.lower(), text.lower())
    if name == "cache":
        return normalise_cache(text)
    return text


def check_value(name: str, value: Any) -> None:
    """Check one option's value alone, as `PaintRequest.validate` would; raise its one-line refusal."""
    for key, typed in coerce_options({name: value}).items():
        check_field(_FIELDS[key], typed)


def coerce_options(options: dict[str, Any]) -> dict[str, Any]:
    """Coerce every value of an options dict (see `coerce_value`).

    ``size`` (``"512x768"``, as ``--size`` and A1111 write it) is accepted wherever options are, and becomes
    ``width`` and ``height``; this is the one place that happens.
    """
    options = dict(options)
    if "size" in options:
        size = options.pop("size")
        if size not in (None, ""):
            options["width"], options["height"] = parse_size(str(size))
    for sampler, schedule in (("sampler", "schedule"), ("hires_sampler", "hires_schedule")):
        if isinstance(options.get(sampler), str):  # old names carry their schedule: 'DPM++ 2M Karras'
            options[sampler], carried = read_sampler(options[sampler])
            if carried:  # the name's own schedule wins, as A1111 reads it
                options[schedule] = carried
        if isinstance(options.get(schedule), str):
            options[schedule] = read_schedule(options[schedule])
    return {name: coerce_value(name, value) for name, value in options.items()}


def check_field(f: dataclasses.Field, value: Any) -> None:
    """Check one field's typed value against its type, range and choices; raise the one-line refusal."""
    meta = f.metadata
    kind = field_kind(f)
    if value is None and f.default is None:
        return
    if kind == "tuple":
        if not isinstance(value, tuple) or not all(isinstance(unit, ControlUnit) for unit in value):
            raise ValueError(f"{f.name}: expected units read by recipe.control_units.read_units (got {value!r})"[:199])
        for unit in value:
            check_unit(unit)
        return
    expected = {"int": int, "float": (int, float), "bool": bool, "str": str}[kind]
    if not isinstance(value, expected) or (kind in ("int", "float") and isinstance(value, bool)):
        msg = f"{f.name}: expected {kind} (got {value!r})"
        raise ValueError(msg)
    if meta["range"] is not None:
        low, high = meta["range"]
        if not low <= value <= high:
            msg = f"{f.name}: must be {format_number(low)}–{format_number(high)} (got {format_number(value)})"
            raise ValueError(msg)
    if meta.get("check") is not None:
        meta["check"](value)
        return
    if meta["choices"] is not None and value not in meta["choices"] and value not in meta.get("also", ()):
        if meta.get("models") == "upscaler":  # or an upscaler model in the models folder's ESRGAN/
            if library.find_upscaler(value) is not None:
                return
            raise ValueError(library.upscaler_missing_message(value, meta["choices"], f.name))
        hint = difflib.get_close_matches(value, meta["choices"], n=1, cutoff=0.5)
        if not hint:
            hint = [c for c in meta["choices"] if c.lower() == value.lower()]
        short = len(meta["choices"]) <= 8
        allowed = f"allowed: {', '.join(meta['choices'])}" if short else "every choice: %%paint? or docs/options.md"
        msg = f"{f.name}: unknown '{value}'" + (f"; did you mean '{hint[0]}'?" if hint else "")
        raise ValueError(f"{msg} ({allowed})")


def check_side_pair(name: str, text: str) -> None:
    """A ``WxH`` option: two multiples of 8, each 8–4096."""
    try:
        width, height = parse_size(text)
    except ValueError:
        msg = f"{name}: expected WIDTHxHEIGHT such as 1024x1024 (got '{text}')"
        raise ValueError(msg) from None
    if not (8 <= width <= MAX_SIDE and 8 <= height <= MAX_SIDE):
        msg = f"{name}: width and height must be 8–{MAX_SIDE} (got {text})"
        raise ValueError(msg)
    if width % 8 or height % 8:
        msg = f"{name}: width and height must be multiples of 8 (got {text})"
        raise ValueError(msg)


def format_number(value: float) -> str:
    """Write numbers the way A1111 does: 7 not 7.0, 6.5 stays 6.5."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``WxH`` (e.g. ``512x768``) into width and height.

    Raises
    ------
    ValueError
        If the text is not two whole numbers joined by ``x``.
    """
    match = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if not match:
        msg = f"size: expected WIDTHxHEIGHT such as 512x512 (got '{text}')"
        raise ValueError(msg)
    return int(match.group(1)), int(match.group(2))


MAX_OUTPAINT = 2048
"""The most pixels outpainting adds on one side."""


def parse_margins(text: str) -> tuple[int, int, int, int]:
    """``--outpaint``'s pixels as (left, right, top, bottom): four numbers, or one for every side.

    Raises
    ------
    ValueError
        For anything else, a side outside 0–2048, or nothing to add.
    """
    parts = [part.strip() for part in str(text).replace(" ", ",").split(",") if part.strip()]
    if len(parts) not in (1, 4) or not all(part.isdigit() for part in parts):
        msg = f"outpaint: expected LEFT,RIGHT,TOP,BOTTOM pixels or one number for every side (got '{text}')"
        raise ValueError(msg)
    sides = [int(part) for part in parts] * (4 if len(parts) == 1 else 1)
    if max(sides) > MAX_OUTPAINT or max(sides) == 0:
        msg = f"outpaint: each side must be 0–{MAX_OUTPAINT} pixels and one above 0 (got '{text}')"
        raise ValueError(msg)
    left, right, top, bottom = sides
    return left, right, top, bottom
