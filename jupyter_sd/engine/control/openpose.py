"""The ``openpose`` preprocessors: people's poses found by OpenPose's networks and drawn on black.

As sd-webui-controlnet: the padded picture is flipped to BGR, the body network finds each person's 18 keypoints
(``pose_body``), then, for the modules that ask, each person's hands and face are found from those keypoints
(``pose_parts``), and the map draws what the module names (``pose_draw``): ``openpose`` bodies, ``openpose_hand``
bodies and hands, ``openpose_face`` bodies and faces, ``openpose_faceonly`` faces alone, ``openpose_full`` all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .pose_body import detect_bodies
from .pose_draw import Pose, draw_poses
from .pose_json import encode_poses
from .pose_parts import detect_face, detect_hands


@dataclass(frozen=True)
class PoseParts:
    """What an openpose module draws (and so which networks beyond the body's it runs)."""

    body: bool
    hands: bool
    face: bool


OPENPOSE_MODULES = {
    "openpose": PoseParts(body=True, hands=False, face=False),
    "openpose_hand": PoseParts(body=True, hands=True, face=False),
    "openpose_face": PoseParts(body=True, hands=False, face=True),
    "openpose_faceonly": PoseParts(body=False, hands=False, face=True),
    "openpose_full": PoseParts(body=True, hands=True, face=True),
}


def detect_poses(body_net: Any, image: np.ndarray, hand_net: Any = None, face_net: Any = None) -> list[Pose]:
    """Each person in an RGB picture: body points (fractions of the size), and hands/face where their net is given."""
    bgr = np.ascontiguousarray(image[:, :, ::-1])
    height, width = bgr.shape[:2]
    poses = []
    for body in detect_bodies(body_net, bgr):
        left, right = detect_hands(hand_net, bgr, body) if hand_net is not None else (None, None)
        face = detect_face(face_net, bgr, body) if face_net is not None else None
        scaled = [None if point is None else (point[0] / float(width), point[1] / float(height)) for point in body]
        poses.append(Pose(scaled, left, right, face))
    return poses


def openpose_map(
    module: str,
    image: np.ndarray,
    body_net: Any,
    hand_net: Any = None,
    face_net: Any = None,
    on_pose: Callable[[dict], None] | None = None,
) -> np.ndarray:
    """`module`'s pose map of an RGB picture (H×W×3 uint8): the poses drawn on black.

    `on_pose` is given the poses found as the extension's JSON (``pose_json``), the picture its canvas.
    """
    parts = OPENPOSE_MODULES[module]
    poses = detect_poses(body_net, image, hand_net if parts.hands else None, face_net if parts.face else None)
    if on_pose is not None:
        on_pose(encode_poses(poses, [], image.shape[0], image.shape[1]))
    return draw_poses(poses, image.shape[0], image.shape[1], parts.body, parts.hands, parts.face)
