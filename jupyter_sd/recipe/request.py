"""`PaintRequest`: every generation option (declared once, in ``fields``), validated and mapped to A1111's keys.

The fields' metadata carries each option's help text, range or choices, command-line flag and A1111 infotext key.
The magic's parser, the CLI, the widget panel and the metadata writer are all generated from these fields (STYLE
P3), so an option cannot drift between front ends. What pasted generation data means lives in ``pasted.py``.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass, fields
from typing import Any

from .. import library
from .fields import (
    DEVICE_RE,
    DTYPE_ALIASES,
    MAX_SIDE,
    SAME_SAMPLER,
    SAME_SCHEDULE,
    MachineOptions,
)
from .infotext import format_infotext, order_params
from .samplers import ENSD_SAMPLERS, read_sampler, read_schedule


@dataclass
class PaintRequest(MachineOptions):
    """One picture's recipe: what to paint and how, validated before any model work starts."""

    # -- derived values ---------------------------------------------------------------------------------------

    @property
    def size(self) -> str:
        """The size as A1111 writes it (``WxH``), or empty when the model's native size applies."""
        return f"{self.width}x{self.height}" if self.width and self.height else ""

    def replace(self, **changes: Any) -> PaintRequest:
        """Return a copy with some options changed (values are coerced, not validated)."""
        return dataclasses.replace(self, **coerce_options(changes))

    def to_dict(self) -> dict[str, Any]:
        """Return every option as a plain JSON-able dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PaintRequest:
        """Build a request from a dict such as `to_dict()` wrote, ignoring keys it does not know."""
        known = {f.name for f in fields(cls)} | {"size"}
        return cls(**coerce_options({k: v for k, v in data.items() if k in known}))

    # -- validation -------------------------------------------------------------------------------------------

    def validate(self) -> PaintRequest:
        """Check every option; raise `ValueError` with one line naming the option, the rule and the value.

        The checks read the disk (init pictures, model names), so a request checked once is not checked again
        until one of its values changes: the front end validates, the session and engine trust it.

        Returns
        -------
        PaintRequest
            ``self``, so calls can be chained.

        Raises
        ------
        ValueError
            On the first invalid option.
        """
        values = tuple(getattr(self, f.name) for f in fields(self))
        if self.__dict__.get("_valid_values") == values:
            return self
        self._check()
        self.__dict__["_valid_values"] = values
        return self

    def _check(self) -> None:
        for f in fields(self):
            _check_field(f, getattr(self, f.name))
        if (self.width is None) != (self.height is None):
            msg = f"size: give both width and height (got width={self.width}, height={self.height})"
            raise ValueError(msg)
        if not DEVICE_RE.match(self.device):
            msg = f"device: must be auto, cpu, mps, cuda or cuda:N (got '{self.device}')"
            raise ValueError(msg)
        self._validate_modes()

    def _validate_modes(self) -> None:
        """The img2img, inpaint, hires and variation options: what goes with what."""
        if self.mask and not self.init:
            msg = f"mask: needs --init, the picture to repaint (got --mask '{self.mask}' without --init)"
            raise ValueError(msg)
        hires = self.hires > 0 or bool(self.hires_size)
        if self.fast and (self.token_merging or self.token_merging_hr):
            msg = "token_merging: does not combine with --fast (it would undo the compiled blocks); use one of them"
            raise ValueError(msg)
        ensd = bool(self.eta_noise_seed_delta) and self.sampler in ENSD_SAMPLERS
        if getattr(self, "refiner", "") and (hires or self.init or self.variation_strength > 0 or ensd):
            msg = "refiner: works with plain text-to-image only (not with --init, --hires, a variation seed or --ensd)"
            raise ValueError(msg)
        if hires and self.init:
            msg = "hires: the hires fix is for text-to-image; with --init, paint at the size you want (--size)"
            raise ValueError(msg)
        if self.hires_size:
            _check_side_pair("hires_size", self.hires_size)
        if hires and self.hires_denoise <= 0:
            msg = "hires_denoise: must be above 0 for a hires pass (got 0)"
            raise ValueError(msg)
        if hires and self.width is not None:
            self.hires_target()
        if self.seed_resize_from:
            _check_side_pair("seed_resize_from", self.seed_resize_from)

    @property
    def mode(self) -> str:
        """Which passes paint this request: ``txt2img``, ``img2img`` or ``inpaint``, then maybe ``hires``."""
        return "inpaint" if self.mask else "img2img" if self.init else "txt2img"

    @property
    def hires_enabled(self) -> bool:
        """Whether a hires pass follows the first pass."""
        return not self.init and (self.hires > 0 or bool(self.hires_size))

    def hires_target(self) -> tuple[int, int, int, int]:
        """A1111's hires size: (width, height) upscaled to, and the pixels cropped off (x, y) to reach `hires_size`.

        With ``--hires-size`` of another aspect the picture is upscaled to cover it, keeping its aspect, and the
        excess is cropped from the latents (half each side, as A1111's ``truncate_x``/``truncate_y``).

        Raises
        ------
        ValueError
            When the hires size passes 4096 pixels a side.
        """
        width, height = self.width or 0, self.height or 0
        truncate_x = truncate_y = 0
        if not self.hires_size:
            to_x, to_y = int(width * self.hires), int(height * self.hires)
        else:
            resize_x, resize_y = parse_size(self.hires_size)
            if width / height < resize_x / resize_y:
                to_x, to_y = resize_x, resize_x * height // width
            else:
                to_x, to_y = resize_y * width // height, resize_y
            truncate_x, truncate_y = to_x - resize_x, to_y - resize_y
        if max(to_x, to_y) > MAX_SIDE:
            msg = f"hires: the hires size must be at most {MAX_SIDE} a side (got {to_x}x{to_y})"
            raise ValueError(msg)
        return to_x, to_y, truncate_x, truncate_y

    # -- A1111 infotext ---------------------------------------------------------------------------------------

    def infotext_params(self, seed: int | None = None, model_name: str | None = None) -> dict[str, Any]:
        """Return the A1111 ``Key: value`` parameters of this request in A1111's order."""
        params: dict[str, Any] = {
            "Steps": self.steps,
            "Sampler": self.sampler,
            "Schedule type": self.schedule,
            "CFG scale": _format_number(self.guidance),
            "Seed": self.seed if seed is None else seed,
        }
        if self.size:
            params["Size"] = self.size
        name = model_name if model_name is not None else self.model
        if name:
            params["Model"] = name
        if self.variation_strength > 0:
            params["Variation seed"] = self.variation_seed
            params["Variation seed strength"] = _format_number(self.variation_strength)
        if self.seed_resize_from:
            params["Seed resize from"] = self.seed_resize_from
        if self.eta_noise_seed_delta and self.sampler in ENSD_SAMPLERS:  # A1111 writes it where it acts
            params["ENSD"] = self.eta_noise_seed_delta
        if self.rng != "gpu":  # A1111 writes its default source as no key
            params["RNG"] = self.rng.upper()
        if self.token_merging:
            params["Token merging ratio"] = _format_number(self.token_merging)
        if self.token_merging_hr and self.hires_enabled:
            params["Token merging ratio hr"] = _format_number(self.token_merging_hr)
        if self.init:
            params["Denoising strength"] = _format_number(self.strength)
        elif self.hires_enabled:
            params["Denoising strength"] = _format_number(self.hires_denoise)
        if self.clip_skip != 1:
            params["Clip skip"] = self.clip_skip
        if self.emphasis != "Original":
            params["Emphasis"] = self.emphasis
        if self.pad_conds:
            params["Pad conds"] = True
        params.update(self._mode_params())
        if self.refiner:
            params["Refiner"] = self.refiner
            params["Refiner switch at"] = _format_number(self.refiner_switch)
        return params

    def _mode_params(self) -> dict[str, Any]:
        """The inpaint and hires keys, written when A1111 writes them and in its order (its processing.py)."""
        params: dict[str, Any] = {}
        if self.mode == "inpaint":
            if self.invert_mask:
                params["Mask mode"] = "Inpaint not masked"
            if self.mask_blur > 0:
                params["Mask blur"] = self.mask_blur
            if self.inpaint_area == "masked":
                params["Inpaint area"] = "Only masked"
                params["Masked area padding"] = self.padding
            if self.masked_content != "original":
                params["Masked content"] = self.masked_content
        if self.hires_enabled:
            if self.hires_prompt and self.hires_prompt != self.prompt:
                params["Hires prompt"] = self.hires_prompt
            if self.hires_size:
                params["Hires resize"] = self.hires_size
            else:
                params["Hires upscale"] = _format_number(self.hires)
            if self.hires_steps:
                params["Hires steps"] = self.hires_steps
            params["Hires upscaler"] = self.hires_upscaler
            if self.hires_sampler not in (SAME_SAMPLER, self.sampler):
                params["Hires sampler"] = self.hires_sampler
            if self.hires_schedule not in (SAME_SCHEDULE, self.schedule):
                params["Hires schedule type"] = self.hires_schedule
            if self.hires_guidance and self.hires_guidance != self.guidance:
                params["Hires CFG Scale"] = _format_number(self.hires_guidance)
        return params

    def to_infotext(
        self, seed: int | None = None, model_name: str | None = None, extra: dict[str, Any] | None = None
    ) -> str:
        """Write this request in AUTOMATIC1111's exact "generation data" format.

        Parameters
        ----------
        seed
            The seed actually used for this image (the request's own seed may be -1 or a batch's first).
        model_name
            The model's short name to record (default: the request's model string).
        extra
            More ``Key: value`` pairs to append (e.g. ``{"Interrupted": "at step 7/20"}``).
        """
        params = self.infotext_params(seed, model_name)
        params.update(extra or {})
        return format_infotext(self.prompt, self.negative_prompt, order_params(params))


# -- option coercion and validation helpers ---------------------------------------------------------------------

_FIELDS = {f.name: f for f in fields(PaintRequest)}
INFOTEXT_KEYS = {f.metadata["infotext"]: f.name for f in fields(PaintRequest) if f.metadata.get("infotext")}


OPTIONS_LIST_HINT = "every option: %%paint? or %paint config"
"""Where a refusal of an unknown option points, instead of listing all seventy."""


def unknown_option_line(what: str, closest: list[str]) -> str:
    """The one line an unknown option gets: its closest names, and where the full list is."""
    hint = f"; did you mean {' or '.join(closest)}?" if closest else ""
    return f"unknown option {what}{hint} ({OPTIONS_LIST_HINT})"


def option_fields() -> tuple[dataclasses.Field, ...]:
    """Return the request's fields: the one declaration every front end is generated from."""
    return fields(PaintRequest)


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
    return text


def check_value(name: str, value: Any) -> None:
    """Check one option's value alone, as `PaintRequest.validate` would; raise its one-line refusal."""
    for key, typed in coerce_options({name: value}).items():
        _check_field(_FIELDS[key], typed)


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


def _check_field(f: dataclasses.Field, value: Any) -> None:
    meta = f.metadata
    kind = field_kind(f)
    if value is None and f.default is None:
        return
    expected = {"int": int, "float": (int, float), "bool": bool, "str": str}[kind]
    if not isinstance(value, expected) or (kind in ("int", "float") and isinstance(value, bool)):
        msg = f"{f.name}: expected {kind} (got {value!r})"
        raise ValueError(msg)
    if meta["range"] is not None:
        low, high = meta["range"]
        if not low <= value <= high:
            msg = f"{f.name}: must be {_format_number(low)}–{_format_number(high)} (got {_format_number(value)})"
            raise ValueError(msg)
    if meta["choices"] is not None and value not in meta["choices"] and value not in meta.get("also", ()):
        if meta.get("models") == "upscaler":  # or an upscaler model in the models folder's ESRGAN/
            if library.find_upscaler(value) is not None:
                return
            raise ValueError(library.upscaler_missing_message(value, meta["choices"]))
        hint = difflib.get_close_matches(value, meta["choices"], n=1, cutoff=0.5)
        if not hint:
            hint = [c for c in meta["choices"] if c.lower() == value.lower()]
        short = len(meta["choices"]) <= 8
        allowed = f"allowed: {', '.join(meta['choices'])}" if short else "every choice: %%paint? or docs/options.md"
        msg = f"{f.name}: unknown '{value}'" + (f"; did you mean '{hint[0]}'?" if hint else "")
        raise ValueError(f"{msg} ({allowed})")


def _check_side_pair(name: str, text: str) -> None:
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


def _format_number(value: float) -> str:
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
