"""The option format every field uses (`option`), and the constants their choices and ranges come from."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

PREVIEW_MODES = ("auto", "latent2rgb", "taesd", "full", "none")
DTYPES = ("auto", "float16", "bfloat16", "float32")
DTYPE_ALIASES = {"fp16": "float16", "half": "float16", "bf16": "bfloat16", "fp32": "float32", "float": "float32"}
DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?|xpu(:\d+)?)$")
MAX_SEED = 2**32 - 1
"""Random seeds (-1) are drawn below this, as A1111 draws them."""
SEED_LIMIT = 2**64 - 1
"""The largest seed accepted: torch's generators and A1111 take 64-bit seeds (15-digit seeds are common in recipes)."""
MAX_STEPS = 1000
"""Steps up to the model's 1000 training noise levels (A1111's slider stops at 150, its API does not)."""
MAX_SIDE = 4096
RESIZE_MODES = ("Just resize", "Crop and resize", "Resize and fill")
INPAINT_AREAS = ("whole", "masked")
MASKED_CONTENT = ("original", "fill", "latent noise", "latent nothing")
LATENT_UPSCALERS = {
    "Latent": ("bilinear", False),
    "Latent (antialiased)": ("bilinear", True),
    "Latent (bicubic)": ("bicubic", False),
    "Latent (bicubic antialiased)": ("bicubic", True),
    "Latent (nearest)": ("nearest", False),
    "Latent (nearest-exact)": ("nearest-exact", False),
}
"""A1111's latent upscale modes: name → (torch interpolate mode, antialias)."""
IMAGE_UPSCALERS = ("Lanczos", "Nearest")
BUILT_IN_UPSCALERS = (*LATENT_UPSCALERS, *IMAGE_UPSCALERS)
"""The hires upscalers that need no model file; any other name is an upscaler model in ``ESRGAN/``."""
SEAMS_FIX_MODES = ("None", "Band pass", "Half tile offset pass")
TILE_REDRAW_MODES = ("Linear", "Chess", "None")
"""Ultimate SD upscale's redraw types: tiles row by row, in a checkerboard's two passes, or none."""
"""Ultimate SD upscale's seams fix types, by its names."""
SAME_SAMPLER = "Use same sampler"
SAME_SCHEDULE = "Use same scheduler"
OFFLOAD_MODES = ("auto", "none", "model", "sequential")
VAE_TILING_MODES = ("auto", "on", "off")
ATTENTION_MODES = ("sdpa", "slicing")
QUANT_MODES = ("none", "fp8", "nf4", "int8")
RNG_SOURCES = ("gpu", "nv", "cpu")
"""A1111's random sources (its ``RNG`` key writes ``CPU`` and ``NV``; its default, ``GPU``, is written as no key)."""


def option(
    help: str,
    *,
    flags: tuple[str, ...] = (),
    infotext: str | None = None,
    choices: tuple[str, ...] | None = None,
    range: tuple[float, float] | None = None,
    step: float | None = None,
    kernel: bool = False,
    models: str | None = None,
    also: tuple[str, ...] = (),
    check: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    """Field metadata: the one place an option's help, flags, range and infotext key are declared.

    `models` names a `library` kind whose files are allowed besides the `choices` (by A1111's name for them);
    `also` names values accepted besides the `choices` but not offered (A1111 names the engine substitutes);
    `check`, when given, replaces the choices check: it refuses (ValueError, one line) what the grammar cannot read.
    """
    return {
        "help": help,
        "flags": flags,
        "infotext": infotext,
        "choices": choices,
        "range": range,
        "step": step,
        "kernel": kernel,
        "models": models,
        "also": also,
        "check": check,
    }
