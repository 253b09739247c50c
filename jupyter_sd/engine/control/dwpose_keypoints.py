"""DWPose's whole-body keypoints: RTMPose (``dw-ll_ucoco_384``) on each person's box, read as OpenPose's points.

Each box (the whole picture when the detector kept none) is grown 1.25× about its centre and widened or heightened
to the network's 3:4 aspect (288×384), and that area is warped (bilinear, no rotation) onto the network's input,
then normalized with ImageNet's mean and std (0..255 scale, RGB). The network answers SimCC vectors: for each of
the 133 COCO-WholeBody keypoints one over twice the input's width (x) and one over twice its height (y); a point
is the argmax of each (halved: split ratio 2), its score the smaller of the two maxima (-1 where that is not
positive), and it is mapped back through the box. As sd-webui-controlnet, a neck is put at the shoulders' mean
(scored 1 when both shoulders pass 0.3, else 0), the 17 body points are reordered into OpenPose's 18, and a point
scoring under 0.3 is dropped; a part whose points are all dropped is None. Hands are points 92–112 (left) and
113–133 (right), the face 24–91 plus the two eyes as OpenPose's 70; the feet (18–23) are not drawn.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .pose_draw import Pose

INPUT_SIZE = (288, 384)
"""The network's input, width × height."""
SPLIT_RATIO = 2.0
BOX_PADDING = 1.25
MEAN = np.array([123.675, 116.28, 103.53])
STD = np.array([58.395, 57.12, 57.375])
VISIBLE = 0.3
COCO_TO_OPENPOSE = {
    1: 17, 2: 6, 3: 8, 4: 10, 6: 7, 7: 9, 8: 12, 9: 14, 10: 16, 12: 13, 13: 15, 14: 2, 15: 1, 16: 4, 17: 3,
}  # fmt: skip
"""OpenPose's body point ← the point at that place once the neck is inserted at 17 (mmpose's order: nose, eyes …)."""


def box_centre_scale(box: np.ndarray, size: tuple[int, int] = INPUT_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """A box's centre and the area cropped around it: 1.25× the box, grown to the input's aspect ratio."""
    x1, y1, x2, y2 = (float(v) for v in box)
    centre = np.array([x1 + x2, y1 + y2]) * 0.5
    w, h = (x2 - x1) * BOX_PADDING, (y2 - y1) * BOX_PADDING
    aspect = size[0] / size[1]
    scale = np.array([w, w / aspect]) if w > h * aspect else np.array([h * aspect, h])
    return centre, scale


def crop_matrix(centre: np.ndarray, scale: np.ndarray, size: tuple[int, int] = INPUT_SIZE) -> np.ndarray:
    """The 2×3 affine map taking the area (`centre`, `scale`) onto the network's input (mmpose's three points)."""
    import cv2

    out_w, out_h = size
    src = np.array([centre, centre + [0.0, -0.5 * scale[0]], centre + [-0.5 * scale[0], -0.5 * scale[0]]])
    half = np.array([out_w * 0.5, out_h * 0.5])
    dst = np.array([half, half + [0.0, -0.5 * out_w], half + [-0.5 * out_w, -0.5 * out_w]])
    return cv2.getAffineTransform(src.astype(np.float32), dst.astype(np.float32))


def crop_input(image: np.ndarray, centre: np.ndarray, scale: np.ndarray, size: tuple[int, int] = INPUT_SIZE):
    """One person's input: the area warped to `size` (bilinear), normalized, channels first (3×H×W float32)."""
    import cv2

    warped = cv2.warpAffine(
        image, crop_matrix(centre, scale, size), (int(size[0]), int(size[1])), flags=cv2.INTER_LINEAR
    )
    return ((warped - MEAN) / STD).transpose(2, 0, 1).astype(np.float32)


def simcc_decode(simcc_x: np.ndarray, simcc_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each keypoint's (x, y) in input pixels (argmax / split ratio; -1 where unsure) and its score (K×2, K)."""
    xs, ys = np.argmax(simcc_x, axis=-1), np.argmax(simcc_y, axis=-1)
    points = np.stack([xs, ys], axis=-1).astype(np.float32)
    scores = np.minimum(np.max(simcc_x, axis=-1), np.max(simcc_y, axis=-1))
    points[scores <= 0.0] = -1
    return points / SPLIT_RATIO, scores


def to_picture(points: np.ndarray, centre: np.ndarray, scale: np.ndarray, size: tuple[int, int] = INPUT_SIZE):
    """Input pixels back to the picture's, through the box's area."""
    return points / np.array(size) * scale + centre - scale / 2


def openpose_order(points: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """133 keypoints (x, y, score) → 134 with the neck at 17 and the body's first 18 in OpenPose's order."""
    info = np.concatenate([points, scores[:, None]], axis=1)
    neck = info[[5, 6]].mean(axis=0)
    neck[2] = float(info[5, 2] > VISIBLE and info[6, 2] > VISIBLE)
    info = np.insert(info, 17, neck, axis=0)
    reordered = info.copy()
    for target, source in COCO_TO_OPENPOSE.items():
        reordered[target] = info[source]
    return reordered


def _part(rows: np.ndarray, width: int, height: int) -> list | None:
    points = [(x / width, y / height) if score >= VISIBLE else None for x, y, score in rows]
    return None if all(p is None for p in points) else points


def as_pose(info: np.ndarray, width: int, height: int) -> Pose:
    """One person's 134 points (picture pixels) as a ``Pose`` in fractions of the picture, unsure points None."""
    body = _part(info[:18], width, height) or [None] * 18
    face = _part(info[24:92], width, height)
    if face is not None:
        face = [*face, body[14], body[15]]  # OpenPose's 70 face points end with the eyes
    return Pose(body, _part(info[92:113], width, height), _part(info[113:134], width, height), face)


def estimate_poses(net: Callable[[np.ndarray], list[np.ndarray]] | Any, image: np.ndarray, boxes: np.ndarray):
    """Each boxed person's ``Pose`` in an RGB picture (the whole picture as one box when `boxes` is empty)."""
    height, width = image.shape[:2]
    size = tuple(getattr(net, "input_size", INPUT_SIZE))
    if len(boxes) == 0:
        boxes = np.array([[0, 0, width, height]], dtype=np.float64)
    areas = [box_centre_scale(box, size) for box in boxes]
    batch = np.stack([crop_input(image, centre, scale, size) for centre, scale in areas])
    simcc_x, simcc_y = net(batch)[:2]
    poses = []
    for i, (centre, scale) in enumerate(areas):
        points, scores = simcc_decode(simcc_x[i], simcc_y[i])
        poses.append(as_pose(openpose_order(to_picture(points, centre, scale, size), scores), width, height))
    return poses
