"""Comparing pictures and weights across two loading paths.

CPU kernels differ from machine to machine (and with a tensor's memory layout), so two pipelines that hold the
same weights can differ by 1/255 on a few pixels. Where the claim is "these hold the same weights", assert the
weights directly, tensor by tensor, and compare pixels within 1/255. Identity stays the rule where the same code
runs twice in one process.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2")


def pixels(image: Any) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def assert_pixels_close(actual: Any, expected: Any, tolerance: int = 1) -> None:
    """Every pixel within `tolerance`/255 of the reference, and the reference is not blank."""
    a, b = pixels(actual), pixels(expected)
    assert a.shape == b.shape
    assert b.std() > 1  # not a blank picture: closeness means something
    diff = np.abs(a - b)
    assert diff.max() <= tolerance, f"max {diff.max()}, mean {diff.mean():.4f}, pixels off {(diff > 0).mean():.2%}"


def assert_same_weights(pipe_a: Any, pipe_b: Any) -> None:
    """The two pipelines' models hold equal tensors under equal names (the weights came from the same place)."""
    import torch

    compared = 0
    for name in COMPONENTS:
        a, b = getattr(pipe_a, name, None), getattr(pipe_b, name, None)
        assert (a is None) == (b is None), name
        if a is None:
            continue
        state_a, state_b = a.state_dict(), b.state_dict()
        assert set(state_a) == set(state_b), name
        for key, tensor in state_a.items():
            assert torch.equal(tensor, state_b[key]), f"{name}.{key}"
        compared += 1
    assert compared >= 3


def dark_rows(image: Image.Image, box) -> np.ndarray:
    """The rows of `box` in `image` that hold any dark pixel (where a label's text was drawn)."""
    region = np.asarray(image.crop(box).convert("L"))
    return np.nonzero((region < 128).any(axis=1))[0]


def ssim(a: Any, b: Any, win: int = 7) -> float:
    """Mean SSIM of two pictures in grey, with skimage's defaults (7×7 uniform window, sample covariance, L = 255)."""
    from numpy.lib.stride_tricks import sliding_window_view

    x, y = (np.asarray(image.convert("RGB"), dtype=np.float64) @ [0.299, 0.587, 0.114] for image in (a, b))
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    wx, wy = sliding_window_view(x, (win, win)), sliding_window_view(y, (win, win))
    mx, my = wx.mean((-1, -2)), wy.mean((-1, -2))
    n = win * win / (win * win - 1)
    vx, vy = wx.var((-1, -2)) * n, wy.var((-1, -2)) * n
    vxy = ((wx - mx[..., None, None]) * (wy - my[..., None, None])).mean((-1, -2)) * n
    return float(((2 * mx * my + c1) * (2 * vxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))).mean())


def psnr(a: Any, b: Any) -> float:
    """Peak signal-to-noise ratio in dB (infinite for equal pictures)."""
    error = np.mean((pixels(a).astype(np.float64) - pixels(b)) ** 2)
    return float("inf") if error == 0 else float(10 * np.log10(255**2 / error))
