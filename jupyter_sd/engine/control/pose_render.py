"""A pose JSON drawn as the pose map it stands for, as sd-webui-controlnet draws what its pose editor sends.

The canvas is the JSON's ``canvas_width × canvas_height``, black. With people, each person's body, hands and face
are drawn by ``pose_draw`` (all three, as the extension's editor preview draws them), each part in fractions of the
canvas or in pixels as ``pose_json.is_normalized`` reads it; without people, the animals are drawn by
``animalpose.draw_animals`` (pixels). The map is a picture carrying its JSON in ``info`` (``pose_json.POSE_INFO``),
so a unit given it skips detection (``unit_maps``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .animalpose import draw_animals
from .pose_draw import draw_body, draw_face, draw_hand
from .pose_json import POSE_INFO, decode_pose_json, is_normalized


def _unit(points: list | None) -> tuple[float, float] | None:
    """None (fractions of the canvas) or (1, 1) (pixels) for one part's points."""
    return None if points is None or is_normalized(points) else (1.0, 1.0)


def render_pose_map(data: Any, label: str = "pose JSON") -> np.ndarray:
    """The pose map (H×W×3 uint8 RGB) of the extension's pose JSON `data`.

    Raises
    ------
    ValueError
        One line, led by `label`, when `data` is not pose JSON (``pose_json.decode_pose_json``).
    """
    people, animals, height, width = decode_pose_json(data, label)
    if not people:
        return draw_animals(animals, height, width)
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    for person in people:
        body = person["pose_keypoints_2d"]
        if body:
            draw_body(canvas, (body + [None] * 18)[:18], _unit(body))
        for key in ("hand_left_keypoints_2d", "hand_right_keypoints_2d"):
            hand = person[key]
            if hand and len(hand) >= 21:
                draw_hand(canvas, hand, _unit(hand))
        draw_face(canvas, person["face_keypoints_2d"], _unit(person["face_keypoints_2d"]))
    return canvas


def pose_picture(data: Any, label: str = "pose JSON") -> Any:
    """The pose map of `data` as a PIL picture whose ``info`` holds `data` (its unit skips detection)."""
    from PIL import Image

    picture = Image.fromarray(render_pose_map(data, label))
    picture.info[POSE_INFO] = data
    return picture
