"""``lineart_standard``'s arithmetic (no weights), shared by the built-in preprocessor and ``softedge_anyline``.

How much darker each pixel is than its Gaussian blur (σ 6), the smallest over the channels, scaled so that the median
of the pixels darker by more than 8 maps to 127 (16 at least), as sd-webui-controlnet's ``lineart_standard``.
"""

from __future__ import annotations

import numpy as np


def lineart_standard(image: np.ndarray) -> np.ndarray:
    """The map of `image` (H×W×3 uint8) at its own size: H×W uint8, lines white on black."""
    import cv2

    x = image.astype(np.float32)
    darker = np.min(cv2.GaussianBlur(x, (0, 0), 6.0) - x, axis=2).clip(0, 255)
    lines = darker[darker > 8]
    darker = darker / max(16.0, float(np.median(lines)) if lines.size else 16.0) * 127
    return darker.clip(0, 255).astype(np.uint8)
