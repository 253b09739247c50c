"""OpenPose's map: the poses drawn on black as sd-webui-controlnet's ``draw_poses`` draws them.

Bodies: 17 limbs as filled ellipses 4 px thick in their colour at 60 %, then each keypoint as a filled circle of
radius 4 in its colour (OpenPose's 18 colours, red through the hues to pink). Hands: 20 bones as 2 px lines
coloured round the hue circle, the points as blue circles of radius 4. Faces: white circles of radius 3. Points
are kept as fractions of the picture's size, as the extension keeps them, and multiplied back when drawn; hand and
face points at or left of / above 0.01 px (not found), or None (DWPose's unsure points), are not drawn. A part
given in pixels (a pose JSON's, ``pose_render``) is drawn with ``unit=(1, 1)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

BODY_COLOURS = [
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0), (0, 255, 0),
    (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255),
    (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
]  # fmt: skip
"""RGB, one per body keypoint, and (the first 17) one per limb drawn."""
DRAWN_LIMBS = [
    (2, 3), (2, 6), (3, 4), (4, 5), (6, 7), (7, 8), (2, 9), (9, 10), (10, 11), (2, 12), (12, 13), (13, 14),
    (2, 1), (1, 15), (15, 17), (1, 16), (16, 18),
]  # fmt: skip
"""The limbs drawn (1-based parts): the 19 that OpenPose links, less the two ear–shoulder ones."""
HAND_BONES = [
    (0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (0, 9), (9, 10),
    (10, 11), (11, 12), (0, 13), (13, 14), (14, 15), (15, 16), (0, 17), (17, 18), (18, 19), (19, 20),
]  # fmt: skip
STICK, EPS = 4, 0.01


@dataclass
class Pose:
    """One person: 18 body points and hand/face points, as fractions of the picture's width and height."""

    body: list[tuple[float, float] | None]
    left_hand: Any = None
    right_hand: Any = None
    face: Any = None


def hue_colour(hue: float) -> tuple[float, float, float]:
    """Full-saturation, full-value HSV as RGB 0..255 (matplotlib's ``hsv_to_rgb`` for s = v = 1)."""
    sector = int(hue * 6.0)
    f = hue * 6.0 - sector
    q, t = 1.0 - f, 1.0 - (1.0 - f)  # matplotlib's q and t at s = v = 1, rounding as it rounds
    rgb = [(1, t, 0), (q, 1, 0), (0, 1, t), (0, q, 1), (t, 0, 1), (1, 0, q)][sector % 6]
    return tuple(float(c) * 255 for c in rgb)


def _unit(canvas: np.ndarray, unit: tuple[float, float] | None) -> tuple[float, float]:
    """What a point is multiplied by: the canvas's width and height (fractions), or the `unit` given (1, 1: pixels)."""
    return unit if unit is not None else (canvas.shape[1], canvas.shape[0])


def draw_body(
    canvas: np.ndarray, points: list[tuple[float, float] | None], unit: tuple[float, float] | None = None
) -> None:
    """Limbs (ellipses at 60 % colour) then keypoints (radius-4 circles) of one body, on `canvas` in place."""
    import cv2

    width, height = _unit(canvas, unit)
    for (a, b), colour in zip(DRAWN_LIMBS, BODY_COLOURS):
        if points[a - 1] is None or points[b - 1] is None:
            continue
        ys = np.array([points[a - 1][0], points[b - 1][0]]) * float(width)
        xs = np.array([points[a - 1][1], points[b - 1][1]]) * float(height)
        length = ((xs[0] - xs[1]) ** 2 + (ys[0] - ys[1]) ** 2) ** 0.5
        angle = math.degrees(math.atan2(xs[0] - xs[1], ys[0] - ys[1]))
        centre = (int(np.mean(ys)), int(np.mean(xs)))
        polygon = cv2.ellipse2Poly(centre, (int(length / 2), STICK), int(angle), 0, 360, 1)
        cv2.fillConvexPoly(canvas, polygon, [int(float(c) * 0.6) for c in colour])
    for point, colour in zip(points, BODY_COLOURS):
        if point is not None:
            cv2.circle(canvas, (int(point[0] * width), int(point[1] * height)), 4, colour, thickness=-1)


def draw_hand(canvas: np.ndarray, points: Any, unit: tuple[float, float] | None = None) -> None:
    """A hand's bones (2 px, hue by bone) and points (blue, radius 4), on `canvas` in place."""
    import cv2

    if points is None or len(points) == 0:
        return
    width, height = _unit(canvas, unit)
    pixels = [None if p is None else (int(p[0] * width), int(p[1] * height)) for p in points]
    for i, (a, b) in enumerate(HAND_BONES):
        if pixels[a] is None or pixels[b] is None:
            continue
        (x1, y1), (x2, y2) = pixels[a], pixels[b]
        if x1 > EPS and y1 > EPS and x2 > EPS and y2 > EPS:
            cv2.line(canvas, (x1, y1), (x2, y2), hue_colour(i / float(len(HAND_BONES))), thickness=2)
    for x, y in (p for p in pixels if p is not None):
        if x > EPS and y > EPS:
            cv2.circle(canvas, (x, y), 4, (0, 0, 255), thickness=-1)


def draw_face(canvas: np.ndarray, points: Any, unit: tuple[float, float] | None = None) -> None:
    """A face's points as white circles of radius 3, on `canvas` in place."""
    import cv2

    if points is None or len(points) == 0:
        return
    width, height = _unit(canvas, unit)
    for x, y in (p for p in points if p is not None):
        x, y = int(x * width), int(y * height)
        if x > EPS and y > EPS:
            cv2.circle(canvas, (x, y), 3, (255, 255, 255), thickness=-1)


def draw_poses(poses: list[Pose], height: int, width: int, body: bool, hands: bool, face: bool) -> np.ndarray:
    """The poses on a black H×W×3 RGB canvas: per person its body, left hand, right hand, face (those asked)."""
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    for pose in poses:
        if body:
            draw_body(canvas, pose.body)
        if hands:
            draw_hand(canvas, pose.left_hand)
            draw_hand(canvas, pose.right_hand)
        if face:
            draw_face(canvas, pose.face)
    return canvas
