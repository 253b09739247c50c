"""OpenPose JSON as sd-webui-controlnet has it: the JSON a pose module keeps equals the keypoints its tiny network
found (fractions of the padded canvas, ``x, y, 1`` triples, ``0, 0, 0`` for a part not found), and a pose JSON is
drawn as the detector's drawing draws those keypoints, in fractions or pixels; bad JSON is one line.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers.annotator_nets import annotator_files
from helpers.pose_nets import pose_state, structured_body_state

from jupyter_sd.engine.control import dwpose
from jupyter_sd.engine.control.animalpose import draw_animals
from jupyter_sd.engine.control.openpose import detect_poses
from jupyter_sd.engine.control.pose_draw import Pose, draw_poses
from jupyter_sd.engine.control.pose_json import read_pose_json
from jupyter_sd.engine.control.pose_nets import body_net, part_net
from jupyter_sd.engine.control.pose_parts import detect_face
from jupyter_sd.engine.control.pose_render import pose_picture, render_pose_map
from jupyter_sd.engine.control.preprocessors import preprocess
from jupyter_sd.engine.control.resolution import scale_with_pad


@pytest.fixture()
def pose_files(tmp_path):
    """A models folder with a body model that answers a bright dot with a skeleton, tiny random hand/face models."""
    files = {
        "openpose/body_pose_model.pth": structured_body_state(),
        "openpose/hand_pose_model.pth": pose_state("hand", divisor=32, seed=1),
        "openpose/facenet.pth": pose_state("face", divisor=32, seed=2),
    }
    with annotator_files(tmp_path / "models", files) as folder:
        yield folder


def _dot_picture(height: int = 256, width: int = 256) -> np.ndarray:
    picture = np.zeros((height, width, 3), np.uint8)
    picture[58:66, 58:66] = 255
    return picture


def _expected_pose(picture: np.ndarray) -> Pose:
    """The person the networks find in `picture`, found here step by step (the body, then the face from it)."""
    bgr = np.ascontiguousarray(picture[:, :, ::-1])
    height, width = picture.shape[:2]
    (pose,) = detect_poses(body_net(structured_body_state()), picture)
    body = [None if p is None else (p[0] * width, p[1] * height) for p in pose.body]
    pose.face = detect_face(part_net(pose_state("face", 32, 2)), bgr, body)
    return pose


def _triples(points) -> list[float] | None:
    if points is None:
        return None
    out = []
    for p in points:
        out += [0.0, 0.0, 0.0] if p is None else [float(p[0]), float(p[1]), 1.0]
    return out


def test_the_json_kept_is_the_keypoints_found_as_fractions_of_the_canvas(pose_files):
    kept = []
    made = preprocess("openpose_face", _dot_picture(), 256, on_pose=kept.append)  # (hands: the slow network)
    (data,) = kept
    pose = _expected_pose(_dot_picture())
    assert data["canvas_width"] == data["canvas_height"] == 256 and data["animals"] == []
    (person,) = data["people"]
    assert person["pose_keypoints_2d"] == _triples(pose.body)
    assert pose.face is not None and person["face_keypoints_2d"] == _triples(pose.face)
    assert person["hand_left_keypoints_2d"] is None and person["hand_right_keypoints_2d"] is None
    assert all(0 <= v <= 1 for v in person["pose_keypoints_2d"])  # fractions, as the extension writes them
    assert person["pose_keypoints_2d"][3 * 14 : 3 * 14 + 3] != [0.0, 0.0, 0.0]
    without_hands = draw_poses([pose], 256, 256, body=True, hands=True, face=True)
    np.testing.assert_array_equal(render_pose_map(data), without_hands)  # the JSON draws every part it holds
    np.testing.assert_array_equal(made, without_hands)  # the detected map again: openpose_face has no hands


def test_a_padded_picture_keeps_the_padded_canvas_as_the_extension_does(pose_files):
    kept = []
    preprocess("openpose", _dot_picture(256, 200), 256, on_pose=kept.append)  # 328×256, run padded to 384×256
    padded, (height, width) = scale_with_pad(_dot_picture(256, 200), 256)
    assert (height, width) == (328, 256) and padded.shape[:2] == (384, 256)
    poses = detect_poses(body_net(structured_body_state()), padded)  # fractions of the padded picture
    assert poses and kept[0]["canvas_height"] == 384 and kept[0]["canvas_width"] == 256
    assert [person["pose_keypoints_2d"] for person in kept[0]["people"]] == [_triples(p.body) for p in poses]
    assert kept[0]["people"][0]["hand_left_keypoints_2d"] is None  # openpose finds no hands: null


def test_no_json_without_a_pose_module(pose_files):
    kept = []
    preprocess("canny", _dot_picture(), 256, on_pose=kept.append)
    assert kept == []


def _person(scale_x: float, scale_y: float) -> dict:
    """A person's JSON with every part: points in pixels of a 128×64 canvas, times the scales given."""
    rng = np.random.RandomState(4)
    body = [(float(x), float(y)) for x, y in zip(rng.randint(8, 120, 18) + 0.5, rng.randint(8, 56, 18) + 0.25)]
    hand = [(float(x), float(y)) for x, y in zip(rng.randint(8, 120, 21), rng.randint(8, 56, 21))]
    face = [(float(x), float(y)) for x, y in zip(rng.randint(8, 120, 70), rng.randint(8, 56, 70))]
    scaled = lambda points: [None if p is None else (p[0] * scale_x, p[1] * scale_y) for p in points]  # noqa: E731
    body[3] = None  # a point not found: 0, 0, 0
    return {
        "pose_keypoints_2d": _triples(scaled(body)),
        "hand_left_keypoints_2d": _triples(scaled(hand)),
        "hand_right_keypoints_2d": _triples(scaled(hand[::-1])),
        "face_keypoints_2d": _triples(scaled(face)),
    }


