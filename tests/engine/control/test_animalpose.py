"""``animal_openpose`` end to end on tiny TorchScript stand-ins (tests/helpers/dwpose_nets.py): the detector's animal
boxes (COCO classes 14–23, class by class) against YOLOX's decoding written out, AP10K's 17 keypoints against the
crop-and-SimCC formula at 256², and the map against the extension's skeleton drawn here with OpenCV; refusals.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from helpers.annotator_nets import annotator_files, offline_refusal
from helpers.dwpose_nets import Row, detector, pose_net

from jupyter_sd.engine.control import annotator_weights, dwpose
from jupyter_sd.engine.control.animalpose import animal_keypoints
from jupyter_sd.engine.control.dwpose import TorchScriptNet, dw_annotator, load_dwpose
from jupyter_sd.engine.control.dwpose_detect import class_boxes, detect_people
from jupyter_sd.engine.control.preprocessors import preprocess

WIDTH, HEIGHT = 320, 256
RATIO = 2.0  # 640 / 320
CAT = Row(8, 10, 20, 0.5, 0.25, 100.0, 200.0, 1.0, {15: 0.9})  # its objectness probed at input (162, 84)
TWIN = Row(8, 11, 20, 0.0, 0.25, 100.0, 200.0, 0.8, {15: 0.9})  # a cat overlapping CAT: 0.72, suppressed
BIRD = Row(8, 10, 21, 0.0, 0.0, 100.0, 200.0, 0.9, {14: 0.5})  # overlaps CAT but another class: kept (0.45)
DOG = Row(16, 30, 10, 0.0, 0.0, 64.0, 128.0, 0.95, {16: 0.5})  # 0.475
PERSON = Row(8, 60, 40, 0.0, 0.0, 60.0, 120.0, 1.0, {0: 0.9})  # not an animal
BACKPACK = Row(16, 10, 30, 0.0, 0.0, 40.0, 40.0, 1.0, {24: 0.9})  # class 24: past the animals
BENCH = Row(16, 20, 5, 0.0, 0.0, 40.0, 40.0, 1.0, {13: 0.9})  # class 13: before them
WEAK = Row(32, 5, 15, 0.0, 0.0, 90.0, 90.0, 0.5, {23: 0.5})  # a giraffe at 0.25: under 0.3
ROWS = [CAT, TWIN, BIRD, DOG, PERSON, BACKPACK, BENCH, WEAK]
MEAN, STD = np.array([123.675, 116.28, 103.53]), np.array([58.395, 57.12, 57.375])
# sd-webui-controlnet's AP10K skeleton (1-based pairs) and its limb colours, written out here
PAIRS = [(1, 2), (2, 3), (1, 3), (3, 4), (4, 9), (9, 10), (10, 11), (4, 6), (6, 7), (7, 8), (4, 5), (5, 15),
         (15, 16), (16, 17), (5, 12), (12, 13), (13, 14)]  # fmt: skip
COLOURS = [(255, 255, 255), (100, 255, 100), (150, 255, 255), (100, 50, 255), (50, 150, 200), (0, 255, 255),
           (0, 150, 0), (0, 0, 255), (0, 0, 150), (255, 50, 255), (255, 0, 255), (255, 0, 0), (150, 0, 0),
           (255, 255, 100), (0, 150, 0), (255, 255, 0), (150, 150, 150)]  # fmt: skip


def _picture(value: int) -> np.ndarray:
    return np.full((HEIGHT, WIDTH, 3), value, np.uint8)


def _peaks() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """17 points' x and y bins (of 512) and scores: most 0.9, two tiny (0.05), one with no peak (-0.5)."""
    rng = np.random.RandomState(3)
    scores = np.full(17, 0.9)
    scores[[6, 12]], scores[15] = 0.05, -0.5
    return rng.randint(60, 452, 17), rng.randint(60, 452, 17), scores


