"""The openpose preprocessors end to end: the published files' layouts load strictly, the networks equal their
forward pass written out in tests/helpers/pose_nets.py, and a body network built to answer a bright dot with a
known skeleton gives that skeleton, drawn, through ``preprocess``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.annotator_nets import annotator_files, offline_refusal
from helpers.pose_nets import SKELETON, pose_reference, pose_shapes, pose_state, structured_body_state

from jupyter_sd.engine.control.openpose import detect_poses
from jupyter_sd.engine.control.pose_body import body_maps
from jupyter_sd.engine.control.pose_draw import BODY_COLOURS, draw_poses
from jupyter_sd.engine.control.pose_nets import body_net, part_net
from jupyter_sd.engine.control.pose_parts import detect_face, detect_hands
from jupyter_sd.engine.control.preprocessors import preprocess


@pytest.mark.parametrize(
    ("kind", "build", "count"), [("body", body_net, 184), ("hand", part_net, 104), ("face", part_net, 104)]
)
def test_the_published_layouts_load_strictly(kind, build, count):
    shapes = pose_shapes(kind)
    assert len(shapes) == count
    assert shapes["conv1_1.weight"] == (64, 3, 3, 3)
    state = {name: torch.empty(shape, device="meta") for name, shape in shapes.items()}
    net = build(state)
    assert {name: tuple(t.shape) for name, t in net.state_dict().items()} == shapes
    assert build({**state, "extra.weight": torch.empty(1, device="meta")})  # others are left, as the extension's
    with pytest.raises(KeyError, match="Mconv7_stage6"):
        build({name: value for name, value in state.items() if "Mconv7_stage6" not in name})
    with pytest.raises(RuntimeError, match="size mismatch"):
        build({**state, "conv1_1.bias": torch.empty(32, device="meta")})


@pytest.mark.parametrize(("kind", "build"), [("body", body_net), ("hand", part_net), ("face", part_net)])
def test_the_networks_are_the_published_forward_pass(kind, build):
    state = pose_state(kind, divisor=16, seed=3)
    x = torch.rand(1, 3, 40, 56) - 0.5
    with torch.no_grad():
        made, expected = build(state)(x), pose_reference(state, kind, x)
    assert [m.shape[1] for m in made] == {"body": [38, 19], "hand": [22], "face": [71]}[kind]
    for ours, theirs in zip(made, expected):
        torch.testing.assert_close(ours, theirs)
    if kind == "body":  # the heatmaps keep their last ReLU (the published quirk), the PAFs do not
        assert float(made[1].min()) >= 0 and float(made[0].min()) < 0


def _dot_picture() -> np.ndarray:
    """256² black with an 8 px white square that lands in cell 5 (of 23) of the body network's output both ways."""
    picture = np.zeros((256, 256, 3), np.uint8)
    picture[58:66, 58:66] = 255
    return picture


def _expected_point(dx: int, dy: int) -> tuple[float, float]:
    """Where a heatmap lit at cell (5 + dx, 5 + dy) peaks in the 256² picture: cell centre ×8, then ×256/184."""
    return tuple((8 * (5 + d) + 4) * 256 / 184 - 0.5 for d in (dx, dy))


def test_a_body_network_answering_a_dot_with_a_skeleton_gives_that_skeleton():
    net = body_net(structured_body_state())
    heatmaps, pafs = body_maps(net, _dot_picture())
    assert heatmaps.shape == (256, 256, 19) and pafs.shape == (256, 256, 38)
    assert heatmaps.dtype == pafs.dtype == np.float64  # as the extension's averages: peaks on plateaus depend on it
    (pose,) = detect_poses(net, _dot_picture())
    for part, ((dx, dy), point) in enumerate(zip(SKELETON, pose.body)):
        x, y = point[0] * 256, point[1] * 256
        ex, ey = _expected_point(dx, dy)
        assert abs(x - ex) <= 1 and abs(y - ey) <= 1, (part, (x, y), (ex, ey))


