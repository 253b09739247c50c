"""DWPose's person detector: YOLOX-L (``yolox_l``) boxes around each person, as sd-webui-controlnet finds them.

The picture (RGB, as the extension passes it) is shrunk or grown by one ratio to fit 640×640 (bilinear), put in the
top-left corner of a grey (114) square and given to the network as 0..255 floats, channels first. The network
answers one row of 85 per anchor (8400: an 80², 40² and 20² grid at strides 8, 16 and 32): the box's centre offset
and log size in grid cells, its objectness, and the 80 COCO classes' probabilities. Each row is decoded on its grid
cell, a class's score is objectness × class probability; per class, boxes above 0.1 go through greedy NMS (IoU
over 0.45 dropped, areas counted with the +1 pixel of the extension), and the person boxes (class 0) scoring above
0.3 are kept, in the original picture's pixels (``animal_openpose`` keeps classes 14–23 instead, class by class).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

INPUT_SIZE = 640
STRIDES = (8, 16, 32)
PAD_VALUE = 114
SCORE_THRESHOLD, NMS_THRESHOLD, PERSON_THRESHOLD = 0.1, 0.45, 0.3


def letterbox(image: np.ndarray, size: int = INPUT_SIZE) -> tuple[np.ndarray, float]:
    """The detector's input (1×3×size×size float32) and the ratio the picture was scaled by."""
    import cv2

    ratio = min(size / image.shape[0], size / image.shape[1])
    width, height = int(image.shape[1] * ratio), int(image.shape[0] * ratio)
    square = np.full((size, size, 3), PAD_VALUE, dtype=np.uint8)
    square[:height, :width] = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(square.transpose(2, 0, 1)[None], dtype=np.float32), ratio


def anchor_grid(size: int = INPUT_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Each anchor's grid cell (x, y) and its stride, in the network's row order (stride 8's grid first)."""
    cells, strides = [], []
    for stride in STRIDES:
        side = size // stride
        ys, xs = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
        cells.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
        strides.append(np.full((side * side, 1), stride))
    return np.concatenate(cells).astype(np.float64), np.concatenate(strides).astype(np.float64)


def decode_boxes(raw: np.ndarray, size: int = INPUT_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Rows of 85 (one per anchor) → boxes (x1, y1, x2, y2) in the network's pixels and each class's score."""
    raw = np.asarray(raw, dtype=np.float64).reshape(-1, raw.shape[-1])
    cells, strides = anchor_grid(size)
    if raw.shape[0] != cells.shape[0]:
        raise ValueError(f"controlnet: the DWPose detector gave {raw.shape[0]} rows, not {cells.shape[0]}")
    centres = (raw[:, :2] + cells) * strides
    sizes = np.exp(raw[:, 2:4]) * strides
    boxes = np.concatenate([centres - sizes / 2.0, centres + sizes / 2.0], axis=1)
    return boxes, raw[:, 4:5] * raw[:, 5:]


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float = NMS_THRESHOLD) -> list[int]:
    """Greedy non-maximum suppression: the indices kept, best first (areas with the +1 pixel of the extension)."""
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order, keep = scores.argsort()[::-1], []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        width = np.maximum(0.0, np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]) + 1)
        height = np.maximum(0.0, np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]) + 1)
        inter = width * height
        order = rest[inter / (areas[best] + areas[rest] - inter) <= threshold]
    return keep


def class_boxes(raw: np.ndarray, ratio: float, classes: tuple[int, ...] = (0,)) -> np.ndarray | None:
    """The boxes (n×4, original pixels) of `classes` above 0.3 after each class's NMS, class by class, best first.

    None when no class at all scores above 0.1 (the extension's NMS then finds nothing).
    """
    boxes, scores = decode_boxes(raw)
    if not (scores > SCORE_THRESHOLD).any():
        return None
    kept = []
    for cls in classes:
        valid = scores[:, cls] > SCORE_THRESHOLD
        found, score = boxes[valid] / ratio, scores[valid, cls]
        kept += [found[i] for i in nms(found, score) if score[i] > PERSON_THRESHOLD] if valid.any() else []
    return np.array(kept, dtype=np.float64).reshape(-1, 4)


def person_boxes(raw: np.ndarray, ratio: float) -> np.ndarray | None:
    """The people's boxes (n×4, original pixels) from the detector's rows; None when no class scores above 0.1."""
    return class_boxes(raw, ratio, (0,))


def detect_people(
    net: Callable[[np.ndarray], list[np.ndarray]] | Any, image: np.ndarray, classes: tuple[int, ...] = (0,)
) -> np.ndarray | None:
    """Boxes around each person (or thing of `classes`) in an RGB picture (n×4: x1, y1, x2, y2 in its pixels).

    None when nothing is found.
    """
    batch, ratio = letterbox(image)
    return class_boxes(net(batch)[0][0], ratio, classes)
