"""ControlNet units as sd-webui-controlnet names them: its API's dicts, its infotext text, and our cell form.

A unit is what one ControlNet tab holds: an image, a preprocessor (``module``) and its values, a model, a weight,
guidance start/end, a control mode, a resize mode and Pixel Perfect. From Python it is a dict with the extension's
API field names; in a cell ``--controlnet 'Module: canny, Model: control_v11p_sd15_canny, Weight: 0.8,
Image: edges.png'`` (its infotext text plus ``Image:``); in a picture's generation data ``ControlNet 0: "…"`` — the
current form (``Module: …, Model: NAME [hash], Weight: …``) and the older one (``preprocessor: …, starting/ending:
(0, 1), preprocessor params: (512, 100, 200)``) are both read. No torch: recipes are read without the engine.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from .control_names import UNKNOWN_UNION_TYPE, control_mode_name, resize_mode_name, union_control_type_name

HR_OPTIONS = ("Both", "Low res only", "High res only")
"""sd-webui-controlnet's "Hr Option": in which pass of a hires fix the unit applies."""


@dataclass(frozen=True)
class ControlUnit:
    """One ControlNet unit, with sd-webui-controlnet's API field names and defaults (-1: the module's default)."""

    module: str = "none"
    model: str = "None"
    weight: float = 1.0
    resize_mode: str = "Crop and Resize"
    processor_res: float = -1
    threshold_a: float = -1
    threshold_b: float = -1
    guidance_start: float = 0.0
    guidance_end: float = 1.0
    pixel_perfect: bool = False
    control_mode: str = "Balanced"
    image: Any = None
    model_hash: str | None = None
    hr_option: str = "Both"
    union_control_type: str = UNKNOWN_UNION_TYPE
    """A union ControlNet's control type (``Depth`` …); ``Unknown`` takes it from the module (union.py)."""
    effective_region_mask: Any = None
    """Where the unit acts (white), the extension's API field; a file, variable or picture, as ``image`` is."""
    advanced_weighting: tuple[float, ...] | None = None
    """The extension's per-block weights: one per ControlNet residual (SD1.5 13, SDXL 10) or IP-Adapter
    cross-attention layer (SD1.5 16, SDXL 11), in place of `weight` (the engine checks the count: block_weights.py)."""


INFOTEXT_FIELDS = (
    "module",
    "model",
    "weight",
    "resize_mode",
    "processor_res",
    "threshold_a",
    "threshold_b",
    "guidance_start",
    "guidance_end",
    "pixel_perfect",
    "control_mode",
)
"""The fields sd-webui-controlnet writes, in its order (``Module: …, Model: …, …, Control Mode: …``)."""

_NAMES = {f.name for f in dataclasses.fields(ControlUnit)}
_ALIASES = {"guidance": "guidance_end", "input_image": "image", "preprocessor": "module"}
"""Old API names sd-webui-controlnet still accepts."""
_IGNORED = {"enabled", "low_vram", "lowvram", "save_detected_map", "is_ui", "input_mode", "loopback", "output_dir"}
"""API and infotext fields that change nothing here (memory hints, the UI's own state)."""
_NUMBERS = ("weight", "processor_res", "threshold_a", "threshold_b", "guidance_start", "guidance_end")


def format_number(value: float) -> str:
    """Numbers as A1111 and sd-webui-controlnet write them: 1 not 1.0, 0.8 stays 0.8."""
    return str(int(value)) if float(value).is_integer() else str(value)


def _key(text: str) -> str:
    """``Threshold A`` / ``threshold_a`` / ``guidance start`` → ``threshold_a``."""
    name = re.sub(r"[\s_]+", "_", text.strip().lower())
    return _ALIASES.get(name, name)


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"controlnet: {name} must be True or False, not {value!r}")


def _number(name: str, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"controlnet: {name} must be a number, not {value!r}") from None


def _split_model(model: str) -> tuple[str, str | None]:
    """``control_v11p_sd15_canny [d14c016b]`` → the name and the bracketed short hash."""
    match = re.fullmatch(r"(.*?)\s*\[([0-9a-fA-F]{8,10})\]\s*", model)
    return (match.group(1), match.group(2).lower()) if match else (model.strip(), None)


