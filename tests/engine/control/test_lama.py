"""``inpaint_only+lama``: big-lama's generator in the published layout (``ControlNetLama.pth``) loads strictly, its
Fourier unit is a convolution on the direct DFT, the whole network matches a layer-by-layer reference, and the
preprocessor gives the extension's composed picture: LaMa's fill in the mask, the known pixels kept, the mask kept.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from helpers.annotator_nets import annotator_files, offline_refusal
from helpers.lama_net import lama_reference, lama_shapes, lama_state

from jupyter_sd.engine.control.lama import FourierUnit, LamaGenerator, load_lama
from jupyter_sd.engine.control.modules import find_module, module_params
from jupyter_sd.engine.control.preprocessors import preprocess
from jupyter_sd.engine.control.unit_maps import unit_map
from jupyter_sd.recipe.control_units import parse_unit_text


def _direct_fourier_unit(x: np.ndarray, weight: np.ndarray, bn: dict) -> np.ndarray:
    """The Fourier unit by the DFT's own sums: ortho rfft2, 1×1 conv on (re, im) per channel, BN, ReLU, inverse."""
    _, height, width = x.shape
    rows = np.exp(-2j * np.pi * np.outer(np.arange(height), np.arange(height)) / height)
    cols = np.exp(-2j * np.pi * np.outer(np.arange(width), np.arange(width // 2 + 1)) / width)
    spectrum = rows @ x @ cols / math.sqrt(height * width)  # C×H×(W/2+1)
    parts = np.stack([spectrum.real, spectrum.imag], axis=1).reshape(-1, height, width // 2 + 1)
    parts = np.einsum("oc,chw->ohw", weight[:, :, 0, 0], parts)
    scale = bn["weight"] / np.sqrt(bn["running_var"] + 1e-5)
    parts = (parts - bn["running_mean"][:, None, None]) * scale[:, None, None] + bn["bias"][:, None, None]
    parts = np.maximum(parts, 0).reshape(-1, 2, height, width // 2 + 1)
    half = parts[:, 0] + 1j * parts[:, 1]
    along_h = rows.conj() @ half / math.sqrt(height)  # inverse DFT down the columns
    weights = np.where((np.arange(width // 2 + 1) == 0) | (np.arange(width // 2 + 1) == width // 2), 1.0, 2.0)
    waves = np.exp(2j * np.pi * np.outer(np.arange(width // 2 + 1), np.arange(width)) / width)
    return np.real((along_h * weights) @ waves) / math.sqrt(width)  # the real signal of a half spectrum


def test_the_fourier_unit_is_a_convolution_on_the_direct_dft():
    torch.manual_seed(0)
    unit = FourierUnit(3).eval().requires_grad_(False)
    with torch.no_grad():
        for tensor in (unit.bn.weight, unit.bn.bias, unit.bn.running_mean):
            tensor.normal_()
        unit.bn.running_var.uniform_(0.5, 1.5)
    x = torch.randn(1, 3, 6, 8)
    with torch.no_grad():
        made = unit(x)[0].numpy()
    bn = {k: v.double().numpy() for k, v in unit.bn.state_dict().items()}
    expected = _direct_fourier_unit(x[0].double().numpy(), unit.conv_layer.weight.double().numpy(), bn)
    assert made.shape == (3, 6, 8) and np.abs(expected).max() > 0.1
    np.testing.assert_allclose(made, expected, atol=1e-5)


def test_the_published_layout_loads_strictly():
    with torch.device("meta"):
        full = LamaGenerator()
    assert {name: tuple(t.shape) for name, t in full.state_dict().items()} == lama_shapes(64, 18)
    net = LamaGenerator(8, 2)
    assert {name: tuple(t.shape) for name, t in net.state_dict().items()} == lama_shapes(8, 2)
    net.load_state_dict(lama_state(), strict=True)


def test_the_generator_matches_the_layer_by_layer_reference(tmp_path):
    path = tmp_path / "ControlNetLama.pth"
    state = lama_state(seed=3)
    torch.save({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, path)  # counters optional
    net = load_lama(path)
    x = torch.rand(1, 4, 32, 40)
    with torch.no_grad():
        made = net(x)
        expected = lama_reference(state, x)
    assert made.shape == (1, 3, 32, 40) and 0 < made.min() and made.max() < 1 and made.std() > 0.01
    torch.testing.assert_close(made, expected, atol=1e-5, rtol=1e-4)


def test_the_module_has_no_sliders_and_takes_the_mask():
    lama = find_module("inpaint_only+lama")
    assert lama.takes_mask and lama.annotator
    assert module_params(lama, 768, 5, 5) == (None, None, None)


@pytest.fixture()
def lama_file(tmp_path):
    with annotator_files(tmp_path / "models", {"lama/ControlNetLama.pth": lama_state(seed=5)}) as folder:
        yield folder / "lama"


def _picture_and_mask() -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:48, 0:64]
    picture = np.stack([x * 4, y * 5, np.full_like(x, 90)], axis=2).astype(np.uint8)
    mask = np.zeros((48, 64), np.uint8)
    mask[12:30, 20:44] = 255
    mask[30:34, 20:44] = 128  # a soft edge: LaMa sees it unmasked (≤ ½), the blend takes half of its colour
    return picture, mask


def _expected(rgba: np.ndarray) -> np.ndarray:
    """sd-webui-controlnet's inpaint_only+lama, written out: 256 short side, LaMa, crop, resize, blend by alpha."""
    height, width = rgba.shape[:2]
    k = 256 / min(height, width)
    size = (round(width * k), round(height * k))
    scaled = cv2.resize(rgba, size, interpolation=cv2.INTER_CUBIC)
    padded = np.pad(scaled, [(0, -size[1] % 64), (0, -size[0] % 64), (0, 0)], mode="edge")
    feed = torch.from_numpy(padded).float() / 255.0
    hole = (feed[:, :, 3:4] > 0.5).float()
    colour = feed[:, :, :3] * (1 - hole)
    with torch.no_grad():
        made = lama_reference(lama_state(seed=5), torch.cat([colour, hole], 2).permute(2, 0, 1)[None])
    fill = (made[0].permute(1, 2, 0) * hole + colour * (1 - hole)) * 255.0
    fill = cv2.resize(fill.numpy().clip(0, 255).astype(np.uint8)[: size[1], : size[0]], (width, height))
    alpha = rgba[:, :, 3:4].astype(np.float32) / 255.0
    blended = (fill.astype(np.float32) * alpha + rgba[:, :, :3].astype(np.float32) * (1 - alpha)).clip(0, 255)
    return np.concatenate([blended.astype(np.uint8), rgba[:, :, 3:4].astype(np.uint8)], axis=2)


def test_the_preprocessor_fills_the_mask_with_lama_and_keeps_the_rest(lama_file):
    picture, mask = _picture_and_mask()
    made = preprocess("inpaint_only+lama", picture, mask=mask)
    assert made.shape == (48, 64, 4) and made.dtype == np.uint8
    np.testing.assert_array_equal(made[:, :, 3], mask)
    outside = mask == 0
    np.testing.assert_array_equal(made[:, :, :3][outside], picture[outside])  # known pixels kept
    assert np.abs(made[12:30, 20:44, :3].astype(int) - picture[12:30, 20:44].astype(int)).mean() > 10
    rgba = np.concatenate([picture, mask[:, :, None]], axis=2)
    np.testing.assert_allclose(made.astype(int), _expected(rgba).astype(int), atol=1)


def test_a_unit_gets_the_filled_map_and_the_inpaint_hint(lama_file):
    picture, mask = _picture_and_mask()
    unit = parse_unit_text("Module: inpaint_only+lama, Model: m")
    made = unit_map(unit, picture, 64, 48, mask=mask)
    np.testing.assert_array_equal(made.detected, preprocess("inpaint_only+lama", picture, mask=mask))
    hint = made.tensor()[0].numpy()
    assert hint.shape == (3, 48, 64) and (hint[:, 12:30, 20:44] == -1).all()
    np.testing.assert_allclose(hint[:, 0, 0], picture[0, 0] / 255.0, atol=1e-6)


def test_resize_and_fill_fits_first_so_lama_fills_the_border(lama_file):
    from jupyter_sd.engine.control.annotators import outpaint_lama

    picture, mask = _picture_and_mask()
    rgba = np.concatenate([picture, mask[:, :, None]], axis=2)
    made = outpaint_lama(rgba, 96, 48)  # 64×48 fits at scale 1, 16 px of border each side
    assert made.shape == (48, 96, 4)
    assert (made[:, :16, 3] == 255).all() and (made[:, 80:, 3] == 255).all()
    binary = np.where(mask > 127, 255, 0)  # fitting makes the mask hard, as the extension's detectmap_proc
    np.testing.assert_array_equal(made[:, 16:80, 3], binary)
    np.testing.assert_array_equal(made[:, 16:80, :3][mask == 0], picture[mask == 0])
    fitted = np.full((48, 96, 4), 255, np.float32)
    fitted[:, :, :3] = np.median(np.concatenate([picture[0], picture[-1], picture[:, 0], picture[:, -1]]), axis=0)
    fitted[:, 16:80] = np.concatenate([picture, binary[:, :, None]], axis=2)
    np.testing.assert_allclose(made.astype(int), _expected(fitted).astype(int), atol=1)


def test_the_start_noise_is_the_maps_latent_diffused_to_t_999():
    from diffusers import DDPMScheduler

    from jupyter_sd.engine.control.lama import lama_start_noise

    sd = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")  # SD1.5 and SDXL's
    noise, latent = torch.randn(1, 4, 6, 8), torch.randn(1, 4, 6, 8)
    made = lama_start_noise(noise, latent, sd.alphas_cumprod)
    torch.testing.assert_close(made, 0.068265 * latent + 0.997667 * noise, atol=1e-5, rtol=0)
    hires = torch.randn(1, 4, 12, 16)
    assert lama_start_noise(hires, latent, sd.alphas_cumprod) is hires


def test_without_a_mask_nothing_is_filled(lama_file):
    picture, _ = _picture_and_mask()
    np.testing.assert_array_equal(preprocess("inpaint_only+lama", picture)[:, :, :3], picture)


def test_lama_without_its_file_offline_is_refused_in_one_line(tmp_path, monkeypatch):
    picture, mask = _picture_and_mask()
    line = offline_refusal(tmp_path, monkeypatch, "inpaint_only+lama", picture, mask=mask)
    assert "inpaint_only+lama needs ControlNet/annotators/lama/ControlNetLama.pth" in line and "offline" in line
    assert "\n" not in line and len(line) < 200


def test_weights_of_another_network_are_refused_in_one_line(lama_file):
    torch.save({"conv.weight": torch.zeros(1)}, lama_file / "ControlNetLama.pth")
    picture, mask = _picture_and_mask()
    with pytest.raises(ValueError, match=r"ControlNetLama\.pth is not LaMa weights") as refused:
        preprocess("inpaint_only+lama", picture, mask=mask)
    assert "\n" not in str(refused.value) and len(str(refused.value)) < 200
    state = lama_state(seed=5)
    state["model.5.conv1.ffc.convl2l.weight"] = torch.zeros(3, 3, 3, 3)  # the right names, a wrong shape
    torch.save(state, lama_file / "ControlNetLama.pth")
    with pytest.raises(ValueError, match=r"is not LaMa weights"):
        preprocess("inpaint_only+lama", picture, mask=mask)


def test_a_resize_and_fill_unit_has_lama_fill_its_border(lama_file):
    from jupyter_sd.engine.control.annotators import outpaint_lama

    picture, mask = _picture_and_mask()
    unit = parse_unit_text("Module: inpaint_only+lama, Model: m, Resize Mode: Resize and Fill")
    made = unit_map(unit, picture, 96, 48, mask=mask)
    rgba = np.concatenate([picture, mask[:, :, None]], axis=2)
    np.testing.assert_array_equal(made.detected, outpaint_lama(rgba, 96, 48))
    hint = made.tensor()[0].numpy()
    assert hint.shape == (3, 48, 96) and (hint[:, :, :16] == -1).all() and (hint[:, :, 80:] == -1).all()
    cropped = unit_map(parse_unit_text("Module: inpaint_only+lama, Model: m"), picture, 96, 48, mask=mask)
    assert not (cropped.tensor()[0].numpy()[:, :, :16] == -1).all()  # other resize modes crop, nothing to fill
