"""X/Y/Z plot axes: which axes exist and A1111's value syntax (lists, ranges, counts), as pure data and text.

The axis list is generated: A1111's special axes (``Prompt S/R``, ``Checkpoint name``, ``Lora weight`` …) plus one
axis for every `PaintRequest` option that has a flag, named by its flag, field name or infotext key. A special axis
whose option has not landed in `PaintRequest` yet is listed but refused with one line. The plot options
themselves (``--x/--y/--z`` and A1111's grid keys) are declared in `recipe.plot_options`. No torch, no IPython.
"""

from __future__ import annotations

import csv
import difflib
import importlib.util
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

from ..recipe.request import PaintRequest
from ..recipe.values import field_kind, option_fields, parse_size
from .control_axes import control_axes

_ALLOWED_NUMBERS = "numbers, ranges like 1-5 or 1-9 (+2), counts like 1-10 [5]"


@dataclass(frozen=True)
class Axis:
    """One kind of axis: how its values are read, which option they set, and how costly a change is.

    ``cost`` orders the loops as A1111 does: the costliest axis runs outermost, so a checkpoint (1.0) or a VAE (0.7)
    loads once per value rather than once per cell.
    """

    label: str
    """A1111's name, written as ``X Type`` in the grid's infotext."""
    kind: str
    """How values are read: ``int``, ``float``, ``str``, ``bool`` or ``size``."""
    option: str | None = None
    """The `PaintRequest` field the values set (None for axes that rewrite the prompt)."""
    cost: float = 0.0
    aliases: tuple[str, ...] = ()
    labels: str = "named"
    """How a value is shown on the grid: ``named`` (``Steps: 20``), ``raw`` (``Euler a``) or ``basename``."""
    requires: str | None = None
    """What must exist for the axis to work, when it is more than its option (a module attribute)."""
    apply: Callable[[PaintRequest, Any, list[Any]], dict[str, Any]] | None = None
    """Turn one value into request changes (default: set `option`)."""
    random_minus_one: bool = False
    """Seed axes: ``-1`` becomes a random seed, fixed before the plot runs (A1111's ``Fixed X Values``)."""

    def names(self) -> set[str]:
        """Every normalised name this axis answers to: label, aliases, and its option's field name and flags."""
        names = {self.label, *self.aliases}
        f = _fields().get(self.option or "")
        if f is not None:
            names |= {f.name, *f.metadata["flags"], *([f.metadata["infotext"]] if f.metadata["infotext"] else [])}
        return {normalise(name) for name in names}

    def missing(self) -> str | None:
        """Why this axis cannot be used in this version (its option or helper is absent), or None."""
        if self.option and self.option not in _fields():
            return f"it needs the {self.option} option, which this version does not have"
        if self.requires:
            module, _, attribute = self.requires.rpartition(".")
            if importlib.util.find_spec(module) is None or not hasattr(importlib.import_module(module), attribute):
                return f"it needs {self.requires}, which this version does not have"
        return None

    def changes(self, request: PaintRequest, value: Any, values: list[Any]) -> dict[str, Any]:
        """The request changes one value of this axis makes."""
        if self.apply is not None:
            return self.apply(request, value, values)
        if self.kind == "size":
            return {"width": value[0], "height": value[1]}
        return {self.option: value}

    def label_of(self, value: Any, text: str) -> str:
        """The grid label of a value: ``Steps: 20``, or the raw value for samplers, prompts and checkpoints."""
        if self.labels == "basename":
            text = re.split(r"[\\/]", text.rstrip("/\\"))[-1]
            return re.sub(r"\.(safetensors|ckpt|pt|pth|bin)$", "", text)
        return text if self.labels == "raw" else f"{self.label}: {text}"


def normalise(name: str) -> str:
    """An axis name as matched: case, dashes, spaces and punctuation ignored (``--cfg`` ≡ ``CFG scale``'s alias)."""
    return re.sub(r"[^0-9a-z]+", "", name.lower())


def _fields() -> dict[str, Any]:
    return {f.name: f for f in option_fields()}


def _prompt_sr(request: PaintRequest, value: str, values: list[Any]) -> dict[str, Any]:
    search = values[0]
    return {
        "prompt": request.prompt.replace(search, value),
        "negative_prompt": request.negative_prompt.replace(search, value),
    }


_LORA_TAG = re.compile(r"<(lora|lyco):([^:>]+)(?::[^>]*)?>")


def _lora_weight(request: PaintRequest, value: float, values: list[Any]) -> dict[str, Any]:
    """Set the first LoRA tag's multiplier (text encoder and UNet alike): ``<lora:ink:0.8>`` → ``<lora:ink:0.5>``."""
    text = _format_float(value)
    prompt = _LORA_TAG.sub(lambda m: f"<{m.group(1)}:{m.group(2)}:{text}>", request.prompt, count=1)
    return {"prompt": prompt}


def _denoising(request: PaintRequest, value: float, values: list[Any]) -> dict[str, Any]:
    """A1111 has one denoising strength, for img2img and for the hires pass alike: set both."""
    return {"strength": value, **({"hires_denoise": value} if "hires_denoise" in _fields() else {})}


