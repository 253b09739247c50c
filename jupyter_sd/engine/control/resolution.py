"""The processor resolution: an input scaled so its short side is ``processor_res``, and Pixel Perfect's choice of it.

sd-webui-controlnet scales the input (bicubic up, area down), pads it to a multiple of 64 by repeating the edge
pixels, runs the preprocessor on the padded picture and crops the padding off again; Pixel Perfect picks the
resolution that makes the map as big as the picture painted, for the unit's resize mode.
"""

from __future__ import annotations

import numpy as np

from ...recipe.control_names import resize_mode_name


def pad_to_64(size: int) -> int:
    """How many pixels take `size` up to the next multiple of 64."""
    return -size % 64


def scale_with_pad(image: np.ndarray, resolution: int) -> tuple[np.ndarray, tuple[int, int]]:
    """`image` (H×W×C uint8) scaled to short side `resolution` and edge-padded to multiples of 64.

    Returns the padded picture and the ``(height, width)`` of the scaled picture inside it (crop to it afterwards).
    """
    import cv2

    height, width = image.shape[:2]
    k = float(resolution) / float(min(height, width))
    new_h, new_w = int(np.round(height * k)), int(np.round(width * k))
    interpolation = cv2.INTER_CUBIC if k > 1 else cv2.INTER_AREA
    scaled = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    if scaled.ndim == 2:
        scaled = scaled[:, :, None]
    padded = np.pad(scaled, [(0, pad_to_64(new_h)), (0, pad_to_64(new_w)), (0, 0)], mode="edge")
    return np.ascontiguousarray(padded), (new_h, new_w)


def pixel_perfect_resolution(image_size: tuple[int, int], width: int, height: int, resize_mode: object) -> int:
    """The processor resolution Pixel Perfect picks for an input of ``(width, height)`` painted at `width×height`.

    The input's short side times the scale that fits it to the picture: the smaller scale for "Resize and Fill"
    (the whole input shows), the larger for "Just Resize" and "Crop and Resize" (the input covers the picture).
    """
    raw_w, raw_h = image_size
    k_h, k_w = float(height) / raw_h, float(width) / raw_w
    k = min(k_h, k_w) if resize_mode_name(resize_mode) == "Resize and Fill" else max(k_h, k_w)
    return int(np.round(k * min(raw_h, raw_w)))
