"""Units' effective region masks, as sd-webui-controlnet's ``effective_region_mask``.

The extension's "Effective Region Mask" upload: a unit acts where its mask is white, not where it is black.

A ControlNet unit: the extension multiplies each of its residuals (after the weight and the control mode's scales) by
the mask's red channel (0..1, greys kept) resized bilinearly to that residual's grid (its ``hook.py``,
``ControlParams.apply_effective_region_mask``): `region_tensor` and `masked_residual`, applied by injection.py's hook.
A Flux, SD3 or Qwen-Image ControlNet's residuals are token sequences: the mask is resized to the token grid and laid
out as the tokens are (`masked_tokens`). Z-Image's residuals run over its unified sequence, the image's tokens (the
latents' 2×2 patches in rows, padded to a multiple of 32) then the caption's: only the image's are masked
(`masked_image_rows`); the padding and caption tokens keep their residuals, a departure (the extension has no such
model).

An IP-Adapter unit: the extension multiplies each adapter's attention output by the mask, stretched to that layer's
grid. Here the mask goes to diffusers' IP-Adapter attention processors as ``cross_attention_kwargs={"ip_adapter_masks":
…}``, each mask made by diffusers' ``IPAdapterMaskProcessor`` for the size the pass paints: a mask of another size (or
shape) is stretched to the picture, as the extension stretches it, then made black and white (grey at 0.5) and brought
to each layer's grid by diffusers. A unit without a mask gets None there: it acts everywhere. Flux's and SD3.5's
pipelines take them as ``joint_attention_kwargs`` instead, read by our processors (ip_adapter_regions.py).
"""

from __future__ import annotations

from typing import Any

from PIL import Image

_BUILT = ("SD1", "SDXL", "Flux", "SD3")
"""The families whose IP-Adapters take masks here (diffusers' UNet processors; ip_adapter_regions.py's)."""


def check_region_masks(family: str, masks: list[Any]) -> None:
    """Refuse, in one line, effective region masks on a family whose IP-Adapter takes none here.

    Raises
    ------
    ValueError
        A mask on an IP-Adapter unit of a family other than those of `_BUILT`.
    """
    if family not in _BUILT and any(mask is not None for mask in masks):
        msg = f"controlnet: IP-Adapter effective region masks paint on SD1.5, SDXL, Flux and SD3 for now, not {family}"
        raise ValueError(msg)


def region_mask_kwargs(masks: list[Any], width: int | None, height: int | None, pipe: Any = None) -> dict[str, Any]:
    """`pipe`'s ``cross_attention_kwargs`` (or ``joint_attention_kwargs``) for the adapters' `masks` ({} without any).

    `masks` are in adapter order; the key is the one `pipe`'s call takes (``cross_…`` without a `pipe`).
    """
    if all(mask is None for mask in masks):
        return {}
    if width is None or height is None:
        raise ValueError("controlnet: an IP-Adapter effective region mask needs the size painted")
    from diffusers.image_processor import IPAdapterMaskProcessor

    processor = IPAdapterMaskProcessor()
    made = [None if mask is None else processor.preprocess(mask, height=height, width=width) for mask in masks]
    import inspect

    takes = inspect.signature(type(pipe).__call__).parameters if pipe is not None else {}
    key = "joint_attention_kwargs" if "joint_attention_kwargs" in takes else "cross_attention_kwargs"
    return {key: {"ip_adapter_masks": made}}


def red_channel(picture: Any) -> Image.Image:
    """The mask as the extension reads it: its first (red) channel, an L picture (an L mask as it is)."""
    image = picture if isinstance(picture, Image.Image) else Image.fromarray(picture)
    return image if image.mode == "L" else image.convert("RGB").getchannel("R")


def region_tensor(picture: Any) -> Any:
    """A ControlNet unit's mask as the extension holds it: (1, 1, h, w) float32 in 0..1 at the mask's own size."""
    import numpy as np
    import torch

    return torch.from_numpy(np.asarray(red_channel(picture), dtype=np.float32) / 255.0)[None, None]


def masked_residual(residual: Any, mask: Any) -> Any:
    """`residual` (B, C, H, W) times `mask` resized bilinearly to H×W (in float32, then the residual's dtype)."""
    import torch

    grid = torch.nn.functional.interpolate(mask.to(residual.device), size=residual.shape[-2:], mode="bilinear")
    return residual * grid.to(residual.dtype)


def masked_tokens(sample: Any, mask: Any, size: tuple[int, int]) -> Any:
    """A transformer ControlNet's residual (B, tokens, D) times `mask` resized bilinearly to its token grid.

    The tokens are the latents' patches in rows (Flux's and Qwen-Image's packing, SD3's patch embedding); the grid's
    shape follows from their number and the picture's `size` (width, height), as the extension finds an attention
    layer's grid for its IP-Adapter masks.

    Raises
    ------
    ValueError
        The tokens make no grid of the picture's shape.
    """
    import math

    import torch

    count = sample.shape[1]
    width, height = size
    rows = max(1, round(math.sqrt(count * height / width)))
    cols = count // rows
    if rows * cols != count:
        raise ValueError(f"controlnet: {count} tokens make no grid of a {width}x{height} picture for a region mask")
    grid = torch.nn.functional.interpolate(mask.to(sample.device), size=(rows, cols), mode="bilinear")
    return sample * grid.reshape(1, count, 1).to(sample.dtype)


def masked_image_rows(sample: Any, mask: Any, grid: tuple[int, int]) -> Any:
    """A Z-Image ControlNet's residual (B, L, D), its image's tokens times `mask` resized bilinearly to `grid`.

    The image's tokens are the sequence's first rows×cols (`grid`: rows, cols); the rest (padding, caption) is kept.

    Raises
    ------
    ValueError
        A sequence shorter than the image's grid.
    """
    import torch

    rows, cols = grid
    if sample.shape[1] < rows * cols:
        raise ValueError(f"controlnet: {sample.shape[1]} tokens hold no {rows}x{cols} image grid for a region mask")
    weights = torch.nn.functional.interpolate(mask.to(sample.device), size=grid, mode="bilinear")
    image = sample[:, : rows * cols] * weights.reshape(1, rows * cols, 1).to(sample.dtype)
    return torch.cat([image, sample[:, rows * cols :]], dim=1)


__all__ = [
    "check_region_masks",
    "masked_image_rows",
    "masked_residual",
    "masked_tokens",
    "red_channel",
    "region_mask_kwargs",
    "region_tensor",
]