_AUTOMATIC_VAE = ("none", "automatic", "auto")


def _vae(request: PaintRequest, value: str, values: list[Any]) -> dict[str, Any]:
    """A1111's ``None`` / ``Automatic`` VAE values mean the model's own VAE."""
    return {"vae": "" if value.lower() in _AUTOMATIC_VAE else value}


SPECIAL_AXES: tuple[Axis, ...] = (
    Axis("Seed", "int", "seed", random_minus_one=True),
    Axis("Var. seed", "int", "variation_seed", aliases=("Variation seed", "subseed"), random_minus_one=True),
    Axis("Var. strength", "float", "variation_strength", aliases=("Variation seed strength", "subseed strength")),
    Axis("Steps", "int", "steps"),
    Axis("CFG Scale", "float", "guidance", aliases=("CFG", "guidance scale")),
    Axis("Prompt S/R", "str", None, aliases=("prompt sr", "prompt search replace"), labels="raw", apply=_prompt_sr),
    Axis("Sampler", "str", "sampler", labels="raw"),
    Axis("Schedule type", "str", "schedule", aliases=("scheduler",)),
    Axis("Checkpoint name", "str", "model", cost=1.0, aliases=("checkpoint",), labels="basename"),
    Axis("Clip skip", "int", "clip_skip"),
    Axis("Denoising", "float", "strength", aliases=("Denoising strength",), apply=_denoising),
    Axis("Hires upscale", "float", "hires"),
    Axis("Hires steps", "int", "hires_steps"),
    Axis("Size", "size", None, aliases=("WxH",)),
    Axis("VAE", "str", "vae", cost=0.7, apply=_vae),
    Axis(
        "Lora weight",
        "float",
        None,
        aliases=("lora",),
        requires="jupyter_sd.recipe.prompts.extract_networks",
        apply=_lora_weight,
    ),
)
"""A1111's axes, by A1111's names (plus ``Lora weight``, which people ask for); each sets one option or rewrites
the prompt. Every other flagged option becomes an axis of its own (see `axes`)."""


def axes() -> list[Axis]:
    """Every axis: the special ones, sd-webui-controlnet's unit axes, then one per other flagged option.

    Generated from the fields at each call, so an option another module adds is an axis at once.
    """
    owned = {axis.option for axis in SPECIAL_AXES} | {"width", "height"}
    generated = []
    for f in option_fields():
        meta = f.metadata
        if f.name in owned or not meta["flags"]:
            continue
        label = meta["infotext"] or max(meta["flags"], key=len).lstrip("-")
        kind = field_kind(f)
        generated.append(Axis(label, kind if kind in ("int", "float", "bool") else "str", f.name, 1.0 * meta["kernel"]))
    control = [Axis(name, kind, None, cost, names, apply=fn) for name, kind, cost, names, fn in control_axes()]
    return [*SPECIAL_AXES, *control, *generated]


def find_axis(name: str, which: str = "x") -> Axis:
    """The axis called `name` (any of its names, case and punctuation ignored).

    Raises
    ------
    ValueError
        For an unknown axis (with the allowed names and a suggestion) or one this version cannot run.
    """
    wanted = normalise(name)
    every = axes()
    for axis in every:
        if wanted in axis.names():
            reason = axis.missing()
            if reason:
                msg = f"{which}: axis '{axis.label}' is not available ({reason})"
                raise ValueError(msg)
            return axis
    labels = [axis.label for axis in every if axis.missing() is None]
    hint = difflib.get_close_matches(name, labels, n=1, cutoff=0.5)
    msg = f"{which}: unknown axis '{name}'" + (f"; did you mean '{hint[0]}'?" if hint else "")
    raise ValueError(f"{msg} (every axis: docs/plots.md)")


# -- values --------------------------------------------------------------------------------------------------------


@dataclass
class AxisValues:
    """One axis of a plot as the user wrote it, read into values and their grid labels."""

    which: str
    """``x``, ``y`` or ``z``."""
    axis: Axis
    text: str
    """The values as typed (A1111 writes them as ``X Values``)."""
    values: list[Any] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    """Each value as text (no float drift: ``0.6``, not ``0.6000000000000001``)."""

    @property
    def labels(self) -> list[str]:
        """The grid labels, one per value."""
        return [self.axis.label_of(value, text) for value, text in zip(self.values, self.texts)]

    def __len__(self) -> int:
        return len(self.values)


def parse_axis(spec: str, which: str = "x") -> AxisValues:
    """Read ``'Name: values'`` (e.g. ``'Steps: 10-30 (+10)'``) into an axis and its values.

    Raises
    ------
    ValueError
        One line naming the axis, the value and what is allowed.
    """
    name, sep, text = spec.partition(":")
    if not sep or not name.strip():
        msg = f"{which}: expected 'Name: values' such as 'Steps: 10, 20, 30' (got '{spec}')"
        raise ValueError(msg)
    axis = find_axis(name.strip(), which)
    items = split_values(text)
    if not items:
        msg = f"{which}: {axis.label} has no values (got '{spec}')"
        raise ValueError(msg)
    pairs = [pair for item in items for pair in _expand(axis, item, which)]
    return AxisValues(which, axis, text.strip(), [v for v, _ in pairs], [t for _, t in pairs])


