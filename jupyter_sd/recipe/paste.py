"""Reading one block of pasted generation data the way A1111 reads it: what it paints, and what we say about it.

The one reader of pasted data: a ``%%paint`` cell body, a batch file's block and a PNG's recipe all go through
`read_pasted`, so each paints the same picture. Nothing A1111 paints is refused: a value we cannot honour (a
sampler we do not know, an upscaler or VAE not on disk, a size we cannot read) is left out and named in one line,
and the picture is painted with what is here. A1111's own reading rules are kept: its old hires fix
(``First pass size``), an img2img recipe's ``Denoising strength``, ENSD where it acts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import library
from .a1111 import options_from_params, pasted_notes, relink_loras
from .control_units import infotext_units, with_images
from .dynamic_prompts import split_templates
from .infotext import parse_infotext
from .plot_options import plot_from_params, plot_infotext_keys
from .request import PaintRequest
from .samplers import ENSD_SAMPLERS, read_sampler
from .values import check_value, coerce_options, parse_size


@dataclass
class Pasted:
    """What one block of generation data means, read once: the options that paint it, the plot it was, its notes."""

    prompt: str
    """The prompt as pasted (before LoRA tags are relinked to files found by hash)."""
    params: dict[str, str]
    """The ``Key: value`` pairs of the parameters line."""
    options: dict[str, Any]
    """Request options (as text): ``prompt`` (relinked), ``negative_prompt`` and whatever the parameters set."""
    plot: dict[str, str]
    """The axes of a pasted X/Y/Z grid's generation data (empty for one picture)."""
    notes: list[str] = field(default_factory=list)
    """What was painted around, known before painting (a value left out, an img2img recipe without its picture)."""
    template: str = ""
    """sd-dynamic-prompts' ``Template:`` line: the template the pasted prompt was drawn from (painted as ran)."""

    def after_painting(self, painted_model: str, model_given: bool = False) -> list[str]:
        """Every line the cell says about the pasted data once painted (the model that painted is known then)."""
        params = {k: v for k, v in self.params.items() if not self.plot or k not in plot_infotext_keys()}
        return self.notes + pasted_notes(params, painted_model, model_given, self.prompt)


NOTHING_PASTED = Pasted("", {}, {}, {})
"""A line magic or a call with no pasted block."""


def read_pasted(text: str, given: Mapping[str, Any] | None = None) -> Pasted:
    """Read a block of A1111 generation data (prompt, optional ``Negative prompt:``, optional parameters line).

    `given` holds the options the cell (or caller) sets besides: the pasted values are judged together with them
    (an outpaint or img2img recipe is honoured when the cell gives ``--init``), and they win.
    """
    given = given or {}
    text, template, negative_template = split_templates(text)
    prompt, negative, params = parse_infotext(text)
    options: dict[str, Any] = {"prompt": relink_loras(prompt, params)[0]}
    if negative:
        options["negative_prompt"] = negative
    options.update(options_from_params(params))
    notes = _pasted_units(options, params, given)
    notes += _old_hires_fix(options, params) + ([] if given.get("init") else _img2img_recipe(options, params))
    notes += _honoured(options) + _honoured_together(options, given)
    notes += _ensd_note(options) + _template_note(template or negative_template)
    return Pasted(prompt, params, options, plot_from_params(params), notes, template)


def parse_body(body: str) -> dict[str, Any]:
    """The options of a ``%%paint`` cell body (see `read_pasted`)."""
    return read_pasted(body).options


def request_from_infotext(text: str, **overrides: Any) -> PaintRequest:
    """Re-create a request from A1111 generation data (as pasted, or read from a PNG)."""
    return PaintRequest(**coerce_options({"negative_prompt": "", **read_pasted(text, overrides).options, **overrides}))


def first_pass_size(width: int, height: int) -> tuple[int, int]:
    """A1111's old hires fix's first pass when it wrote ``First pass size: 0x0``: about 512² pixels, in 64s."""
    scale = math.sqrt(512 * 512 / (width * height))
    return math.ceil(scale * width / 64) * 64, math.ceil(scale * height / 64) * 64


def _old_hires_fix(options: dict[str, Any], params: dict[str, str]) -> list[str]:
    """A1111 before 1.0 wrote ``First pass size`` and the final ``Size``: read as its hires fix now reads it."""
    first = params.get("First pass size", "").strip()
    if not first or "width" not in options:
        return []
    try:
        width, height = parse_size(first)
    except ValueError:
        width = height = 0
    if not width or not height:
        width, height = first_pass_size(options["width"], options["height"])
    final = f"{options['width']}x{options['height']}"
    options["hires_size"] = final
    options["width"], options["height"] = width, height
    if "strength" in options:
        options["hires_denoise"] = options.pop("strength")
    return [
        f"First pass size {first}, Size {final}: A1111's old hires fix, painted {width}x{height} then hires {final}"
    ]


IMG2IMG_KEYS = ("Mask blur", "Inpaint area", "Masked area padding", "Mask mode", "Masked content", "Image CFG scale")
"""Keys A1111 writes only in img2img and inpainting (besides ``Denoising strength``)."""


