"""``depth_leres++``: LeReS with BoostingMonocularDepth's boost, as sd-webui-controlnet's ``estimateboost`` runs it.

1. The whole picture's double estimation (``leres_merge.double_estimate``) at 448 and its R_x resolution.
2. Where R_x is over the largest side (the extension's ``max_res``: the padded picture's), that estimate resized
   to the picture (bicubic) is the depth.
3. Otherwise local boosting: the picture resized (bicubic) to ``2·R_x / factor`` on its long side; patches on a
   grid (896 wide, stride 336) kept where their Sobel gradient density reaches the picture's, each grown by
   ``32 / factor`` while it keeps that density; largest first, each patch's double estimation (448 and 896) merged
   with the same region of the whole estimate by the merge network, fitted to it by a linear polyfit and blended in
   with a Gaussian mask (flat in the middle 70 %), at the picture's own scale.

The map is then depth_leres's (``leres.depth_to_map``): 16 bits, 8, Remove Near, inverted, Remove Background.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from .leres_merge import MERGE_SIZE, R_MAX, RECEPTIVE, double_estimate, gray_gradient, merge, processing_res


@lru_cache(maxsize=1)
def blend_mask(size: int = 3000) -> np.ndarray:
    """The extension's ``generatemask``: 1 inside the middle 70 %, Gaussian-blurred, stretched to 0..1 (float32)."""
    import cv2

    mask = np.zeros((size, size), np.float32)
    edge = int(0.15 * size)
    mask[edge : size - edge, edge : size - edge] = 1
    sigma = int(size / 16)
    kernel = int(2 * np.ceil(2 * sigma) + 1)
    mask = cv2.GaussianBlur(mask, (kernel, kernel), sigma)
    return ((mask - mask.min()) / (mask.max() - mask.min())).astype(np.float32)


def _density(integral: np.ndarray, rect: list[int]) -> float:
    """The gradient in `rect` (x, y, w, h) over its area, from the integral image."""
    x, y, w, h = rect
    total = integral[y + h, x + w] - integral[y, x + w] - integral[y + h, x] + integral[y, x]
    return float(total) / (w * h)


def _grown(integral: np.ndarray, rect: list[int], density: float, step: int) -> list[int]:
    """`rect` grown by `step` (half each side) while inside the picture and its density stays at `density` or more."""
    height, width = integral.shape
    test = list(rect)
    while True:
        test = [test[0] - step // 2, test[1] - step // 2, test[2] + step, test[3] + step]
        if test[0] < 0 or test[1] < 0 or test[1] + test[3] >= height or test[0] + test[2] >= width:
            return rect
        if _density(integral, test) < density:
            return rect
        rect = list(test)


def select_patches(image: np.ndarray, factor: float) -> list[list[int]]:
    """The extension's ``generatepatchs``: the patches (x, y, w, h) of `image` worth refining, largest first."""
    import cv2

    grad = gray_gradient(image)
    grad[grad < grad[grad > 0].mean()] = 0
    density = grad.sum() / grad.size
    integral = cv2.integral(grad)
    half = RECEPTIVE
    stride = int(round(half * 0.75))
    grid = [
        [k - half, j - half, 2 * half, 2 * half]
        for k in range(half, image.shape[1] - half, stride)
        for j in range(half, image.shape[0] - half, stride)
    ]
    step = int(32 / factor)
    chosen = [_grown(integral, rect, density, step) for rect in grid if _density(integral, rect) >= density]
    return sorted(chosen, key=lambda rect: rect[2], reverse=True)


def refine_patch(
    leres: Any, net: Any, picture: np.ndarray, base: np.ndarray, updated: np.ndarray, rect: list[int]
) -> None:
    """One patch's double estimation merged into `updated` (in place) over the same region of `base`."""
    import cv2

    x, y, w, h = rect
    patch_base = base[y : y + h, x : x + w]
    size = patch_base.shape
    estimate = double_estimate(leres, net, picture[y : y + h, x : x + w], RECEPTIVE, 2 * RECEPTIVE)
    estimate = cv2.resize(estimate, (MERGE_SIZE, MERGE_SIZE), interpolation=cv2.INTER_CUBIC)
    patch_base = cv2.resize(patch_base, (MERGE_SIZE, MERGE_SIZE), interpolation=cv2.INTER_CUBIC)
    mapped = merge(net, patch_base, estimate)
    fitted = np.polyval(np.polyfit(mapped.reshape(-1), patch_base.reshape(-1), deg=1), mapped)
    fitted = cv2.resize(fitted, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)
    mask = cv2.resize(blend_mask(), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    region = updated[y : y + h, x : x + w]
    updated[y : y + h, x : x + w] = region * (1 - mask) + fitted * mask


def boost_depth(leres: Any, net: Any, image: np.ndarray) -> np.ndarray:
    """LeReS++'s depth of `image` (H×W×3 uint8 RGB, the padded picture): H×W float32."""
    import cv2

    height, width = image.shape[:2]
    whole_size, patch_scale = processing_res(image)
    whole = double_estimate(leres, net, image, RECEPTIVE, whole_size)
    factor = max(min(1.0, 4 * patch_scale * whole_size / R_MAX), 0.2)
    if max(height, width) < whole_size:
        return cv2.resize(whole, (width, height), interpolation=cv2.INTER_CUBIC)
    if height > width:
        rows, cols = 2 * whole_size, round(2 * whole_size * width / height)
    else:
        rows, cols = round(2 * whole_size * height / width), 2 * whole_size
    rows, cols = int(round(rows / factor)), int(round(cols / factor))
    target = cv2.resize(image, (cols, rows), interpolation=cv2.INTER_CUBIC)
    patches = select_patches(target, factor)
    scale = height / rows
    own = (round(cols * scale), round(rows * scale))
    picture = cv2.resize(target, own, interpolation=cv2.INTER_CUBIC)
    base = cv2.resize(whole, own, interpolation=cv2.INTER_CUBIC)
    updated = base.copy()
    for rect in patches:
        refine_patch(leres, net, picture, base, updated, np.round(np.array(rect) * scale).astype(int).tolist())
    return cv2.resize(updated, (width, height), interpolation=cv2.INTER_CUBIC)


def boost_depth_map(
    leres: Any, net: Any, image: np.ndarray, remove_near: float, remove_background: float
) -> np.ndarray:
    """``depth_leres++``'s map of `image` (the padded picture): H×W uint8, near bright."""
    from .leres import depth_to_map

    return depth_to_map(boost_depth(leres, net, image), remove_near, remove_background)
