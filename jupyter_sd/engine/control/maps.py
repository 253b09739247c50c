"""A control map fitted to the size painted, as sd-webui-controlnet fits it (its "high quality resize").

The map is scaled to cover ("Crop and Resize", the middle kept), to fit ("Resize and Fill", the rest filled with the
median colour of the map's border) or stretched ("Just Resize"). The scaling keeps a map's character: maps of few
colours (segmentation) are scaled nearest-neighbour, black-and-white maps stay black-and-white (Otsu's threshold),
and maps of one-pixel lines (canny, scribbles) are thinned back to one-pixel lines. An inpaint map's mask (its
fourth channel) is scaled alongside and made binary; the filled border counts as masked.
"""

from __future__ import annotations

import numpy as np

from ...recipe.control_names import resize_mode_name


def _thinning_kernels(raw: list[list[list[int]]]) -> list[np.ndarray]:
    """The hit-or-miss kernels and their four rotations (1: white, -1: black, 0: either)."""
    base = [np.array(kernel, dtype=np.int32) for kernel in raw]
    return [np.ascontiguousarray(np.rot90(kernel, k=turn)) for turn in range(4) for kernel in base]


_THIN = _thinning_kernels([[[-1, -1, -1], [0, 1, 0], [1, 1, 1]], [[0, -1, -1], [1, 1, -1], [0, 1, 0]]])
"""Lvmin Zhang's edge-thinning patterns: a white pixel on a line's side that the line does not need."""
_PRUNE = _thinning_kernels([[[-1, -1, -1], [-1, 1, -1], [0, 0, -1]], [[-1, -1, -1], [-1, 1, -1], [-1, 0, 0]]])
"""Spur ends: a white pixel with one neighbour, removed once after thinning an enlarged map."""


def _remove_once(lines: np.ndarray, kernels: list[np.ndarray]) -> bool:
    """Blacken every pixel any kernel matches, kernel after kernel; whether any was."""
    import cv2

    changed = False
    for kernel in kernels:
        hits = cv2.morphologyEx(lines, cv2.MORPH_HITMISS, kernel) > 127
        if hits.any():
            lines[hits] = 0
            changed = True
    return changed


def thin_lines(lines: np.ndarray, prune: bool) -> np.ndarray:
    """A black-and-white map's lines thinned to one pixel (at most 32 rounds), spurs pruned when asked."""
    lines = lines.copy()
    for _ in range(32):
        if not _remove_once(lines, _THIN):
            break
    if prune:
        _remove_once(lines, _PRUNE)
    return lines


def _ridges(grey: np.ndarray) -> np.ndarray:
    """Keep only pixels that are the brightest along some direction (across a line), as a non-maximum suppression."""
    import cv2

    lines = (
        [[0, 0, 0], [1, 1, 1], [0, 0, 0]],
        [[0, 1, 0], [0, 1, 0], [0, 1, 0]],
        [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
        [[0, 0, 1], [0, 1, 0], [1, 0, 0]],
    )
    kept = np.zeros_like(grey)
    for line in lines:
        peak = cv2.dilate(grey, np.array(line, dtype=np.uint8)) == grey
        kept[peak] = grey[peak]
    return kept


def _kind(colour: np.ndarray) -> tuple[int, bool, bool]:
    """The map's count of distinct colours, whether it is black-and-white, and whether of one-pixel lines."""
    import cv2

    count = len(np.unique(colour.reshape(-1, colour.shape[2]), axis=0))
    binary = count == 2 and colour.min() < 16 and colour.max() > 240
    one_pixel = False
    if binary:
        square = np.ones((3, 3), dtype=np.uint8)
        opened = cv2.dilate(cv2.erode(colour, square), square)
        one_pixel = np.count_nonzero(opened < colour) * 2 > np.count_nonzero(colour > 127)
    return count, binary, one_pixel


def scale_map(control_map: np.ndarray, width: int, height: int) -> np.ndarray:
    """`control_map` scaled to ``width×height``, keeping few-colour, black-and-white and one-pixel-line maps so."""
    import cv2

    colour, mask = control_map, None
    if control_map.shape[2] == 4:
        colour, mask = control_map[:, :, :3], control_map[:, :, 3]
    if colour.shape[:2] != (height, width):
        old = colour.shape[0] * colour.shape[1]
        count, binary, one_pixel = _kind(colour)
        if 2 < count < 200:
            interpolation = cv2.INTER_NEAREST
        else:
            interpolation = cv2.INTER_AREA if width * height < old else cv2.INTER_CUBIC
        scaled = cv2.resize(colour, (width, height), interpolation=interpolation)
        if mask is not None:
            mask = cv2.resize(mask, (width, height), interpolation=interpolation)
        if binary:
            grey = np.mean(scaled.astype(np.float32), axis=2).clip(0, 255).astype(np.uint8)
            if one_pixel:
                grey = _ridges(grey)
            _, grey = cv2.threshold(grey, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
            if one_pixel:
                grey = thin_lines(grey, prune=width * height > old)
            scaled = np.repeat(grey[:, :, None], 3, axis=2)
        colour = scaled
    if mask is None:
        return np.ascontiguousarray(colour)
    binary_mask = np.where(mask > 127, 255, 0).astype(np.uint8)[:, :, None]
    return np.concatenate([colour, binary_mask.astype(colour.dtype)], axis=2)


def fit_map(control_map: np.ndarray, width: int, height: int, resize_mode: object) -> np.ndarray:
    """`control_map` (H×W×3, or ×4 with an inpaint mask) fitted to the picture painted, by the unit's resize mode."""
    mode = resize_mode_name(resize_mode)
    if control_map.ndim == 2:
        control_map = np.repeat(control_map[:, :, None], 3, axis=2)
    if mode == "Just Resize":
        return scale_map(control_map, width, height)
    old_h, old_w = control_map.shape[:2]
    pick = min if mode == "Resize and Fill" else max
    k = pick(height / old_h, width / old_w)
    scaled = scale_map(control_map, int(np.round(old_w * k)), int(np.round(old_h * k)))
    new_h, new_w = scaled.shape[:2]
    if mode == "Crop and Resize":
        top, left = max(0, (new_h - height) // 2), max(0, (new_w - width) // 2)
        return np.ascontiguousarray(scaled[top : top + height, left : left + width])
    edges = np.concatenate([control_map[0], control_map[-1], control_map[:, 0], control_map[:, -1]], axis=0)
    fill = np.median(edges, axis=0).astype(control_map.dtype)
    if fill.shape[0] == 4:
        fill[3] = 255  # the filled border is to be painted
    canvas = np.tile(fill[None, None], (height, width, 1))
    top, left = max(0, (height - new_h) // 2), max(0, (width - new_w) // 2)
    canvas[top : top + new_h, left : left + new_w] = scaled
    return canvas
