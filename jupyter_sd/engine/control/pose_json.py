"""OpenPose JSON as sd-webui-controlnet writes and reads it: the poses a pose module found, and poses given back.

The format is OpenPose's output (``people``, each with ``pose_keypoints_2d``, ``face_keypoints_2d``,
``hand_left_keypoints_2d``, ``hand_right_keypoints_2d``: flat ``x, y, confidence`` triples) plus the extension's
``animals`` (one flat list per animal), ``canvas_width`` and ``canvas_height``. Written as the extension writes it:
a point found is ``x, y, 1.0``, one not found ``0, 0, 0``, a part without points ``null``; people's points are
fractions of the canvas, animals' points are pixels, and the canvas is the picture the network ran on (the
processor resolution's picture, padded to multiples of 64). Read as the extension reads it: a point whose
confidence is under 1 is not there, and a part whose points all lie within 0..1 is in fractions of the canvas,
otherwise in pixels (what its pose editor sends).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PART_KEYS = ("pose_keypoints_2d", "face_keypoints_2d", "hand_left_keypoints_2d", "hand_right_keypoints_2d")
POSE_MODULES = (
    "openpose", "openpose_hand", "openpose_face", "openpose_faceonly", "openpose_full", "dw_openpose_full",
    "animal_openpose",
)  # fmt: skip
"""The modules that find poses: each keeps them as JSON, and a pose JSON given to one skips its detection."""
POSE_INFO = "openpose_json"
"""The key of a pose map's ``PIL.Image.info`` that holds the JSON it was drawn from (its unit skips detection)."""
_FORMAT = "OpenPose JSON: people and/or animals lists, canvas_width and canvas_height"


def _flat(points: Any) -> list[float] | None:
    """A part's points as flat ``x, y, 1.0`` triples (``0, 0, 0`` where one is missing); None without points."""
    if points is None or len(points) == 0:
        return None
    flat: list[float] = []
    for point in points:
        flat += [0.0, 0.0, 0.0] if point is None else [float(point[0]), float(point[1]), 1.0]
    return flat


def encode_poses(poses: list[Any], animals: list[Any], height: int, width: int) -> dict[str, Any]:
    """The extension's JSON of `poses` (``pose_draw.Pose``, fractions) and `animals` (17 pixel points each)."""
    people = [
        dict(zip(PART_KEYS, (_flat(p.body), _flat(p.face), _flat(p.left_hand), _flat(p.right_hand)))) for p in poses
    ]
    return {
        "people": people,
        "animals": [_flat(animal) for animal in animals],
        "canvas_height": int(height),
        "canvas_width": int(width),
    }


def _refuse(label: str, why: str) -> ValueError:
    return ValueError(f"{label}: {why} ({_FORMAT})"[:199])


def _points(numbers: Any, label: str, where: str) -> list[tuple[float, float] | None] | None:
    """Flat triples as points (None where the confidence is under 1), or None for a part without numbers."""
    if not numbers:
        return None
    ok = isinstance(numbers, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers)
    if not ok or len(numbers) % 3:
        raise _refuse(label, f"{where} is not a list of x, y, confidence numbers")
    triples = [numbers[i : i + 3] for i in range(0, len(numbers), 3)]
    return [None if c < 1.0 else (float(x), float(y)) for x, y, c in triples]


def _canvas(data: dict, label: str) -> tuple[int, int]:
    size = [data.get(key) for key in ("canvas_height", "canvas_width")]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 16384 for v in size):
        raise _refuse(label, f"canvas_height and canvas_width must be 1..16384 (got {size[0]!r}, {size[1]!r})")
    return int(size[0]), int(size[1])


def decode_pose_json(data: Any, label: str = "pose JSON") -> tuple[list[dict], list[list], int, int]:
    """People (each part's points or None, by `PART_KEYS`), animals' points, canvas height and width.

    Raises
    ------
    ValueError
        One line, led by `label`, when `data` is not the extension's pose JSON.
    """
    if not isinstance(data, dict):
        raise _refuse(label, f"holds a {type(data).__name__}, not an object")
    height, width = _canvas(data, label)
    people, animals = data.get("people", []) or [], data.get("animals", []) or []
    if not isinstance(people, list) or not isinstance(animals, list) or not (people or animals):
        raise _refuse(label, "no people or animals")
    if not all(isinstance(person, dict) for person in people):
        raise _refuse(label, "each of people must be an object of keypoint lists")
    decoded = [
        {key: _points(p.get(key), label, f"people[{i}].{key}") for key in PART_KEYS} for i, p in enumerate(people)
    ]
    beasts = [_points(a, label, f"animals[{i}]") or [] for i, a in enumerate(animals)]
    return decoded, beasts, height, width


def read_pose_json(path: str | Path, label: str) -> dict:
    """The JSON object in the file at `path`, checked as the extension's pose JSON.

    Raises
    ------
    ValueError
        One line: the file is not JSON, or not pose JSON.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        why = str(error).splitlines()[0][:80] if str(error) else type(error).__name__
        raise _refuse(label, f"'{Path(path).name}' is not JSON ({why})") from None
    decode_pose_json(data, label)
    return data


def is_normalized(points: list[tuple[float, float] | None]) -> bool:
    """Whether a part's points are fractions of the canvas: all within 0..1 (by magnitude), as the extension asks."""
    present = [p for p in points if p is not None]
    return bool(present) and all(abs(x) <= 1 and abs(y) <= 1 for x, y in present)
