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