@pytest.mark.parametrize("unit", ["pixels", "fractions"])
def test_a_pose_json_draws_as_the_detector_draws_its_keypoints(unit):
    scale = (1.0, 1.0) if unit == "pixels" else (1 / 128, 1 / 64)  # powers of two: fractions are exact
    person = _person(*scale)
    data = {"people": [person], "canvas_width": 128, "canvas_height": 64}
    fractions = _person(1 / 128, 1 / 64)

    def points(key):
        flat = fractions[key]
        return [None if flat[i + 2] < 1 else (flat[i], flat[i + 1]) for i in range(0, len(flat), 3)]

    keys = ("pose_keypoints_2d", "hand_left_keypoints_2d", "hand_right_keypoints_2d", "face_keypoints_2d")
    pose = Pose(*(points(key) for key in keys))
    expected = draw_poses([pose], 64, 128, body=True, hands=True, face=True)
    assert expected.any() and (expected == 255).all(axis=2).any()  # bodies, blue hand points and white face points
    np.testing.assert_array_equal(render_pose_map(data), expected)


def test_points_under_confidence_1_are_not_drawn():
    body = [0.25, 0.5, 1.0, 0.5, 0.5, 1.0, 0.75, 0.5, 0.9] + [0.0] * 45
    data = {"people": [{"pose_keypoints_2d": body}], "canvas_width": 64, "canvas_height": 64}
    expected = draw_poses([Pose([(0.25, 0.5), (0.5, 0.5)] + [None] * 16)], 64, 64, True, False, False)
    np.testing.assert_array_equal(render_pose_map(data), expected)


def test_animals_are_drawn_in_pixels():
    rng = np.random.RandomState(2)
    points = [(float(x), float(y)) for x, y in zip(rng.randint(0, 96, 17), rng.randint(0, 80, 17))]
    data = {"people": [], "animals": [_triples(points)], "canvas_width": 96, "canvas_height": 80}
    made = render_pose_map(data)
    np.testing.assert_array_equal(made, draw_animals([points], 80, 96))
    assert made.any()


def test_dwpose_and_animal_json_are_kept_as_the_extension_writes_them(monkeypatch):
    picture = np.zeros((64, 96, 3), np.uint8)
    person = Pose([(0.5, 0.25)] + [None] * 17, [(0.1, 0.2)] * 21, None, [(0.3, 0.4)] * 70)
    monkeypatch.setattr(dwpose, "detect_people", lambda net, image: np.zeros((1, 4)))
    monkeypatch.setattr(dwpose, "estimate_poses", lambda net, image, boxes: [person])
    kept = []
    dwpose.dwpose_map("dw_openpose_full", picture, None, None, kept.append)
    assert kept[0]["people"][0]["pose_keypoints_2d"][:6] == [0.5, 0.25, 1.0, 0.0, 0.0, 0.0]
    assert kept[0]["people"][0]["hand_right_keypoints_2d"] is None and kept[0]["canvas_width"] == 96
    from jupyter_sd.engine.control import animalpose

    animal = np.arange(34, dtype=np.float64).reshape(17, 2) + 0.5
    monkeypatch.setattr(animalpose, "detect_people", lambda net, image, classes: np.zeros((1, 4)))
    monkeypatch.setattr(animalpose, "animal_keypoints", lambda net, image, boxes: [(animal, np.full(17, 0.2))])
    kept.clear()
    made = animalpose.animal_map(picture, None, None, kept.append)
    assert kept[0]["people"] == [] and kept[0]["animals"][0][:6] == [0.5, 1.5, 1.0, 2.5, 3.5, 1.0]  # pixels
    assert (kept[0]["canvas_height"], kept[0]["canvas_width"]) == (64, 96)
    np.testing.assert_array_equal(render_pose_map(kept[0]), made)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{not json", "'pose.json' is not JSON"),
        ("[1, 2]", "holds a list, not an object"),
        ('{"people": [], "canvas_width": 64, "canvas_height": 64}', "no people or animals"),
        ('{"people": [{}], "canvas_width": 0, "canvas_height": 64}', "canvas_height and canvas_width must be"),
        ('{"people": [{"pose_keypoints_2d": [1, 2]}], "canvas_width": 8, "canvas_height": 8}', "x, y, confidence"),
    ],
)
def test_bad_json_is_one_line(tmp_path, text, expected):
    path = tmp_path / "pose.json"
    path.write_text(text)
    with pytest.raises(ValueError, match="controlnet unit 0 image") as refused:
        read_pose_json(path, "controlnet unit 0 image")
    line = str(refused.value)
    assert expected in line and "\n" not in line and len(line) < 200, line


def test_the_pose_picture_carries_its_json():
    data = {"people": [{"pose_keypoints_2d": [0.5, 0.5, 1.0] * 18}], "canvas_width": 32, "canvas_height": 16}
    picture = pose_picture(data)
    assert picture.size == (32, 16) and picture.info["openpose_json"] is data
