"""``animal_openpose``: animals found by DWPose's YOLOX-L, their AP10K keypoints by RTMPose-m, drawn as the extension.

As sd-webui-controlnet's ``AnimalPose``: the detector (``dwpose_detect``, the same files as ``dw_openpose_full``)
keeps the boxes of COCO's animal classes 14–23 (bird … giraffe) scoring above 0.3, class by class; nothing found is
a black map (no whole-picture box, unlike DWPose's people). Each box goes through RTMPose-m trained on AP10K at
256×256 (``rtmpose-m_ap10k_256_bs5.torchscript.pt`` from hr16/DWPose-TorchScript-BatchSize5, or the extension's ONNX
file where onnxruntime imports): the same 1.25× crop, ImageNet normalization and SimCC decoding as DWPose's
(``dwpose_keypoints``), 17 points per animal. Every point is drawn, whatever its score (the extension keeps no
threshold): the AP10K skeleton's 17 limbs as 5 px lines in the extension's colours, no circles, on black.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .dwpose_detect import detect_people
from .dwpose_keypoints import box_centre_scale, crop_input, simcc_decode, to_picture
from .pose_json import encode_poses

ANIMAL_CLASSES = tuple(range(14, 24))
"""COCO's animal classes the detector's boxes are kept for: bird, cat, dog, horse, sheep, cow, elephant, bear,
zebra, giraffe."""
INPUT_SIZE = (256, 256)
LINE_WIDTH = 5
LIMBS = (
    (0, 1), (1, 2), (0, 2), (2, 3), (3, 8), (8, 9), (9, 10), (3, 5), (5, 6),
    (6, 7), (3, 4), (4, 14), (14, 15), (15, 16), (4, 11), (11, 12), (12, 13),
)  # fmt: skip
"""AP10K's skeleton as the extension draws it (0-based: eyes and nose, neck, the legs, the tail's root and its legs)."""
COLOURS = (
    (255, 255, 255), (100, 255, 100), (150, 255, 255), (100, 50, 255), (50, 150, 200), (0, 255, 255),
    (0, 150, 0), (0, 0, 255), (0, 0, 150), (255, 50, 255), (255, 0, 255), (255, 0, 0), (150, 0, 0),
    (255, 255, 100), (0, 150, 0), (255, 255, 0), (150, 150, 150),
)  # fmt: skip
"""Each limb's colour (RGB), the extension's list."""


def animal_keypoints(net: Callable[[np.ndarray], list[np.ndarray]] | Any, image: np.ndarray, boxes: np.ndarray):
    """Each boxed animal's 17 keypoints (17×2, the picture's pixels) and their scores, from the AP10K network."""
    size = tuple(getattr(net, "input_size", INPUT_SIZE))
    areas = [box_centre_scale(box, size) for box in boxes]
    batch = np.stack([crop_input(image, centre, scale, size) for centre, scale in areas])
    simcc_x, simcc_y = net(batch)[:2]
    animals = []
    for i, (centre, scale) in enumerate(areas):
        points, scores = simcc_decode(simcc_x[i], simcc_y[i])
        animals.append((to_picture(points, centre, scale, size), scores))
    return animals


def draw_animals(animals: list[np.ndarray], height: int, width: int) -> np.ndarray:
    """The animals' skeletons (each 17 points in pixels) on black: each limb a 5 px line in its colour.

    A limb with a point missing (None: a pose JSON's point under confidence 1) is not drawn, as the extension's.
    """
    import cv2

    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    for points in animals:
        for (a, b), colour in zip(LIMBS, COLOURS):
            if a >= len(points) or b >= len(points) or points[a] is None or points[b] is None:
                continue
            start = (int(points[a][0]), int(points[a][1]))  # truncated, as the extension does
            cv2.line(canvas, start, (int(points[b][0]), int(points[b][1])), colour, LINE_WIDTH)
    return canvas


def animal_map(
    image: np.ndarray, det_net: Any, pose_net: Any, on_pose: Callable[[dict], None] | None = None
) -> np.ndarray:
    """``animal_openpose``'s map of an RGB picture (H×W×3 uint8): each animal found drawn on black.

    `on_pose` is given the animals as the extension's JSON (``animals``: pixels, every point at confidence 1).
    """
    boxes = detect_people(det_net, image, ANIMAL_CLASSES)
    found = [] if boxes is None or len(boxes) == 0 else animal_keypoints(pose_net, image, boxes)
    if on_pose is not None:
        on_pose(encode_poses([], [points for points, _ in found], image.shape[0], image.shape[1]))
    return draw_animals([points for points, _ in found], image.shape[0], image.shape[1])
