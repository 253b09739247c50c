"""depth_leres on tiny weights in res101.pth's layout: the map against LeReS's forward written with
torch.nn.functional (in-place ReLU and all) and sd-webui-controlnet's post-processing formula, computed here.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from helpers.annotator_nets import annotator_files, offline_refusal
from helpers.leres_net import leres_reference, leres_state

from jupyter_sd.engine.control.modules import find_module, module_params
from jupyter_sd.engine.control.preprocessors import preprocess


def _picture(height, width):
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 255 // width, y * 255 // height, (x + 2 * y) % 256], axis=2).astype(np.uint8)
    cv2.circle(image, (width // 3, height // 2), height // 4, (230, 40, 90), -1)
    return image


@pytest.fixture()
def leres(tmp_path):
    state = leres_state()
    with annotator_files(tmp_path / "models", {"leres/res101.pth": {"depth_model": state}}) as folder:
        yield state, folder


def _expected(state, image, near, background):
    """The extension's map: BGR 0..255 through Normalize, depth to 16 bits, to 8, remove near, invert, remove bg."""
    bgr = image[:, :, ::-1].astype(np.float32)
    x = (bgr - np.float32([0.485, 0.456, 0.406])) / np.float32([0.229, 0.224, 0.225])
    with torch.no_grad():
        depth = leres_reference(state, torch.from_numpy(x.transpose(2, 0, 1)[None].copy()))[0, 0].numpy()
    sixteen = np.floor(65535 * (depth - depth.min()) / (depth.max() - depth.min()))
    made = np.clip(np.rint(sixteen * 255 / 65535), 0, 255)
    made[made <= near * 255 / 100] = 0
    made = 255 - made
    made[made <= background * 255 / 100] = 0
    return made.astype(np.uint8)


def test_sliders_are_the_extensions_remove_near_and_background_percent():
    module = find_module("depth_leres")
    assert (module.threshold_a.label, module.threshold_b.label) == ("Remove Near %", "Remove Background %")
    assert module_params(module) == (512, 0.0, 0.0)
    with pytest.raises(ValueError, match="Remove Near %"):
        module_params(module, 512, 101)


@pytest.mark.parametrize(("near", "background"), [(0, 0), (30, 40)])
def test_depth_leres_map_is_the_extensions_formula_on_leres_depth(leres, near, background):
    state, _ = leres
    image = _picture(64, 64)  # a multiple of 64: no resize, no padding
    made = preprocess("depth_leres", image, 64, near, background)
    expected = _expected(state, image, near, background)
    assert made.shape == (64, 64, 3) and (made[:, :, 0] == made[:, :, 2]).all()
    close = np.abs(made[:, :, 0].astype(int) - expected.astype(int)) <= 1
    assert close.mean() > 0.995, close.mean()  # a threshold may flip a value that sits on it
    assert len(np.unique(made[:, :, 0])) > 20
    if near or background:
        assert (made == 0).any() and (made > 200).any()


def test_channel_order_is_bgr_as_the_extension_feeds_it(leres):
    state, _ = leres
    image = _picture(64, 64)
    made = preprocess("depth_leres", image, 64)
    rgb_fed = _expected(state, image[:, :, ::-1].copy(), 0, 0)  # what feeding RGB would give
    assert np.abs(made[:, :, 0].astype(int) - rgb_fed.astype(int)).max() > 8


def test_depth_leres_keeps_a_picture_that_is_not_square(leres):
    assert preprocess("depth_leres", _picture(70, 90), 64).shape == (64, 82, 3)  # run padded to 64×128


def test_weights_of_another_network_are_refused_in_one_line(leres):
    _, folder = leres
    torch.save({"depth_model": {"conv.weight": torch.zeros(1)}}, folder / "leres" / "res101.pth")
    with pytest.raises(ValueError, match="res101.pth is not depth_leres weights") as refused:
        preprocess("depth_leres", _picture(64, 64), 64)
    assert "\n" not in str(refused.value)


def test_offline_without_res101_pth_is_one_line(tmp_path, monkeypatch):
    line = offline_refusal(tmp_path / "empty", monkeypatch, "depth_leres", _picture(64, 64), 64)
    assert "ControlNet/annotators/leres/res101.pth" in line and "lllyasviel/Annotators" in line