def _expected(box, bx, by, scores, first: float) -> np.ndarray:
    """The keypoints written out: the box grown 1.25× to a square, the argmax / 2 mapped back (-1 / 2 without one)."""
    x1, y1, x2, y2 = box
    centre = np.array([(x1 + x2) / 2, (y1 + y2) / 2])
    side = max(x2 - x1, y2 - y1) * 1.25
    s = scores.astype(np.float64).copy()
    s[0] = first
    bins = np.stack([bx, by], 1).astype(np.float64)
    bins[s <= 0] = -1
    return bins / 2 / 256 * side + centre - side / 2


def _drawn(animals) -> np.ndarray:
    canvas = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    for points in animals:
        for (i, j), colour in zip(PAIRS, COLOURS):
            p, q = points[i - 1], points[j - 1]
            cv2.line(canvas, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), colour, 5)
    return canvas


def test_the_animal_classes_are_kept_class_by_class_and_the_rest_dropped(tmp_path):
    torch.jit.save(detector(ROWS, probe=(0, 162, 84)), str(tmp_path / "det.pt"))
    net = TorchScriptNet(torch.jit.load(str(tmp_path / "det.pt")))
    classes = tuple(range(14, 24))
    white = detect_people(net, _picture(255), classes)  # CAT (0.9) beats its twin (0.72); the bird is its own class
    np.testing.assert_allclose(white, [BIRD.box(RATIO), CAT.box(RATIO), DOG.box(RATIO)], atol=1e-4)
    black = detect_people(net, _picture(0), classes)  # CAT not found: its twin is kept instead
    np.testing.assert_allclose(black, [BIRD.box(RATIO), TWIN.box(RATIO), DOG.box(RATIO)], atol=1e-4)
    np.testing.assert_allclose(detect_people(net, _picture(255)), [PERSON.box(RATIO)], atol=1e-4)  # people: class 0
    rows = np.zeros((8400, 85))
    assert class_boxes(rows, 1.0, classes) is None
    rows[PERSON.index, 4], rows[PERSON.index, 5] = 0.9, 0.9
    assert class_boxes(rows, 1.0, classes).shape == (0, 4)


def test_the_keypoints_are_the_simcc_peaks_mapped_back_through_each_square_box(tmp_path):
    bx, by, scores = _peaks()
    torch.jit.save(pose_net(bx, by, scores, bins=(512, 512)), str(tmp_path / "rtmpose-m_ap10k_256_bs5.torchscript.pt"))
    net = load_dwpose("animal_pose", tmp_path / "rtmpose-m_ap10k_256_bs5.torchscript.pt")
    assert (net.batch, net.input_size) == (5, (256, 256))
    boxes = np.array([CAT.box(RATIO), DOG.box(RATIO), BIRD.box(RATIO)] * 2)  # six animals: two batches of five
    found = animal_keypoints(net, _picture(255), boxes)
    first = (255 - MEAN[0]) / STD[0]  # the crop's centre is white: the first point's score is its normalized red
    assert len(found) == 6
    for (points, point_scores), box in zip(found, boxes):
        np.testing.assert_allclose(points, _expected(box, bx, by, scores, first), rtol=0, atol=1e-3)
        np.testing.assert_allclose(point_scores[1:], scores[1:], atol=1e-6)
    (points, _), *_ = animal_keypoints(net, _picture(0), boxes[:1])  # black: the first point has no peak
    np.testing.assert_allclose(points, _expected(boxes[0], bx, by, scores, -MEAN[0] / STD[0]), atol=1e-3)


@pytest.fixture()
def animal_files(tmp_path):
    bx, by, scores = _peaks()
    with annotator_files(tmp_path / "models", {}) as folder:
        openpose = folder / "openpose"
        openpose.mkdir(parents=True)
        torch.jit.save(
            detector([CAT, DOG, PERSON, BACKPACK, BENCH], probe=(0, 162, 84)), str(openpose / "yolox_l.torchscript.pt")
        )
        torch.jit.save(pose_net(bx, by, scores, (512, 512)), str(openpose / "rtmpose-m_ap10k_256_bs5.torchscript.pt"))
        yield openpose


