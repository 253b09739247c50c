"""Token merging (ToMe, A1111's "Token merging ratio"): fewer attention tokens in the UNet's high-res blocks.

A1111 patches its UNet with the `tomesd` package when the ratio is above 0, with fixed settings (no random
partition, so a seed repaints the same picture; self-attention only); the same package and settings patch the
diffusers UNet here, so a recipe's ratio merges the same way. The patch stays on the UNet between cells and changes
only when a request's ratio does. Speeds up big pictures (the hires pass above all) at a small cost in detail.
"""

from __future__ import annotations

import importlib.util
from typing import Any

A1111_SETTINGS = {"use_rand": False, "merge_attn": True, "merge_crossattn": False, "merge_mlp": False}
"""The `tomesd.apply_patch` settings A1111 uses (modules/sd_models.py): its ratio is the only knob."""


def check_available() -> None:
    """Raise one line when `tomesd` is missing (before anything is painted)."""
    if importlib.util.find_spec("tomesd") is None:
        msg = "token_merging: needs the tomesd package: pip install 'jupyter_sd[tome]' (or pip install tomesd)"
        raise ValueError(msg)


def set_ratio(pipe: Any, ratio: float) -> None:
    """Patch the pipeline's UNet for `ratio` (0 removes the patch); nothing happens when it already has it."""
    unet = getattr(pipe, "unet", None)
    if unet is None or getattr(unet, "_jupyter_sd_tome", 0.0) == ratio:
        return
    import tomesd

    if getattr(unet, "_jupyter_sd_tome", 0.0):
        tomesd.remove_patch(unet)
    if ratio > 0:
        tomesd.apply_patch(unet, ratio=ratio, **A1111_SETTINGS)
    unet._jupyter_sd_tome = ratio
