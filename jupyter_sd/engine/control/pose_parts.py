"""OpenPose's hands and faces, found from a body's keypoints, as sd-webui-controlnet's openpose annotator does it.

Hands: a square box beyond each wrist (OpenPose's hand detector: the wrist pushed a third of the forearm on, 1.5 ×
the longer of forearm and 0.9 × upper arm wide, clipped to the picture, kept from 20 px), blurred (σ 0.8), run at
184, 368, 552 and 736 px and the heatmaps averaged at 128²; each of the 21 points is the maximum of the largest
(by heatmap mass) 8-connected region above 0.05 of its σ-3 blurred heatmap. Faces: a box around the nose as wide as
3 × the farthest eye or 1.5 × the farthest ear distance, run at 384², the heatmaps resized bilinearly (corners
aligned) to the box; each of the 71 maps above 0.05 gives its maximum. Points not found are −1.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .pose_body import maps_back, network_input, pad_right_down, smart_resize

Point = tuple[float, float]
HAND_SCALES, HAND_MAP, FACE_SIZE = (0.5, 1.0, 1.5, 2.0), 128, 384


def hand_boxes(body: list[Point | None], width: int, height: int) -> list[tuple[int, int, int, bool]]:
    """``(x, y, side, is_left)`` of each hand box the body's arms give (left arm first), clipped to the picture."""
    boxes = []
    for shoulder, elbow, wrist, is_left in ((5, 6, 7, True), (2, 3, 4, False)):
        if body[shoulder] is None or body[elbow] is None or body[wrist] is None:
            continue
        (x1, y1), (x2, y2), (x3, y3) = body[shoulder], body[elbow], body[wrist]
        x, y = x3 + 0.33 * (x3 - x2), y3 + 0.33 * (y3 - y2)
        side = 1.5 * max(math.sqrt((x3 - x2) ** 2 + (y3 - y2) ** 2), 0.9 * math.sqrt((x2 - x1) ** 2 + (y2 - y1) ** 2))
        x, y = max(x - side / 2, 0), max(y - side / 2, 0)
        side = min(width - x if x + side > width else side, height - y if y + side > height else side)
        if side >= 20:
            boxes.append((int(x), int(y), int(side), is_left))
    return boxes


def face_box(body: list[Point | None], width: int, height: int) -> tuple[int, int, int] | None:
    """``(x, y, side)`` of the face box around the nose, or None (no nose, no eye or ear, under 20 px)."""
    nose, sides = body[0], [(body[14], 3.0), (body[15], 3.0), (body[16], 1.5), (body[17], 1.5)]
    if nose is None or all(point is None for point, _ in sides):
        return None
    x0, y0 = nose
    half = 0.0
    for point, factor in sides:
        if point is not None:
            half = max(half, max(abs(x0 - point[0]), abs(y0 - point[1])) * factor)
    x, y = max(x0 - half, 0), max(y0 - half, 0)
    side = min(width - x if x + half > width else half * 2, height - y if y + half > height else half * 2)
    return (int(x), int(y), int(side)) if side >= 20 else None


def hand_heatmaps(net: Any, crop: np.ndarray) -> np.ndarray:
    """The hand network's 22 heatmaps of a BGR hand crop, averaged over the four scales, at 128×128."""
    import cv2
    import torch

    blurred = cv2.GaussianBlur(crop, (0, 0), 0.8)
    device = next(net.parameters()).device
    average = np.zeros((HAND_MAP, HAND_MAP, 22))
    for scale in HAND_SCALES:
        side = scale * 368
        padded, down, right = pad_right_down(smart_resize(blurred, side, side))
        with torch.no_grad():
            (output,) = net(network_input(padded).to(device))
        average += maps_back(output, padded, down, right, (HAND_MAP, HAND_MAP)) / len(HAND_SCALES)
    return average


def hand_peaks(heatmaps: np.ndarray, height: int, width: int) -> np.ndarray:
    """The 21 hand points ``(x, y)`` in the crop's pixels; ``(0, 0)`` where a point's map never passes 0.05."""
    from scipy.ndimage import gaussian_filter, label

    peaks = []
    for part in range(21):
        raw = heatmaps[:, :, part].copy()
        binary = np.ascontiguousarray(gaussian_filter(raw, sigma=3) > 0.05, dtype=np.uint8)
        if np.sum(binary) == 0:
            peaks.append([0, 0])
            continue
        regions, count = label(binary, structure=np.ones((3, 3)))
        biggest = np.argmax([np.sum(raw[regions == i]) for i in range(1, count + 1)]) + 1
        raw[regions != biggest] = 0
        y = int(raw.max(1).argmax())
        x = int(raw.argmax(1)[y])
        peaks.append([int(float(x) * float(width) / HAND_MAP), int(float(y) * float(height) / HAND_MAP)])
    return np.array(peaks)


def face_peaks(net: Any, crop: np.ndarray) -> np.ndarray:
    """The face points ``(x, y)`` in the crop's pixels: each of the 71 heatmaps' maximum where it passes 0.05."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    height, width = crop.shape[:2]
    scaled = torch.from_numpy(smart_resize(crop, FACE_SIZE, FACE_SIZE)).permute(2, 0, 1) / 256.0 - 0.5
    with torch.no_grad():
        (output,) = net(scaled[None].to(next(net.parameters()).device))
        heatmaps = F.interpolate(output, (height, width), mode="bilinear", align_corners=True).cpu().numpy()[0]
    peaks = []
    for heatmap in heatmaps:
        above = np.where(heatmap > 0.05)
        if above[0].size:
            best = np.argmax(heatmap[above])
            peaks.append([above[1][best], above[0][best]])
    return np.array(peaks)


def in_picture(peaks: np.ndarray, x: int, y: int, width: int, height: int) -> np.ndarray:
    """Crop points moved into the picture and divided by its size (float32, as the extension keeps them).

    A coordinate of 0 (not found) becomes −1/size.
    """
    peaks = peaks.astype(np.float32).reshape(-1, 2)
    peaks[:, 0] = np.where(peaks[:, 0] < 1e-6, -1, peaks[:, 0] + x) / float(width)
    peaks[:, 1] = np.where(peaks[:, 1] < 1e-6, -1, peaks[:, 1] + y) / float(height)
    return peaks


def detect_hands(net: Any, image: np.ndarray, body: list[Point | None]) -> tuple[Any, Any]:
    """The body's left and right hands (normalized float32 points, None where no box), in a BGR picture."""
    height, width = image.shape[:2]
    hands: dict[bool, Any] = {True: None, False: None}
    for x, y, side, is_left in hand_boxes(body, width, height):
        crop = image[y : y + side, x : x + side]
        peaks = hand_peaks(hand_heatmaps(net, crop), crop.shape[0], crop.shape[1])
        hands[is_left] = in_picture(peaks, x, y, width, height)
    return hands[True], hands[False]


def detect_face(net: Any, image: np.ndarray, body: list[Point | None]) -> np.ndarray | None:
    """The body's face points (normalized float32), or None where it has no face box or no point passes."""
    height, width = image.shape[:2]
    box = face_box(body, width, height)
    if box is None:
        return None
    x, y, side = box
    peaks = face_peaks(net, image[y : y + side, x : x + side])
    return in_picture(peaks, x, y, width, height) if peaks.ndim == 2 and peaks.shape[1] == 2 else None