def _weights(value: Any) -> tuple[float, ...] | None:
    """``advanced_weighting``: a list of numbers, or its text (``[1, 0.5, 0]``); None or empty: none."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null", "[]")):
        return None
    if not isinstance(value, (str, list, tuple)):
        raise ValueError(f"controlnet: advanced weighting is a list of numbers (one per block), not {value!r}"[:199])
    items = re.split(r"[\s,]+", value.strip().strip("[]()")) if isinstance(value, str) else list(value)
    return tuple(_number("advanced weighting", item) for item in items if str(item).strip())


def _typed(name: str, value: Any) -> Any:
    if name == "advanced_weighting":
        return _weights(value)
    if name in _NUMBERS:
        return _number(name.replace("_", " "), value)
    if name == "pixel_perfect":
        return _bool("pixel perfect", value)
    if name == "resize_mode":
        return resize_mode_name(value)
    if name == "control_mode":
        return control_mode_name(value)
    if name == "union_control_type":
        return union_control_type_name(value)
    if name == "hr_option":
        text = str(value).strip()
        match = [option for option in HR_OPTIONS if option.lower() == text.lower()]
        if not match:
            raise ValueError(f"controlnet: unknown Hr Option {text!r}; one of: {', '.join(HR_OPTIONS)}")
        return match[0]
    if name in ("module", "model"):
        return str(value).strip()
    return value


def check_unit(unit: ControlUnit) -> ControlUnit:
    """Refuse, in one line, a weight outside 0-2 or a guidance window outside 0-1 or backwards; return the unit."""
    if not 0.0 <= unit.weight <= 2.0:
        raise ValueError(f"controlnet: weight must be 0-2, not {format_number(unit.weight)}")
    for name in ("guidance_start", "guidance_end"):
        value = getattr(unit, name)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"controlnet: {name.replace('_', ' ')} must be 0-1, not {format_number(value)}")
    if unit.guidance_start > unit.guidance_end:
        raise ValueError(
            f"controlnet: guidance start ({format_number(unit.guidance_start)}) is after guidance end "
            f"({format_number(unit.guidance_end)})"
        )
    if not str(unit.module).strip():
        raise ValueError("controlnet: a unit needs a module (preprocessor), 'none' for a ready map")
    weights = unit.advanced_weighting
    if weights is not None and (not weights or not all(0.0 <= w <= 2.0 for w in weights)):
        shown = ", ".join(format_number(w) for w in weights)
        raise ValueError(f"controlnet: advanced weighting must be numbers 0-2, one per block, not [{shown}]"[:199])
    return unit


def unit_from_dict(values: dict[str, Any], strict: bool = True) -> ControlUnit:
    """A unit from sd-webui-controlnet's API fields (or the infotext's, ``Threshold A`` …).

    `strict` refuses a field we do not know (a typo from Python or a cell); pasted data passes ``False`` and the
    unknown fields are dropped.
    """
    typed: dict[str, Any] = {}
    for raw, value in values.items():
        name = _key(str(raw))
        if name in _IGNORED or (name not in _NAMES and not strict):
            continue
        if name not in _NAMES or name == "model_hash":
            fields = ", ".join(n for n in _NAMES if n != "model_hash")
            raise ValueError(f"controlnet: unknown unit field {str(raw)!r}; fields: {fields}"[:199])
        typed[name] = _typed(name, value)
    if "model" in typed:
        typed["model"], found_hash = _split_model(typed["model"])
        typed.setdefault("model_hash", found_hash)
    return check_unit(ControlUnit(**typed))


def _pairs(text: str) -> list[tuple[str, str]]:
    """``Key: value, Key: value`` split at top-level commas (not inside parentheses or quotes)."""
    parts, depth, quote, start = [], 0, "", 0
    for i, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "([":
            depth += 1
        elif char in ")]":
            depth = max(depth - 1, 0)
        elif char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    pairs = []
    for part in (p.strip() for p in parts):
        if not part:
            continue
        key, sep, value = part.partition(":")
        if not sep:
            raise ValueError(f"controlnet: expected 'Key: value' in the unit, got {part!r}"[:199])
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        pairs.append((key.strip(), value))
    return pairs


def _numbers(text: str) -> list[str]:
    return [x.strip() for x in text.strip().strip("()").split(",")]


def parse_unit_text(text: str, strict: bool = True) -> ControlUnit:
    """A unit from its text: the cell's ``Module: canny, …, Image: edges.png`` or a pasted ``ControlNet N`` value.

    The older infotext's ``starting/ending: (0, 1)`` and ``preprocessor params: (512, 100, 200)`` are read too;
    ``Mask: FILE`` is the cell's short form of ``Effective Region Mask: FILE``.
    """
    values: dict[str, Any] = {}
    for key, value in _pairs(str(text)):
        name = _key(key)
        if name == "starting/ending":
            values["guidance_start"], values["guidance_end"] = _numbers(value)[:2]
        elif name == "preprocessor_params":
            values["processor_res"], values["threshold_a"], values["threshold_b"] = _numbers(value)[:3]
        elif name == "mask":
            values["effective_region_mask"] = value
        else:
            values[key] = value
    return unit_from_dict(values, strict=strict)


def read_units(value: Any) -> tuple[ControlUnit, ...]:
    """The option's value from anywhere: a unit, a dict, a cell text, or a list of them (disabled units dropped)."""
    if value is None or value == "" or value == ():
        return ()
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    units = []
    for item in items:
        if isinstance(item, ControlUnit):
            units.append(check_unit(item))
        elif isinstance(item, dict):
            if item.get("enabled", True) is not False:
                units.append(unit_from_dict(item))
        elif isinstance(item, str):  # one unit a line (the panel's box holds several)
            units += [parse_unit_text(line) for line in item.splitlines() if line.strip()]
        else:
            raise ValueError(f"controlnet: a unit is a dict or 'Module: …, Model: …' text, not {type(item).__name__}")
    return tuple(units)


