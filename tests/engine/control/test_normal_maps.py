"""normal_bae on tiny weights in scannet.pt's layout (against NNET's forward written with torch.nn.functional), and
normal_midas on a tiny DPT (against the extension's Sobel formula on the model's depth, computed here).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from helpers.annotator_nets import annotator_files, offline_refusal
from helpers.normal_nets import normal_bae_reference, normal_bae_state, tiny_dpt

from jupyter_sd.engine.control.normal_bae import same_pad
from jupyter_sd.engine.control.preprocessors import preprocess


def _picture(height, width):
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 255 // width, y * 255 // height, (x + 2 * y) % 256], axis=2).astype(np.uint8)
    cv2.circle(image, (width // 3, height // 2), height // 4, (230, 40, 90), -1)
    return image


@pytest.fixture()
def bae(tmp_path):
    state = normal_bae_state()
    with annotator_files(tmp_path / "models", {"normal_bae/scannet.pt": {"model": state}}) as folder:
        yield state, folder


def test_same_padding_puts_the_odd_pixel_last():
    x = torch.arange(25.0).view(1, 1, 5, 5)
    assert same_pad(x, 3, 2).shape[2:] == (7, 7) and same_pad(x, 3, 1).shape[2:] == (7, 7)
    assert same_pad(torch.zeros(1, 1, 4, 4), 3, 2).shape[2:] == (5, 5)  # one pixel, after: TensorFlow's "same"
    padded = same_pad(torch.ones(1, 1, 4, 4), 3, 2)[0, 0]
    assert padded[0].sum() == 4 and padded[-1].sum() == 0 and padded[:, -1].sum() == 0


def test_normal_bae_map_is_nnets_finest_normals_in_0_to_255(bae):
    state, _ = bae
    image = _picture(64, 64)  # a multiple of 64: no resize, no padding
    made = preprocess("normal_bae", image, 64)
    x = (image / 255.0 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    with torch.no_grad():
        normal = normal_bae_reference(state, torch.tensor(x.transpose(2, 0, 1)[None], dtype=torch.float32))
    expected = (((normal[0, :3] + 1) * 0.5).clip(0, 1).permute(1, 2, 0).numpy() * 255.0).astype(np.uint8)
    assert made.shape == (64, 64, 3)
    np.testing.assert_allclose(made.astype(int), expected.astype(int), atol=1)
    assert len(np.unique(made[:, :, 0])) > 20


def test_normal_bae_keeps_a_picture_that_is_not_square(bae):
    assert preprocess("normal_bae", _picture(70, 90), 64).shape == (64, 82, 3)  # run padded to 64×128


def test_weights_of_another_network_are_refused_in_one_line(bae):
    _, folder = bae
    torch.save({"model": {"conv.weight": torch.zeros(1)}}, folder / "normal_bae" / "scannet.pt")
    with pytest.raises(ValueError, match="scannet.pt is not normal_bae weights") as refused:
        preprocess("normal_bae", _picture(64, 64), 64)
    assert "\n" not in str(refused.value)


def test_offline_without_scannet_pt_is_one_line(tmp_path, monkeypatch):
    line = offline_refusal(tmp_path / "empty", monkeypatch, "normal_bae", _picture(64, 64), 64)
    assert "ControlNet/annotators/normal_bae/scannet.pt" in line and "lllyasviel/Annotators" in line


@pytest.fixture()
def dpt(tmp_path):
    model = tiny_dpt(11)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # MiDaS's depths run into the thousands: against z = 2π its slopes must be steep too
        for parameter in model.parameters():
            if parameter.dim() > 1:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) / parameter[0].numel() ** 0.5)
        model.head.head[4].weight.mul_(100.0)
    with annotator_files(tmp_path / "models", {}) as folder:
        model.save_pretrained(folder / "midas" / "dpt-hybrid-midas")
        yield model


def _midas_normal(model, image, background):
    """The extension's apply_midas: Sobel of the raw depth, zeroed under the background, z = 2π, (z, y, x)."""
    pixels = torch.from_numpy((image.astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)[None].copy())
    with torch.no_grad():
        depth = model(pixel_values=pixels).predicted_depth[0].numpy()
    relative = (depth - depth.min()) / (depth - depth.min()).max()
    x = cv2.Sobel(depth, cv2.CV_32F, 1, 0, ksize=3)
    y = cv2.Sobel(depth, cv2.CV_32F, 0, 1, ksize=3)
    x[relative < background], y[relative < background] = 0, 0
    normal = np.stack([x, y, np.full_like(x, 2 * np.pi)], axis=2)
    normal /= np.sqrt((normal**2).sum(axis=2, keepdims=True))
    return (normal * 127.5 + 127.5).clip(0, 255).astype(np.uint8)[:, :, ::-1]


@pytest.mark.parametrize("background", [-1, 0.6])  # -1: the module's default, 0.4
def test_normal_midas_is_the_sobel_normal_of_midas_depth(dpt, background):
    image = _picture(64, 64)
    made = preprocess("normal_midas", image, 64, background)
    expected = _midas_normal(dpt, image, 0.4 if background == -1 else background)
    np.testing.assert_allclose(made.astype(int), expected.astype(int), atol=1)
    assert (made[:, :, 2] == 127).any() and (made[:, :, 2] != 127).any()  # flat background and slopes both present


def test_normal_map_is_sd_webui_controlnet_1_0s_name_for_normal_midas(dpt):
    image = _picture(64, 64)
    np.testing.assert_array_equal(preprocess("normal_map", image, 64), preprocess("normal_midas", image, 64))