def split_values(text: str) -> list[str]:
    """Split comma-separated values, with double quotes around a value that holds a comma (``"a, b", c``)."""
    rows = list(csv.reader([text.strip()], skipinitialspace=True)) if text.strip() else []
    return [item.strip() for item in (rows[0] if rows else []) if item.strip()]


_INT = r"[+-]?\s*\d+"
_FLOAT = r"[+-]?\s*(?:\d+(?:\.\d*)?|\.\d+)"
_INT_RANGE = re.compile(rf"({_INT})\s*-\s*({_INT})(?:\s*\(\s*({_INT})\s*\))?")
_INT_COUNT = re.compile(rf"({_INT})\s*-\s*({_INT})\s*\[\s*(\d+)\s*\]")
_FLOAT_RANGE = re.compile(rf"({_FLOAT})\s*-\s*({_FLOAT})(?:\s*\(\s*({_FLOAT})\s*\))?")
_FLOAT_COUNT = re.compile(rf"({_FLOAT})\s*-\s*({_FLOAT})\s*\[\s*(\d+)\s*\]")
_BOOLS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}
MAX_VALUES = 1000


def _expand(axis: Axis, item: str, which: str) -> list[tuple[Any, str]]:
    """One comma-separated item → its values (a range or count gives several) with their texts."""
    where = f"{which}: {axis.label} value '{item}'"
    if axis.kind in ("int", "float"):
        numbers = _numbers(item, axis.kind == "int", where)
        if len(numbers) > MAX_VALUES:
            msg = f"{where}: makes {len(numbers)} values (allowed: at most {MAX_VALUES})"
            raise ValueError(msg)
        if axis.kind == "int":
            return [(int(n), str(int(n))) for n in numbers]
        return [(float(n), _format_float(n)) for n in numbers]
    if axis.kind == "bool":
        if item.lower() not in _BOOLS:
            msg = f"{where}: expected true or false"
            raise ValueError(msg)
        return [(_BOOLS[item.lower()], str(_BOOLS[item.lower()]).lower())]
    if axis.kind == "size":
        try:
            width, height = parse_size(item)
        except ValueError:
            msg = f"{where}: expected WIDTHxHEIGHT such as 512x768"
            raise ValueError(msg) from None
        return [((width, height), f"{width}x{height}")]
    return [(item, item)]


def _numbers(item: str, whole: bool, where: str) -> list[Any]:
    """A number, a range ``a-b`` / ``a-b (+s)`` or a count ``a-b [n]``, both ends included, in either direction."""
    text = item.replace(" ", "")
    count = (_INT_COUNT if whole else _FLOAT_COUNT).fullmatch(text)
    if count:
        start, end, num = _exact(count.group(1), whole), _exact(count.group(2), whole), int(count.group(3))
        if num < 1:
            msg = f"{where}: a count needs at least 1 value (allowed: {_ALLOWED_NUMBERS})"
            raise ValueError(msg)
        if num > MAX_VALUES:
            return [0] * num  # refused by the caller, with the count
        values = [Fraction(start) + (Fraction(end) - Fraction(start)) * i / max(num - 1, 1) for i in range(num)]
        return [int(v) for v in values] if whole else [Decimal(v.numerator) / Decimal(v.denominator) for v in values]
    span = (_INT_RANGE if whole else _FLOAT_RANGE).fullmatch(text)
    if span:
        start, end = _exact(span.group(1), whole), _exact(span.group(2), whole)
        direction = 1 if end >= start else -1
        step = _exact(span.group(3), whole) if span.group(3) else direction
        if step == 0 or (end - start) * step < 0:
            msg = f"{where}: the step must be non-zero and go from {span.group(1)} towards {span.group(2)}"
            raise ValueError(msg)
        length = int((end - start) / step) + 1
        if length > MAX_VALUES:
            return [0] * length
        return [start + k * step for k in range(length)]
    try:
        return [_exact(text, whole)]
    except (ValueError, InvalidOperation):
        kind = "a whole number" if whole else "a number"
        msg = f"{where}: expected {kind} (allowed: {_ALLOWED_NUMBERS})"
        raise ValueError(msg) from None


def _exact(text: str, whole: bool) -> Any:
    """Read a number exactly (`int`, or `Decimal` so 0.1 steps never drift)."""
    text = text.replace(" ", "")
    if whole:
        return int(text)
    value = Decimal(text)
    if not value.is_finite():
        raise ValueError(text)
    return value


def _format_float(value: Any) -> str:
    """A number as its label: ``0.6`` not ``0.6000000000000001``, ``7`` not ``7.0`` (A1111 rounds to 8 places)."""
    if isinstance(value, float):
        value = Decimal(repr(round(value, 8)))
    value = Decimal(value).quantize(Decimal("1e-8")).normalize() if Decimal(value) != 0 else Decimal(0)
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text
