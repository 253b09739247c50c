"""Outpainting: the init grown by ``--outpaint``'s pixels, and the mask of what to paint, for the inpaint pass.

The new border starts from the picture's edge rows and columns stretched outwards (as A1111's "Resize and fill"
fills), or with ``--outpaint-noise`` from noise whose texture and colours match the picture, as A1111's
"Outpainting mk2" script fills it. The mask covers the border and a band of ``--outpaint-blend`` pixels reaching
into the old picture on each side that grew, so the border is painted to join it; outside that band (and the mask
blur) the old picture's pixels are pasted back unchanged, as any inpaint keeps what is not masked (modes.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from ..recipe.values import parse_margins
from .pictures import Pictures

COLOUR_VARIATION = 0.05
"""How much each colour channel's noise is its own (the rest is shared), as Outpainting mk2's default."""
NOISE_SEED = 0
"""The matched noise's seed: fixed, as mk2's, so a recipe repaints the same border."""


def outpainted(request: Any, pictures: Pictures | None) -> Pictures | None:
    """The pictures an outpaint request paints from: the grown init and its mask; others are returned as given."""
    if not getattr(request, "outpaint", "") or pictures is None or pictures.init is None:
        return pictures
    margins = parse_margins(request.outpaint)
    init, mask = grow(pictures.init, margins, request.outpaint_blend, request.outpaint_noise)
    return Pictures(init=init, mask=mask, init_record=pictures.init_record)


def grow(
    picture: Image.Image, margins: tuple[int, int, int, int], blend: int, noise: bool = False
) -> tuple[Image.Image, Image.Image]:
    """`picture` grown by (left, right, top, bottom) pixels, and the mask (white = paint) of the border and band."""
    left, right, top, bottom = margins
    rgb = np.asarray(picture.convert("RGB"))
    height, width = rgb.shape[:2]
    canvas = np.pad(rgb, ((top, bottom), (left, right), (0, 0)), mode="edge")
    known = np.zeros(canvas.shape[:2], dtype=bool)
    known[top : top + height, left : left + width] = True
    if noise:
        canvas = matched_noise(canvas, known)
    kept = np.zeros_like(known)
    x1, y1 = left + (blend if left else 0), top + (blend if top else 0)
    x2, y2 = left + width - (blend if right else 0), top + height - (blend if bottom else 0)
    kept[max(y1, 0) : max(y2, 0), max(x1, 0) : max(x2, 0)] = True
    mask = np.where(kept, 0, 255).astype(np.uint8)
    return Image.fromarray(canvas, mode="RGB"), Image.fromarray(mask, mode="L")


def matched_noise(canvas: np.ndarray, known: np.ndarray, seed: int = NOISE_SEED) -> np.ndarray:
    """Fill the unknown pixels of `canvas` (H, W, 3 uint8) with noise shaped like the known picture.

    White noise, mostly shared by the three channels, is given the known picture's amplitude spectrum (its
    texture: how much of each frequency it holds), then each channel is mapped onto the known pixels' values by
    rank (histogram matching), so the noise has the picture's colours in the picture's proportions.
    """
    rng = np.random.default_rng(seed)
    shape = canvas.shape
    white = (1 - COLOUR_VARIATION) * rng.standard_normal(shape[:2])[..., None]
    white = white + COLOUR_VARIATION * rng.standard_normal(shape)
    pixels = canvas.astype(np.float64) / 255.0
    source = np.where(known[..., None], pixels, pixels[known].mean(axis=0))
    amplitude = np.abs(np.fft.fft2(source - source.mean(axis=(0, 1)), axes=(0, 1)))
    shaped = np.real(np.fft.ifft2(np.fft.fft2(white, axes=(0, 1)) * amplitude, axes=(0, 1)))
    matched = np.empty_like(pixels)
    for channel in range(shape[2]):
        matched[..., channel] = _match_histogram(shaped[..., channel], pixels[..., channel][known])
    filled = np.where(known[..., None], pixels, matched)
    return np.clip(np.round(filled * 255.0), 0, 255).astype(np.uint8)


def _match_histogram(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """`values` replaced, rank for rank, by the quantiles of `reference` (so their histograms agree)."""
    ranks = values.ravel().argsort().argsort()
    quantiles = np.sort(reference.ravel())
    picked = quantiles[(ranks * (quantiles.size - 1)) // max(ranks.size - 1, 1)]
    return picked.reshape(values.shape)
