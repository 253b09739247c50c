"""depth_leres++ on tiny weights in res101.pth's and latest_net_G.pth's layouts: the merge network against pix2pix's
U-Net written with torch.nn.functional, and the map against the extension's double estimation computed here
(LeReS's functional forward at 448, bicubic resizes, the merge input's −1..1 stretch, ``(out + 1) / 2`` stretched
to 0..1, then depth_leres's 16-bit/8-bit map).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from helpers.annotator_nets import annotator_files, offline_refusal
from helpers.leres_net import leres_reference, leres_state
from helpers.merge_net import merge_reference, merge_state

from jupyter_sd.engine.control.leres_merge import MergeNet
from jupyter_sd.engine.control.modules import find_module, module_params
from jupyter_sd.engine.control.preprocessors import preprocess


def _picture(height, width):
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 255 // width, y * 255 // height, (x * 3 + y) % 256], axis=2).astype(np.uint8)
    cv2.circle(image, (width // 3, height // 2), height // 4, (230, 40, 90), -1)
    return image


@pytest.fixture()
def boost(tmp_path):
    files = {"leres/res101.pth": {"depth_model": leres_state()}, "leres/latest_net_G.pth": merge_state(ngf=1)}
    with annotator_files(tmp_path / "models", files) as folder:
        yield files, folder


def _leres(state, image, side):
    bgr = cv2.resize(image[:, :, ::-1].copy(), (side, side)).astype(np.float32)
    x = (bgr - np.float32([0.485, 0.456, 0.406])) / np.float32([0.229, 0.224, 0.225])
    with torch.no_grad():
        depth = leres_reference(state, torch.from_numpy(x.transpose(2, 0, 1)[None].copy()))[0, 0].numpy()
    depth = cv2.resize(depth, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_CUBIC)
    return cv2.resize(depth, (1024, 1024), interpolation=cv2.INTER_CUBIC)


def _expected(files, image, near, background):
    """The extension's estimateboost when R_x (448) is over the picture's side: the double estimation alone."""
    low = high = _leres(files["leres/res101.pth"]["depth_model"], image, 448)
    pair = [(d - d.min()) / (d.max() - d.min()) * 2 - 1 for d in (low, high)]
    with torch.no_grad():
        out = merge_reference(files["leres/latest_net_G.pth"], torch.from_numpy(np.stack(pair)[None]).float())
    merged = ((out + 1) / 2)[0, 0].numpy()
    merged = (merged - merged.min()) / (merged.max() - merged.min())
    depth = cv2.resize(merged, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_CUBIC)
    made = np.clip(np.rint(np.floor(65535 * (depth - depth.min()) / (depth.max() - depth.min())) * 255 / 65535), 0, 255)
    made[made <= near * 255 / 100] = 0
    made = 255 - made
    made[made <= background * 255 / 100] = 0
    return made.astype(np.uint8)


def test_merge_net_is_pix2pix_unet_with_the_files_names():
    state = merge_state(levels=7, ngf=2)
    net = MergeNet(state)
    assert set(net.state_dict()) == set(state)
    net.load_state_dict(state)
    x = torch.randn(1, 2, 128, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(net(x), merge_reference(state, x))
    assert net(x).shape == (1, 1, 128, 128)


def test_depth_leres_plus_plus_has_depth_leres_sliders():
    module = find_module("depth_leres++")
    assert (module.threshold_a.label, module.threshold_b.label) == ("Remove Near %", "Remove Background %")
    assert module_params(module) == (512, 0.0, 0.0)


@pytest.mark.parametrize(("near", "background"), [(0, 0), (20, 30)])
def test_map_is_the_extensions_double_estimation(boost, near, background):
    files, _ = boost
    image = _picture(192, 192)  # a multiple of 64: no resize, no padding; R_x is 448 > 192: no local boosting
    made = preprocess("depth_leres++", image, 192, near, background)
    expected = _expected(files, image, near, background)
    assert made.shape == (192, 192, 3) and (made[:, :, 0] == made[:, :, 2]).all()
    difference = np.abs(made[:, :, 0].astype(int) - expected.astype(int))
    assert difference.max() <= 1 and (difference == 0).mean() > 0.99
    assert made[:, :, 0].std() > 10  # a real depth, not a flat picture


def test_a_side_under_the_boosts_search_is_refused_in_one_line(boost):
    with pytest.raises(ValueError, match="depth_leres\\+\\+ needs a picture side of at least 160") as refused:
        preprocess("depth_leres++", _picture(128, 128), 128)
    assert "\n" not in str(refused.value) and len(str(refused.value)) < 200


def test_weights_of_another_network_are_refused_in_one_line(boost):
    _, folder = boost
    torch.save({"model.model.0.weight": torch.zeros(1)}, folder / "leres" / "latest_net_G.pth")
    with pytest.raises(ValueError, match="latest_net_G.pth is not LeReS\\+\\+'s merge network") as refused:
        preprocess("depth_leres++", _picture(192, 192), 192)
    assert "\n" not in str(refused.value) and len(str(refused.value)) < 200


def test_missing_merge_network_offline_is_one_line(tmp_path, monkeypatch):
    folder = tmp_path / "models" / "ControlNet" / "annotators" / "leres"
    folder.mkdir(parents=True)
    torch.save({"depth_model": leres_state()}, folder / "res101.pth")
    line = offline_refusal(tmp_path / "models", monkeypatch, "depth_leres++", _picture(192, 192), 192)
    assert "ControlNet/annotators/leres/latest_net_G.pth" in line and "lllyasviel/Annotators" in line
