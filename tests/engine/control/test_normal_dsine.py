"""normal_dsine on tiny weights in dsine.pt's layout, against DSINE's forward written with torch.nn.functional and the
extension's pre- and post-processing (intrinsics from Fov on the unit picture's size, pad-to-32 offsets, crops)
computed here.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from helpers.annotator_nets import annotator_files, offline_refusal
from helpers.dsine_nets import dsine_reference, dsine_state

from jupyter_sd.engine.control.preprocessors import preprocess


def _picture(height, width):
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 255 // width, y * 255 // height, (3 * x + y) % 256], axis=2).astype(np.uint8)
    cv2.circle(image, (width // 2, height // 3), min(height, width) // 4, (40, 220, 90), -1)
    return image


@pytest.fixture()
def dsine(tmp_path):
    state = dsine_state()
    with annotator_files(tmp_path / "models", {"normal_dsine/dsine.pt": {"model": state}}) as folder:
        yield state, folder


def _expected(state, image, res, fov, iterations):
    """The extension's NormalDsineDetector, step by step, on the reference network."""
    orig_h, orig_w = image.shape[:2]
    k = res / min(orig_h, orig_w)
    new_h, new_w = round(orig_h * k), round(orig_w * k)
    scaled = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_CUBIC if k > 1 else cv2.INTER_AREA)
    padded = np.pad(scaled, [(0, -new_h % 64), (0, -new_w % 64), (0, 0)], mode="edge")
    left = (32 * (orig_w // 32 + 1) - orig_w) // 2 if orig_w % 32 else 0
    top = (32 * (orig_h // 32 + 1) - orig_h) // 2 if orig_h % 32 else 0
    focal = (max(orig_h, orig_w) / 2.0) / np.tan(np.deg2rad(fov / 2.0))
    intrins = torch.tensor([[focal, 0, orig_w / 2 - 0.5 + left], [0, focal, orig_h / 2 - 0.5 + top], [0, 0, 1]])
    x = (padded / 255.0 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    with torch.no_grad():
        x = torch.tensor(x.transpose(2, 0, 1)[None], dtype=torch.float32)
        normal = dsine_reference(state, x, intrins.float(), iterations)[:, :, top : top + orig_h, left : left + orig_w]
    normal = ((normal[0] + 1) * 0.5).clip(0, 1).permute(1, 2, 0).numpy()
    return (normal * 255.0).clip(0, 255).astype(np.uint8)[:new_h, :new_w]


def test_normal_dsine_map_is_dsines_refined_normals_in_0_to_255(dsine):
    state, _ = dsine
    image = _picture(64, 64)  # a multiple of 64: no resize, no padding, no offsets
    made = preprocess("normal_dsine", image, 64)  # Fov 60, Iterations 5
    expected = _expected(state, image, 64, 60.0, 5)
    assert made.shape == (64, 64, 3)
    np.testing.assert_allclose(made.astype(int), expected.astype(int), atol=1)
    assert len(np.unique(made[:, :, 0])) > 20 and len(np.unique(made[:, :, 2])) > 10


def test_fov_and_iterations_are_threshold_a_and_b(dsine):
    state, _ = dsine
    image = _picture(64, 64)
    made = preprocess("normal_dsine", image, 64, 100.0, 2)
    np.testing.assert_allclose(made.astype(int), _expected(state, image, 64, 100.0, 2).astype(int), atol=1)
    assert np.abs(made.astype(int) - preprocess("normal_dsine", image, 64).astype(int)).max() > 5


def test_a_picture_of_another_size_is_cropped_as_the_extension_crops_it(dsine):
    state, _ = dsine
    image = _picture(100, 80)  # scaled to 80×64, run at 128×64; cropped at DSINE's pad offsets (14, 8) of 100×80
    made = preprocess("normal_dsine", image, 64, 45.0, 1)
    expected = _expected(state, image, 64, 45.0, 1)
    assert made.shape == expected.shape == (80, 56, 3)
    np.testing.assert_allclose(made.astype(int), expected.astype(int), atol=1)


def test_out_of_range_fov_is_refused_in_one_line(dsine):
    with pytest.raises(ValueError, match=r"normal_dsine's Threshold A \(Fov\) must be 0..360"):
        preprocess("normal_dsine", _picture(64, 64), 64, 400.0)


def test_weights_of_another_network_are_refused_in_one_line(dsine):
    _, folder = dsine
    torch.save({"model": {"conv.weight": torch.zeros(1)}}, folder / "normal_dsine" / "dsine.pt")
    with pytest.raises(ValueError, match="dsine.pt is not normal_dsine weights") as refused:
        preprocess("normal_dsine", _picture(64, 64), 64)
    assert "\n" not in str(refused.value)


def test_offline_without_dsine_pt_is_one_line(tmp_path, monkeypatch):
    line = offline_refusal(tmp_path / "empty", monkeypatch, "normal_dsine", _picture(64, 64), 64)
    assert "ControlNet/annotators/normal_dsine/dsine.pt" in line and "bdsqlsz/qinglong_controlnet-lllite" in line