@pytest.fixture()
def pose_files(tmp_path):
    """A models folder with the structured body model and tiny random hand and face models."""
    files = {
        "openpose/body_pose_model.pth": structured_body_state(),
        "openpose/hand_pose_model.pth": pose_state("hand", divisor=32, seed=1),
        "openpose/facenet.pth": pose_state("face", divisor=32, seed=2),
    }
    with annotator_files(tmp_path / "models", files) as folder:
        yield folder / "openpose"


def test_openpose_draws_the_skeleton_on_black(pose_files):
    made = preprocess("openpose", _dot_picture(), 256)
    assert made.shape == (256, 256, 3) and made.dtype == np.uint8
    (pose,) = detect_poses(body_net(structured_body_state()), _dot_picture())
    for part, point in enumerate(pose.body):  # each keypoint's circle is drawn last, in its colour
        if part not in (14, 15, 16, 17):  # eyes and ears sit one cell apart: their circles meet the nose's
            assert tuple(made[int(point[1] * 256), int(point[0] * 256)]) == BODY_COLOURS[part], part
    limb = tuple(int(c * 0.6) for c in BODY_COLOURS[6])  # neck → right hip, at 60 %
    (nx, ny), (hx, hy) = (np.array(pose.body[i]) * 256 for i in (1, 8))
    assert tuple(made[int((ny + hy) / 2), int((nx + hx) / 2)]) == limb
    np.testing.assert_array_equal(made, draw_poses([pose], 256, 256, body=True, hands=False, face=False))
    assert not made[:, 150:].any() and not made[170:].any()  # black beyond the person


def test_openpose_full_adds_each_persons_hands_and_face(pose_files):
    picture = _dot_picture()
    made = preprocess("openpose_full", picture, 256)
    bgr = np.ascontiguousarray(picture[:, :, ::-1])
    (pose,) = detect_poses(body_net(structured_body_state()), picture)
    body = [None if p is None else (p[0] * 256, p[1] * 256) for p in pose.body]
    pose.left_hand, pose.right_hand = detect_hands(part_net(pose_state("hand", 32, 1)), bgr, body)
    pose.face = detect_face(part_net(pose_state("face", 32, 2)), bgr, body)
    assert pose.left_hand is not None and pose.right_hand is not None  # the arms are long enough for hand boxes
    np.testing.assert_array_equal(made, draw_poses([pose], 256, 256, body=True, hands=True, face=True))
    faces = preprocess("openpose_faceonly", picture, 256)
    np.testing.assert_array_equal(faces, draw_poses([pose], 256, 256, body=False, hands=False, face=True))
    assert faces.any() and set(np.unique(faces)) == {0, 255}  # white face points alone


@pytest.mark.parametrize(
    ("module", "missing"), [("openpose", "body_pose_model.pth"), ("openpose_hand", "hand_pose_model.pth")]
)
def test_openpose_without_its_files_offline_is_refused_in_one_line(tmp_path, monkeypatch, module, missing):
    folder = tmp_path / "ControlNet" / "annotators" / "openpose"
    folder.mkdir(parents=True)
    if missing != "body_pose_model.pth":
        torch.save(structured_body_state(), folder / "body_pose_model.pth")
    line = offline_refusal(tmp_path, monkeypatch, module, _dot_picture(), 256)
    assert f"ControlNet/annotators/openpose/{missing}" in line and "offline" in line and "\n" not in line
    assert "lllyasviel/Annotators" in line and len(line) < 200


def test_a_file_of_another_network_is_refused_in_one_line(pose_files):
    torch.save(pose_state("hand", divisor=16), pose_files / "body_pose_model.pth")
    with pytest.raises(ValueError, match=r"body_pose_model\.pth is not openpose_body weights") as refused:
        preprocess("openpose", _dot_picture(), 256)
    assert "\n" not in str(refused.value) and len(str(refused.value)) < 200