def test_animal_openpose_draws_each_animal_as_the_extension_does(animal_files):
    made = preprocess("animal_openpose", _picture(255), 256)
    assert made.shape == (HEIGHT, WIDTH, 3) and made.dtype == np.uint8
    det = TorchScriptNet(torch.jit.load(str(animal_files / "yolox_l.torchscript.pt")))
    boxes = detect_people(det, _picture(255), tuple(range(14, 24)))
    np.testing.assert_allclose(boxes, [CAT.box(RATIO), DOG.box(RATIO)], atol=1e-4)  # float32 sizes: not exact
    bx, by, scores = _peaks()
    expected = [_expected(box, bx, by, scores, (255 - MEAN[0]) / STD[0]) for box in boxes]
    np.testing.assert_array_equal(made, _drawn(expected))
    colours = {tuple(c) for c in made.reshape(-1, 3)}
    assert colours <= set(COLOURS) | {(0, 0, 0)} and len(colours) > 10  # the limbs' colours, none blended
    alone = preprocess("animal_openpose", _picture(0), 256)  # CAT's probe is black: the dog alone
    np.testing.assert_array_equal(alone, _drawn([_expected(boxes[1], bx, by, scores, -MEAN[0] / STD[0])]))


def test_no_animal_is_a_black_map_even_where_a_person_is_found(tmp_path):
    with annotator_files(tmp_path / "models", {}) as folder:
        openpose = folder / "openpose"
        openpose.mkdir(parents=True)
        torch.jit.save(detector([PERSON]), str(openpose / "yolox_l.torchscript.pt"))
        torch.jit.save(pose_net(*_peaks(), (512, 512)), str(openpose / "rtmpose-m_ap10k_256_bs5.torchscript.pt"))
        made = preprocess("animal_openpose", _picture(255), 256)
        assert made.shape == (HEIGHT, WIDTH, 3) and not made.any()


@pytest.mark.parametrize(
    ("missing", "repo"),
    [("yolox_l.torchscript.pt", "hr16/yolox-onnx"), ("rtmpose-m_ap10k_256_bs5.torchscript.pt", "DWPose-TorchScript")],
)
def test_animal_openpose_without_its_files_offline_is_refused_in_one_line(tmp_path, monkeypatch, missing, repo):
    folder = tmp_path / "ControlNet" / "annotators" / "openpose"
    if missing != "yolox_l.torchscript.pt":
        folder.mkdir(parents=True)
        torch.jit.save(detector([CAT]), str(folder / "yolox_l.torchscript.pt"))
    line = offline_refusal(tmp_path, monkeypatch, "animal_openpose", _picture(255), 256)
    assert f"animal_openpose needs ControlNet/annotators/openpose/{missing}" in line and "offline" in line
    assert repo in line


def test_the_extensions_onnx_file_is_used_where_onnxruntime_imports(animal_files, monkeypatch):
    onnx = "rtmpose-m_simcc-ap10k_pt-aic-coco_210e-256x256-7a041aa1_20230206.onnx"
    (animal_files / onnx).write_bytes(b"onnx")
    monkeypatch.setattr(dwpose, "onnxruntime_imports", lambda: False)
    assert dw_annotator("animal") == "animal_pose"
    monkeypatch.setattr(dwpose, "onnxruntime_imports", lambda: True)
    assert dw_annotator("animal") == "animal_pose_onnx"
    (animal_files / onnx).unlink()
    fetched = []
    monkeypatch.setattr("jupyter_sd.engine.hub.offline_mode", lambda: False)

    def fetch_model(url, *, folder, name, **_):  # an export streams through the downloads (progress, resume)
        fetched.append(url)
        (folder / name).write_text("")

    monkeypatch.setattr("jupyter_sd.downloads.http.fetch_model", fetch_model)
    assert annotator_weights.annotator_weights("animal_pose_onnx").name == onnx  # the repo's Annotators/ folder
    assert fetched == [f"{annotator_weights._hub_url('bdsqlsz/qinglong_controlnet-lllite', 'Annotators/' + onnx)}"]
