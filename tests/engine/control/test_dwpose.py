"""``dw_openpose_full`` end to end on tiny TorchScript stand-ins of DWPose's networks (tests/helpers/dwpose_nets.py):
the detector's boxes against YOLOX's decoding written out, the keypoints against the crop-and-SimCC formula, and
the map against ``pose_draw`` given those keypoints; the offline refusals, a wrong file, the ONNX choice.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.annotator_nets import annotator_files, offline_refusal
from helpers.dwpose_nets import Row, detector, peaks, pose_net, save_dwpose

from jupyter_sd.engine.control import dwpose
from jupyter_sd.engine.control.dwpose import OnnxNet, TorchScriptNet, dw_annotator, load_dwpose
from jupyter_sd.engine.control.dwpose_detect import detect_people, person_boxes
from jupyter_sd.engine.control.dwpose_keypoints import estimate_poses
from jupyter_sd.engine.control.pose_draw import Pose, draw_poses
from jupyter_sd.engine.control.preprocessors import preprocess

WIDTH, HEIGHT = 320, 256
RATIO = 2.0  # 640 / 320: the picture fills the letterbox's width
PERSON = Row(8, 10, 20, 0.5, 0.25, 100.0, 200.0, 1.0, {0: 0.9})  # its objectness probed at input (162, 84)
TWIN = Row(8, 11, 20, 0.0, 0.25, 100.0, 200.0, 0.8, {0: 0.9})  # overlaps PERSON: score 0.72
OTHER = Row(16, 30, 10, 0.0, 0.0, 64.0, 128.0, 0.95, {0: 0.5})  # 0.475, apart
NOT_A_PERSON = Row(8, 70, 70, 0.0, 0.0, 40.0, 40.0, 0.9, {1: 0.9})
WEAK = Row(32, 5, 15, 0.0, 0.0, 90.0, 90.0, 0.5, {0: 0.5})  # 0.25: past NMS's 0.1, under the person's 0.3
ROWS = [PERSON, TWIN, OTHER, NOT_A_PERSON, WEAK]
MEAN, STD = np.array([123.675, 116.28, 103.53]), np.array([58.395, 57.12, 57.375])
OPENPOSE_FROM_COCO = [0, None, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3]  # None: the neck


def _picture(value: int) -> np.ndarray:
    return np.full((HEIGHT, WIDTH, 3), value, np.uint8)


def _loaded(module: torch.jit.ScriptModule, tmp_path, name: str, batch: int | None = None) -> TorchScriptNet:
    torch.jit.save(module, str(tmp_path / name))
    return TorchScriptNet(torch.jit.load(str(tmp_path / name)), batch)


def test_the_detector_keeps_the_best_of_overlapping_people_and_drops_the_rest(tmp_path):
    net = _loaded(detector(ROWS, probe=(0, 162, 84)), tmp_path, "det.pt")
    white = detect_people(net, _picture(255))  # PERSON's probe is white: it (0.9) beats its twin (0.72)
    np.testing.assert_allclose(white, [PERSON.box(RATIO), OTHER.box(RATIO)], atol=1e-4)
    black = detect_people(net, _picture(0))  # PERSON not found: its twin is kept instead
    np.testing.assert_allclose(black, [TWIN.box(RATIO), OTHER.box(RATIO)], atol=1e-4)
    in_padding = Row(32, 15, 18, 0.0, 0.0, 64.0, 64.0, 1.0, {0: 1.0})  # the letterbox's grey: 114 / 255 = 0.45
    padded = _loaded(detector([in_padding], probe=(0, 600, 500)), tmp_path, "pad.pt")
    np.testing.assert_allclose(detect_people(padded, _picture(0)), [in_padding.box(RATIO)], atol=1e-4)


def test_no_box_at_all_and_no_person_box_differ_as_in_the_extension():
    rows = np.zeros((8400, 85))
    assert person_boxes(rows, 1.0) is None  # nothing over 0.1: no people, nothing drawn
    rows[NOT_A_PERSON.index, 4], rows[NOT_A_PERSON.index, 6] = 0.9, 0.9
    assert person_boxes(rows, 1.0).shape == (0, 4)  # something, but no person: the whole picture is one box


def _expected_pose(box, bx, by, scores, nose: float) -> Pose:
    """The keypoints written out: box grown 1.25× to 3:4, argmax / 2 mapped back, neck, OpenPose order, < 0.3 gone."""
    x1, y1, x2, y2 = box
    centre = np.array([(x1 + x2) / 2, (y1 + y2) / 2])
    w, h = (x2 - x1) * 1.25, (y2 - y1) * 1.25
    scale = np.array([w, w * 4 / 3]) if w > h * 0.75 else np.array([h * 0.75, h])
    points = np.stack([bx, by], 1).astype(np.float64) / 2 / np.array([288, 384]) * scale + centre - scale / 2
    s = scores.astype(np.float64).copy()
    s[0] = nose
    neck = ((points[5] + points[6]) / 2, float(s[5] > 0.3 and s[6] > 0.3))

    def point(k):
        xy, score = neck if k is None else (points[k], s[k])
        return (xy[0] / WIDTH, xy[1] / HEIGHT) if score >= 0.3 else None

    def part(ks):
        found = [point(k) for k in ks]
        return None if all(p is None for p in found) else found

    body = [point(k) for k in OPENPOSE_FROM_COCO]
    face = part(range(23, 91))
    return Pose(body, part(range(91, 112)), part(range(112, 133)), face + [body[14], body[15]])


def _assert_same_pose(made: Pose, expected: Pose) -> None:
    for ours, theirs in zip(
        (made.body, made.left_hand, made.right_hand, made.face),
        (expected.body, expected.left_hand, expected.right_hand, expected.face),
    ):
        if theirs is None:
            assert ours is None
            continue
        assert [p is None for p in ours] == [p is None for p in theirs]
        np.testing.assert_allclose([p for p in ours if p], [p for p in theirs if p], rtol=0, atol=1e-9)


def test_the_keypoints_are_the_simcc_peaks_mapped_back_through_each_box(tmp_path):
    bx, by, scores = peaks()
    net = _loaded(pose_net(bx, by, scores), tmp_path, "pose.pt", batch=5)
    boxes = np.array([PERSON.box(RATIO), OTHER.box(RATIO)] * 3)  # six people: two batches of five
    poses = estimate_poses(net, _picture(255), boxes)
    nose = (255 - MEAN[0]) / STD[0]  # the crop's centre is white: the nose's score is its normalized red
    assert len(poses) == 6
    for made, box in zip(poses, boxes):
        _assert_same_pose(made, _expected_pose(box, bx, by, scores, nose))
    assert poses[0].right_hand is None and poses[0].left_hand is not None  # its points all under 0.3
    # the nose is seen when its red, less ImageNet's mean 123.675, over the std 58.395, reaches 0.3 (red 141.2)
    for red, seen in ((140, False), (145, True)):
        picture = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
        picture[:, :, 0], picture[:, :, 2] = red, 255  # blue 255: fed as BGR, the nose would be seen at 140
        (pose,) = estimate_poses(net, picture, boxes[:1])
        assert (pose.body[0] is not None) == seen, red
    assert sum(p is None for p in poses[0].body) < 18 and len(poses[0].face) == 70


@pytest.fixture()
def dw_files(tmp_path):
    bx, by, scores = peaks()
    with annotator_files(tmp_path / "models", {}) as folder:
        save_dwpose(folder / "openpose", detector([PERSON, OTHER], probe=(0, 162, 84)), pose_net(bx, by, scores))
        yield folder / "openpose"


def test_dw_openpose_full_draws_each_person_found_with_hands_and_face(dw_files):
    made = preprocess("dw_openpose_full", _picture(255), 256)
    assert made.shape == (HEIGHT, WIDTH, 3) and made.dtype == np.uint8
    boxes = detect_people(TorchScriptNet(torch.jit.load(str(dw_files / "yolox_l.torchscript.pt"))), _picture(255))
    np.testing.assert_allclose(boxes, [PERSON.box(RATIO), OTHER.box(RATIO)], atol=1e-4)  # float32 sizes: not exact
    bx, by, scores = peaks()
    nose = (255 - MEAN[0]) / STD[0]
    expected = [_expected_pose(box, bx, by, scores, nose) for box in boxes]
    np.testing.assert_array_equal(made, draw_poses(expected, HEIGHT, WIDTH, body=True, hands=True, face=True))
    colours = {tuple(c) for c in made.reshape(-1, 3)}
    assert {(0, 0, 255), (255, 255, 255), (255, 0, 0)} <= colours  # hand points, face points, the nose
    alone = preprocess("dw_openpose_full", _picture(0), 256)  # PERSON's probe is black: OTHER alone, no nose
    other = _expected_pose(boxes[1], bx, by, scores, (0 - MEAN[0]) / STD[0])
    assert other.body[0] is None and expected[1].body[0] is not None
    np.testing.assert_array_equal(alone, draw_poses([other], HEIGHT, WIDTH, True, True, True))


@pytest.mark.parametrize(
    ("missing", "repo"),
    [("yolox_l.torchscript.pt", "hr16/yolox-onnx"), ("dw-ll_ucoco_384_bs5.torchscript.pt", "DWPose-TorchScript")],
)
def test_dw_openpose_without_its_files_offline_is_refused_in_one_line(tmp_path, monkeypatch, missing, repo):
    folder = tmp_path / "ControlNet" / "annotators" / "openpose"
    if missing != "yolox_l.torchscript.pt":
        folder.mkdir(parents=True)
        torch.jit.save(detector([PERSON]), str(folder / "yolox_l.torchscript.pt"))
    line = offline_refusal(tmp_path, monkeypatch, "dw_openpose_full", _picture(255), 256)
    assert f"dw_openpose_full needs ControlNet/annotators/openpose/{missing}" in line and "offline" in line
    assert repo in line


def test_a_file_that_is_no_torchscript_export_is_refused_in_one_line(tmp_path):
    torch.save({"weight": torch.zeros(1)}, tmp_path / "yolox_l.torchscript.pt")
    with pytest.raises(ValueError, match=r"yolox_l\.torchscript\.pt is not a TorchScript export") as refused:
        load_dwpose("dwpose_det", tmp_path / "yolox_l.torchscript.pt")
    assert "\n" not in str(refused.value) and len(str(refused.value)) < 200


def test_an_onnx_file_is_used_only_where_onnxruntime_imports(dw_files, monkeypatch):
    (dw_files / "yolox_l.onnx").write_bytes(b"onnx")
    monkeypatch.setattr(dwpose, "onnxruntime_imports", lambda: False)
    assert (dw_annotator("det"), dw_annotator("pose")) == ("dwpose_det", "dwpose_pose")
    monkeypatch.setattr(dwpose, "onnxruntime_imports", lambda: True)
    assert (dw_annotator("det"), dw_annotator("pose")) == ("dwpose_det_onnx", "dwpose_pose")


class _Session:
    """onnxruntime's InferenceSession as OnnxNet uses it."""

    class _Input:
        name, shape = "input", ["batch", 3, 256, 192]

    def get_inputs(self):
        return [self._Input()]

    def run(self, names, feed):
        (x,) = feed.values()
        return [x.sum(axis=(2, 3)), x.dtype.name]


def test_an_onnx_session_is_fed_float32_and_gives_its_input_size():
    net = OnnxNet(_Session())
    assert net.input_size == (192, 256) and net.to("cuda") is net
    sums, dtype = net(np.ones((2, 3, 4, 4), np.float64))
    assert dtype == "float32" and sums.shape == (2, 3) and float(sums[0, 0]) == 16
