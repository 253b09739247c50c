"""`PaintRequest`: every generation option (declared once, in ``fields``), validated and mapped to A1111's keys.

The fields' metadata carries each option's help text, range or choices, command-line flag and A1111 infotext key.
The magic's parser, the CLI, the widget panel and the metadata writer are all generated from these fields (STYLE
P3), so an option cannot drift between front ends. What pasted generation data means lives in
``a1111.py`` and ``paste.py``; how one value is read and checked, in ``values.py``.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .control_units import format_unit_option
from .fields import (
    DEVICE_RE,
    MAX_SIDE,
    SAME_SAMPLER,
    SAME_SCHEDULE,
    MachineOptions,
)
from .infotext import format_infotext, order_params
from .samplers import ENSD_SAMPLERS
from .step_cache import cache_text
from .values import check_field, check_side_pair, coerce_options, format_number, parse_margins, parse_size


@dataclass
class PaintRequest(MachineOptions):
    """One picture's recipe: what to paint and how, validated before any model work starts."""

    # -- derived values ---------------------------------------------------------------------------------------

    @property
    def size(self) -> str:
        """The size as A1111 writes it (``WxH``), or empty when the model's native size applies."""
        return f"{self.width}x{self.height}" if self.width and self.height else ""

    @property
    def given(self) -> frozenset[str]:
        """The options the user set (flags, the kernel's config, a pasted recipe, a plot's axis, a saved recipe).

        A loaded family's or preset's defaults fill only the others, so ``--sampler "DPM++ 2M"`` on Flux paints
        DPM++ 2M although it is also our default. Recorded when the request is made (the keywords it was given) and
        by `replace`.
        """
        named = self.__dict__.get("_given")
        if named is not None:
            return named
        return frozenset(f.name for f in fields(self) if getattr(self, f.name) != f.default)

    def with_given(self, names: Iterable[str]) -> PaintRequest:
        """Record `names` as the options the user set (see `given`); returns ``self``."""
        self.__dict__["_given"] = frozenset(names)
        return self

    def replace(self, **changes: Any) -> PaintRequest:
        """Return a copy with some options changed (values are coerced, not validated); those count as given."""
        coerced = coerce_options(changes)
        return dataclasses.replace(self, **coerced).with_given(self.given | coerced.keys())

    def to_dict(self) -> dict[str, Any]:
        """Return every option as a plain JSON-able dict (ControlNet units as their ``--controlnet`` text)."""
        data = {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self) if f.name != "controlnet"}
        return {**data, "controlnet": [format_unit_option(unit) for unit in self.controlnet]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PaintRequest:
        """Build a request from a dict such as `to_dict()` wrote, ignoring keys it does not know.

        Every option in `data` counts as given, unless `data` names them (``"given"``, as `to_json` writes it).
        """
        known = {f.name for f in fields(cls)} | {"size"}
        request = cls(**coerce_options({k: v for k, v in data.items() if k in known}))
        return request.with_given(data["given"]) if "given" in data else request

    def to_json(self) -> str:
        """The request as JSON for another process (a Ray worker): `to_dict()` and which options were `given`."""
        import json

        return json.dumps({**self.to_dict(), "given": sorted(self.given)})

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
            check_field(f, getattr(self, f.name))
        if (self.width is None) != (self.height is None):
            msg = f"size: give both width and height (got width={self.width}, height={self.height})"
            raise ValueError(msg)
        if not DEVICE_RE.match(self.device):
            msg = f"device: must be auto, cpu, mps, cuda or cuda:N (got '{self.device}')"
            raise ValueError(msg)
        self.check_together()

    def check_together(self) -> None:
        """The img2img, inpaint, hires and variation options: what goes with what."""
        if self.mask and not self.init:
            msg = f"mask: needs --init, the picture to repaint (got --mask '{self.mask}' without --init)"
            raise ValueError(msg)
        if self.outpaint:
            self._check_outpaint()
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
        if self.sd_upscale and (hires or self.mask):
            msg = "sd_upscale: repaints a whole picture in tiles; it does not combine with --hires or --mask"
            raise ValueError(msg)
        if 0 < self.sd_upscale < 1:
            msg = f"sd_upscale: enlarges by 1–16 (got {format_number(self.sd_upscale)}); 0 turns it off"
            raise ValueError(msg)
        if self.sd_upscale and self.init and self.n * self.repeat > 1:
            msg = f"sd_upscale: upscales the one init picture (got -n {self.n * self.repeat}); use -n 1"
            raise ValueError(msg)
        if self.hires_size:
            check_side_pair("hires_size", self.hires_size)
        if hires and self.hires_denoise <= 0:
            msg = "hires_denoise: must be above 0 for a hires pass (got 0)"
            raise ValueError(msg)
        if hires and self.width is not None:
            self.hires_target()
        if self.seed_resize_from:
            check_side_pair("seed_resize_from", self.seed_resize_from)

    def _check_outpaint(self) -> None:
        parse_margins(self.outpaint)
        if not self.init:
            msg = f"outpaint: needs --init, the picture to grow (got --outpaint '{self.outpaint}' without --init)"
            raise ValueError(msg)
        if self.mask:
            msg = "outpaint: makes its own mask (the new border); leave out --mask, or inpaint first and outpaint after"
            raise ValueError(msg)
        if self.sd_upscale:
            msg = (
                "outpaint: does not combine with --sd-upscale; outpaint first, then --sd-upscale the result (--init _)"
            )
            raise ValueError(msg)

    @property
    def mode(self) -> str:
        """Which passes paint this request: ``txt2img``, ``img2img`` or ``inpaint``, then maybe ``hires``."""
        return "inpaint" if self.mask or self.outpaint else "img2img" if self.init else "txt2img"

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
            "CFG scale": format_number(self.guidance),
            "Seed": self.seed if seed is None else seed,
        }
        if self.size:
            params["Size"] = self.size
        name = model_name if model_name is not None else self.model
        if name:
            params["Model"] = name
        if self.variation_strength > 0:
            params["Variation seed"] = self.variation_seed
            params["Variation seed strength"] = format_number(self.variation_strength)
        if self.seed_resize_from:
            params["Seed resize from"] = self.seed_resize_from
        if self.eta_noise_seed_delta and self.sampler in ENSD_SAMPLERS:  # A1111 writes it where it acts
            params["ENSD"] = self.eta_noise_seed_delta
        if self.ngms:
            params["NGMS"] = format_number(self.ngms)
            if self.ngms_all:
                params["NGMS all steps"] = True
        if self.skip_early_cfg:
            params["Skip Early CFG"] = format_number(self.skip_early_cfg)
        if self.rng != "gpu":  # A1111 writes its default source as no key
            params["RNG"] = self.rng.upper()
        if self.token_merging:
            params["Token merging ratio"] = format_number(self.token_merging)
        if self.token_merging_hr and self.hires_enabled:
            params["Token merging ratio hr"] = format_number(self.token_merging_hr)
        if self.cache != "off":
            params["Cache"] = cache_text(self.cache)
        if self.init or self.sd_upscale:
            params["Denoising strength"] = format_number(self.strength)
        elif self.hires_enabled:
            params["Denoising strength"] = format_number(self.hires_denoise)
        if self.clip_skip != 1:
            params["Clip skip"] = self.clip_skip
        if self.emphasis != "Original":
            params["Emphasis"] = self.emphasis
        if self.pad_conds:
            params["Pad conds"] = True
        if self.quant != "none":
            params["Quant"] = self.quant
        if self.text_encoder:  # Forge's "VAE / Text Encoder" list
            names = [self.vae, *self.text_encoder.split(",")]
            for number, name in enumerate(filter(None, (n.strip() for n in names)), 1):
                params[f"Module {number}"] = Path(name).stem
        params.update(self._mode_params())
        if self.refiner:
            params["Refiner"] = self.refiner
            params["Refiner switch at"] = format_number(self.refiner_switch)
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
        if self.outpaint:
            params["Outpaint"] = ",".join(str(side) for side in parse_margins(self.outpaint))
            params["Outpaint blend"] = self.outpaint_blend
            if self.outpaint_noise:
                params["Outpaint noise"] = True
        if self.hires_enabled:
            if self.hires_prompt and self.hires_prompt != self.prompt:
                params["Hires prompt"] = self.hires_prompt
            if self.hires_size:
                params["Hires resize"] = self.hires_size
            else:
                params["Hires upscale"] = format_number(self.hires)
            if self.hires_steps:
                params["Hires steps"] = self.hires_steps
            params["Hires upscaler"] = self.hires_upscaler
            if self.hires_sampler not in (SAME_SAMPLER, self.sampler):
                params["Hires sampler"] = self.hires_sampler
            if self.hires_schedule not in (SAME_SCHEDULE, self.schedule):
                params["Hires schedule type"] = self.hires_schedule
            if self.hires_guidance and self.hires_guidance != self.guidance:
                params["Hires CFG Scale"] = format_number(self.hires_guidance)
        if self.sd_upscale:  # the keys Ultimate SD upscale writes (its scale shows in Size)
            params["Ultimate SD upscale upscaler"] = self.sd_upscaler
            params["Ultimate SD upscale tile_width"] = self.tile_width
            params["Ultimate SD upscale tile_height"] = self.tile_height
            params["Ultimate SD upscale mask_blur"] = self.tile_mask_blur
            params["Ultimate SD upscale padding"] = self.tile_padding
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


def _recording_given(init: Any) -> Any:
    """Wrap the dataclass's ``__init__`` so a request knows which options it was given (`PaintRequest.given`)."""

    @functools.wraps(init)
    def __init__(self: PaintRequest, *args: Any, **options: Any) -> None:
        init(self, *args, **options)
        self.with_given([f.name for f in fields(self)][: len(args)] + list(options))

    return __init__


PaintRequest.__init__ = _recording_given(PaintRequest.__init__)  # type: ignore[method-assign]