def _value_text(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return format_number(value)
    return str(value)


def format_unit(unit: ControlUnit, hires: bool = False) -> str:
    """The unit as sd-webui-controlnet writes it in ``ControlNet N`` (values a module leaves at -1 left out).

    ``Hr Option`` (the extension's last field) is written for a hires picture, or when it is not the default.
    """
    parts = []
    for name in INFOTEXT_FIELDS:
        value = getattr(unit, name)
        if name in ("processor_res", "threshold_a", "threshold_b") and float(value) == -1:
            continue
        if name == "model" and unit.model_hash:
            value = f"{value} [{unit.model_hash}]"
        parts.append(f"{name.replace('_', ' ').title()}: {_value_text(name, value)}")
    if hires or unit.hr_option != "Both":
        parts.append(f"Hr Option: {unit.hr_option}")
    if unit.union_control_type != UNKNOWN_UNION_TYPE:  # the extension's field name: its parser reads it back
        parts.append(f"Union Control Type: {unit.union_control_type}")
    return ", ".join(parts)


def weights_text(weights: tuple[float, ...]) -> str:
    """``advanced_weighting`` as written: ``[1, 0.5, 0]``."""
    return f"[{', '.join(format_number(w) for w in weights)}]"


def format_unit_option(unit: ControlUnit) -> str:
    """The cell's ``--controlnet`` text for `unit`: its infotext text, then ``Image:`` and ``Effective Region Mask:``.

    Each is written when it is a path (the extension's infotext writes neither); ``Advanced Weighting: [...]``
    before them when the unit has per-block weights.
    """
    text = format_unit(unit)
    if unit.advanced_weighting is not None:  # (bracketed: its commas stay inside the one value)
        text = f"{text}, Advanced Weighting: {weights_text(unit.advanced_weighting)}"
    text = f"{text}, Image: {unit.image}" if isinstance(unit.image, str) else text
    mask = unit.effective_region_mask
    return f"{text}, Effective Region Mask: {mask}" if isinstance(mask, str) else text


def units_text(units: tuple[ControlUnit, ...]) -> str:
    """Units as the panel's box shows them: one cell-form unit a line."""
    return "\n".join(format_unit_option(unit) for unit in units)


_UNIT_KEY = re.compile(r"ControlNet(?: (\d+))?")
WEIGHTS_KEY = re.compile(r"ControlNet (\d+) Advanced Weighting")
"""A unit's per-block weights in generation data: a key of its own (the extension's infotext writes none, and
its parser refuses a unit text holding a list), so the extension still pastes the unit itself."""


def infotext_units(params: dict[str, str]) -> dict[int, ControlUnit]:
    """The units of pasted generation data, by number (``ControlNet 0``…; a lone ``ControlNet`` is unit 0).

    ``ControlNet N Advanced Weighting: "[…]"`` gives unit N its per-block weights.
    """
    units, weights = {}, {}
    for key, value in params.items():
        match, weighting = _UNIT_KEY.fullmatch(key.strip()), WEIGHTS_KEY.fullmatch(key.strip())
        if match:
            units[int(match.group(1) or 0)] = parse_unit_text(value, strict=False)
        elif weighting:
            weights[int(weighting.group(1))] = _weights(value)
    for number, values in weights.items():
        if number in units:
            units[number] = check_unit(dataclasses.replace(units[number], advanced_weighting=values))
    return dict(sorted(units.items()))


def units_infotext(units: tuple[ControlUnit, ...], hires: bool = False) -> dict[str, str]:
    """The ``ControlNet N`` keys a picture painted with `units` carries (`hires`: with each unit's Hr Option).

    A unit with per-block weights adds ``ControlNet N Advanced Weighting`` after its text.
    """
    params = {}
    for i, unit in enumerate(units):
        params[f"ControlNet {i}"] = format_unit(unit, hires)
        if unit.advanced_weighting is not None:
            params[f"ControlNet {i} Advanced Weighting"] = weights_text(unit.advanced_weighting)
    return params


def unit_images(text: str, count: int) -> dict[int, str]:
    """``--controlnet-image``: ``N=FILE`` pairs (comma-separated) or one ``FILE`` for every unit, by unit number."""
    text = str(text or "").strip()
    if not text:
        return {}
    pairs = [part.strip() for part in text.split(",") if part.strip()]
    if not all(re.fullmatch(r"\d+\s*=.+", part) for part in pairs):
        return dict.fromkeys(range(count), text)
    images = {}
    for part in pairs:
        number, _, path = part.partition("=")
        images[int(number)] = path.strip()
    return images


def with_images(units: tuple[ControlUnit, ...], text: str) -> tuple[ControlUnit, ...]:
    """`units` with ``--controlnet-image``'s pictures given to those that have none."""
    images = unit_images(text, len(units))
    return tuple(
        dataclasses.replace(unit, image=images[i]) if unit.image is None and i in images else unit
        for i, unit in enumerate(units)
    )
