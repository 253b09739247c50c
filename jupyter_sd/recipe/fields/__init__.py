"""Every option's declaration: one dataclass field each, grouped by the room of the engine that honours it.

Each field's metadata carries its help text, range or choices, command-line flag and A1111 infotext key; the magic's
parser, the CLI, the panel and the metadata writer are generated from them (STYLE P3). The groups are a chain of
dataclasses, so `PaintRequest` (in ``request.py``, which adds validation and the A1111 mapping) keeps one flat list
of fields in this order. They live in this package's modules: `picture` (what every picture has), `passes` (img2img,
inpainting, the hires fix), `upscale` (tiled SD upscale), `machine` (seeds, then memory and speed); `base` holds the
field format (`option`) and the constants the choices and ranges come from.
"""

from .base import (
    ATTENTION_MODES,
    BUILT_IN_UPSCALERS,
    DEVICE_RE,
    DTYPE_ALIASES,
    DTYPES,
    IMAGE_UPSCALERS,
    INPAINT_AREAS,
    LATENT_UPSCALERS,
    MASKED_CONTENT,
    MAX_SEED,
    MAX_SIDE,
    MAX_STEPS,
    OFFLOAD_MODES,
    PREVIEW_MODES,
    RESIZE_MODES,
    RNG_SOURCES,
    SAME_SAMPLER,
    SAME_SCHEDULE,
    SEAMS_FIX_MODES,
    SEED_LIMIT,
    VAE_TILING_MODES,
    option,
)
from .machine import MachineOptions, SeedOptions
from .passes import HiresOptions, InputOptions
from .picture import PictureOptions
from .upscale import SdUpscaleOptions

__all__ = [
    "ATTENTION_MODES",
    "BUILT_IN_UPSCALERS",
    "DEVICE_RE",
    "DTYPES",
    "DTYPE_ALIASES",
    "HiresOptions",
    "IMAGE_UPSCALERS",
    "INPAINT_AREAS",
    "InputOptions",
    "LATENT_UPSCALERS",
    "MASKED_CONTENT",
    "MAX_SEED",
    "MAX_STEPS",
    "MAX_SIDE",
    "MachineOptions",
    "OFFLOAD_MODES",
    "PREVIEW_MODES",
    "PictureOptions",
    "RESIZE_MODES",
    "RNG_SOURCES",
    "SEAMS_FIX_MODES",
    "SEED_LIMIT",
    "SdUpscaleOptions",
    "SAME_SAMPLER",
    "SAME_SCHEDULE",
    "SeedOptions",
    "VAE_TILING_MODES",
    "option",
]
