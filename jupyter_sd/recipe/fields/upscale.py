"""Tiled SD upscale (the Ultimate SD upscale extension): enlarge, then repaint in tiles (engine/sd_upscale.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .base import IMAGE_UPSCALERS, SEAMS_FIX_MODES, TILE_REDRAW_MODES, option
from .passes import HiresOptions


@dataclass
class SdUpscaleOptions(HiresOptions):
    """Ultimate SD upscale's settings; its infotext keys are the extension's own ("Ultimate SD upscale …")."""

    sd_upscale: float = field(
        default=0.0,
        metadata=option(
            "Tiled SD upscale: enlarge the init picture (or each one painted) by this factor with --sd-upscaler, "
            "then repaint it tile by tile with img2img at --strength (0 = off).",
            flags=("--sd-upscale",),
            range=(0.0, 16.0),
            step=0.05,
        ),
    )
    sd_upscaler: str = field(
        default="Lanczos",
        metadata=option(
            "What enlarges the picture before the tiles are repainted: Lanczos, Nearest, None or an upscaler model "
            "from the models folder's ESRGAN/ (4x-UltraSharp, R-ESRGAN 4x+, …).",
            flags=("--sd-upscaler",),
            infotext="Ultimate SD upscale upscaler",
            choices=(*IMAGE_UPSCALERS, "None"),
            models="upscaler",
        ),
    )
    tile_redraw: str = field(
        default="Linear",
        metadata=option(
            "Tiled SD upscale: the order tiles are repainted in (row by row, or a checkerboard: every other tile "
            "first), or None to run only the seams fix over the enlarged picture.",
            flags=("--tile-redraw",),
            choices=TILE_REDRAW_MODES,
        ),
    )
    tile_width: int = field(
        default=512,
        metadata=option(
            "Tiled SD upscale: tile width in pixels of the enlarged picture.",
            flags=("--tile-width",),
            infotext="Ultimate SD upscale tile_width",
            range=(8, 2048),
        ),
    )
    tile_height: int = field(
        default=512,
        metadata=option(
            "Tiled SD upscale: tile height.",
            flags=("--tile-height",),
            infotext="Ultimate SD upscale tile_height",
            range=(8, 2048),
        ),
    )
    tile_padding: int = field(
        default=32,
        metadata=option(
            "Tiled SD upscale: pixels of context painted around each tile.",
            flags=("--tile-padding",),
            infotext="Ultimate SD upscale padding",
            range=(0, 256),
        ),
    )
    tile_mask_blur: int = field(
        default=8,
        metadata=option(
            "Tiled SD upscale: blur of each tile's edge where it is pasted back.",
            flags=("--tile-mask-blur",),
            infotext="Ultimate SD upscale mask_blur",
            range=(0, 64),
        ),
    )
    seams_fix: str = field(
        default="None",
        metadata=option(
            "Tiled SD upscale: repaint the seams between tiles afterwards (bands across them, or tiles offset by "
            "half a tile).",
            flags=("--seams-fix",),
            choices=SEAMS_FIX_MODES,
        ),
    )
    seams_fix_denoise: float = field(
        default=0.35,
        metadata=option(
            "Denoising strength of the seams fix.", flags=("--seams-fix-denoise",), range=(0.0, 1.0), step=0.01
        ),
    )
    seams_fix_width: int = field(
        default=64,
        metadata=option("Band pass seams fix: width of each band.", flags=("--seams-fix-width",), range=(0, 128)),
    )
    seams_fix_padding: int = field(
        default=16,
        metadata=option(
            "Seams fix: pixels of context around each seam.", flags=("--seams-fix-padding",), range=(0, 128)
        ),
    )
    seams_fix_mask_blur: int = field(
        default=4,
        metadata=option("Seams fix: blur of the mask's edge.", flags=("--seams-fix-mask-blur",), range=(0, 64)),
    )