def _img2img_recipe(options: dict[str, Any], params: dict[str, str]) -> list[str]:
    """A ``Denoising strength`` with no hires keys was made in img2img: its picture is not in the text."""
    if "strength" not in options or any(key.startswith("Hires") for key in params):
        return []
    more = [key for key in IMG2IMG_KEYS if key in params]
    keys = ", ".join([f"Denoising strength {options['strength']}", *more])
    if any(key.startswith("Ultimate SD upscale") for key in params):  # its settings are read; its scale is not written
        return [
            f"{keys}: this recipe was made by Ultimate SD upscale in img2img; painted from text (give --init PICTURE "
            "--sd-upscale SCALE to upscale that picture in tiles with its settings)"
        ]
    return [f"{keys}: this recipe was made in img2img; painted from text (give --init PICTURE to repaint that picture)"]


def _pasted_units(options: dict[str, Any], params: dict[str, str], given: Mapping[str, Any]) -> list[str]:
    """A pasted recipe's ``ControlNet N`` units: applied when the cell names their pictures, else named.

    A unit without a picture is painted around (named in one line), as every pasted value we cannot honour.
    """
    try:
        units = infotext_units(params)
    except ValueError as error:
        return [f"ControlNet: could not read the pasted units ({error}); painted without them"[:199]]
    if not units or given.get("controlnet"):
        return []
    ordered = with_images(tuple(units.values()), str(given.get("controlnet_image", "")))
    kept = tuple(unit for unit in ordered if unit.image is not None)
    missing = [f"ControlNet {n}" for n, unit in zip(units, ordered) if unit.image is None]
    if kept:
        options["controlnet"] = kept
    if not missing:
        return []
    return [f"{', '.join(missing)}: needs a picture (--controlnet-image N=FILE); painted without it"[:199]]


def _honoured(options: dict[str, Any]) -> list[str]:
    """Leave out each pasted value we cannot honour, naming it: the rest of the recipe still paints."""
    notes = []
    for name in [key for key in options if key not in ("prompt", "negative_prompt")]:
        try:
            check_value(name, options[name])
            if name == "vae" and not _vae_here(str(options[name])):
                raise ValueError("not here")
        except ValueError as error:
            notes.append(_left_out(name, options.pop(name), str(error)))
    return notes


def _honoured_together(options: dict[str, Any], given: Mapping[str, Any]) -> list[str]:
    """Leave out pasted values that do not go together, with each other or with the `given` options.

    The request's own checks name the option they refuse: a pasted one is left out and named, and the next check
    runs; a `given` one is the cell's to say in one line, when it paints.
    """
    notes = []
    for _ in range(len(options)):
        try:
            PaintRequest(**coerce_options({**options, **given})).check_together()
            return notes
        except ValueError as error:
            name = str(error).split(":", 1)[0]
            if name not in options or name in ("prompt", "negative_prompt"):
                return notes  # not the pasted data's to drop: the cell's own options say it in one line
            notes.append(_left_out(name, options.pop(name), str(error)))
    return notes


def _left_out(name: str, value: Any, reason: str) -> str:
    """The line for a pasted value painted around."""
    if name == "size":
        return f"Size: could not read '{value}'; painted at the model's size"
    if name == "vae":
        return (
            f"VAE: '{value}' is not in the models folder's VAE/ (%paint download URL --kind vae gets it); painted with "
            "the model's own"
        )
    if name == "hires_upscaler":
        default = PaintRequest().hires_upscaler
        return (
            f"Hires upscaler: '{value}' is not in the models folder's ESRGAN/ (%paint download URL --kind upscaler "
            f"gets it); upscaled with {default}"
        )
    if name == "sd_upscaler":
        return (
            f"Ultimate SD upscale upscaler: '{value}' is not in the models folder's ESRGAN/ (%paint download URL "
            f"--kind upscaler gets it); --sd-upscale would use {PaintRequest().sd_upscaler}"
        )
    return f"{reason}; painted without it"


def _vae_here(name: str) -> bool:
    """Whether a pasted VAE can be loaded here (a file or folder, or a name in the models folder's VAE/)."""
    return not name or Path(name).expanduser().exists() or library.find_model("vae", name) is not None


def _ensd_note(options: dict[str, Any]) -> list[str]:
    """A1111 applies ENSD to the ancestral samplers only; older versions wrote it for every sampler."""
    ensd = options.get("eta_noise_seed_delta")
    sampler = read_sampler(str(options.get("sampler", PaintRequest().sampler)))[0]
    if ensd in (None, "", "0", 0) or sampler in ENSD_SAMPLERS:
        return []
    return [f"ENSD {ensd}: only ancestral samplers ({', '.join(ENSD_SAMPLERS)}) use it; {sampler} paints the same"]


def _template_note(template: str) -> list[str]:
    """A recipe sd-dynamic-prompts wrote keeps its template: we paint the prompt that ran, and say so."""
    if not template:
        return []
    shown = " ".join(template.split())
    shown = shown if len(shown) <= 80 else shown[:79] + "…"
    return [f"Template: painted the prompt that ran, drawn from the template '{shown}'"]
