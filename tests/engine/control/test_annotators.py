"""Soft-edge and lineart preprocessors running tiny networks saved with the published files' names and layouts,
against their forward passes written out in tests/helpers/annotator_nets.py and sd-webui-controlnet's arithmetic.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from helpers.annotator_nets import (
    anime_reference,
    anime_state,
    hed_reference,
    hed_state,
    lineart_reference,
    lineart_state,
    pidinet_reference,
    pidinet_state,
)

from jupyter_sd import library
from jupyter_sd.engine.control.preprocessors import preprocess
from jupyter_sd.engine.control.unit_maps import unit_map
from jupyter_sd.recipe.control_units import parse_unit_text

RES = 64


@pytest.fixture()
def annotators(tmp_path):
    """A models folder whose ``ControlNet/annotators/`` holds tiny HED, PiDiNet and lineart files."""
    root = tmp_path / "models"
    folder = root / "ControlNet" / "annotators"
    for sub in ("hed", "pidinet", "lineart"):
        (folder / sub).mkdir(parents=True)
    torch.save(hed_state(), folder / "hed" / "ControlNetHED.pth")
    torch.save({"epoch": 1, "state_dict": pidinet_state()}, folder / "pidinet" / "table5_pidinet.pth")
    torch.save(lineart_state(3), folder / "lineart" / "sk_model.pth")
    torch.save(lineart_state(4), folder / "lineart" / "sk_model2.pth")
    before = library.models_dir()
    library.set_models_dir(root)
    yield folder
    library.set_models_dir(before)


def _picture(height=70, width=90):
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 255 // width, y * 255 // height, np.full_like(x, 60)], axis=2).astype(np.uint8)
    cv2.circle(image, (width // 2, height // 2), height // 3, (240, 240, 30), 3)
    cv2.line(image, (5, height - 8), (width - 5, 10), (10, 10, 200), 2)
    return image


def _scaled(image, res=RES):
    """sd-webui-controlnet's resize_image_with_pad: short side to `res` (area down, cubic up), edge pad to 64."""
    height, width = image.shape[:2]
    k = res / min(height, width)
    size = (round(width * k), round(height * k))
    scaled = cv2.resize(image, size, interpolation=cv2.INTER_CUBIC if k > 1 else cv2.INTER_AREA)
    pad_h, pad_w = -size[1] % 64, -size[0] % 64
    return np.pad(scaled, [[0, pad_h], [0, pad_w], [0, 0]], mode="edge"), size


def _as_tensor(image, scale):
    return torch.from_numpy(image.astype(np.float32)).permute(2, 0, 1)[None] * scale


def _hed_reference(image, safe):
    padded, (width, height) = _scaled(image)
    with torch.no_grad():
        sides = hed_reference(hed_state(), _as_tensor(padded, 1.0))
    full = [cv2.resize(s[0, 0].numpy(), padded.shape[1::-1], interpolation=cv2.INTER_LINEAR) for s in sides]
    edge = 1 / (1 + np.exp(-np.mean(np.stack(full, 2), axis=2).astype(np.float64)))
    if safe:
        edge = np.floor(edge.astype(np.float32) * 3) / 2  # three levels: 0, 1/2, 1 (and 3/2 at exactly 1)
    return (edge * 255).clip(0, 255).astype(np.uint8)[:height, :width]


@pytest.mark.parametrize(("module", "safe"), [("softedge_hed", False), ("softedge_hedsafe", True)])
def test_hed_is_the_sigmoid_of_the_mean_side_output(annotators, module, safe):
    image = _picture()
    made = preprocess(module, image, RES)
    expected = _hed_reference(image, safe)
    assert made.shape == (*expected.shape, 3) and made.dtype == np.uint8
    np.testing.assert_allclose(made[:, :, 0], expected, atol=1)
    assert np.array_equal(made[:, :, 0], made[:, :, 2])
    if safe:
        assert set(np.unique(made)) <= {0, 127, 255} and len(np.unique(made)) >= 2
    else:
        assert len(np.unique(made)) > 20  # a real grey map, not a saturated one


def _pidinet_reference(image, safe):
    padded, (width, height) = _scaled(image)
    with torch.no_grad():
        edge = pidinet_reference(pidinet_state(), _as_tensor(padded[:, :, ::-1].copy(), 1 / 255))[0, 0].numpy()
    if safe:
        edge = np.floor(edge * 3) / 2
    return (edge * 255).clip(0, 255).astype(np.uint8)[:height, :width]


@pytest.mark.parametrize(("module", "safe"), [("softedge_pidinet", False), ("softedge_pidisafe", True)])
def test_pidinet_is_the_fused_pixel_difference_map_of_the_bgr_picture(annotators, module, safe):
    image = _picture()
    made = preprocess(module, image, RES)
    expected = _pidinet_reference(image, safe)
    np.testing.assert_allclose(made[:, :, 0], expected, atol=1)
    assert len(np.unique(made)) > (1 if safe else 20)


@pytest.mark.parametrize(("module", "seed"), [("lineart_realistic", 3), ("lineart_coarse", 4)])
def test_lineart_is_the_generator_output_inverted(annotators, module, seed):
    image = _picture()
    made = preprocess(module, image, RES)
    padded, (width, height) = _scaled(image)
    with torch.no_grad():
        line = lineart_reference(lineart_state(seed), _as_tensor(padded, 1 / 255))[0, 0].numpy()
    expected = 255 - (line * 255).clip(0, 255).astype(np.uint8)[:height, :width]
    np.testing.assert_allclose(made[:, :, 0], expected, atol=1)
    assert len(np.unique(made)) > 20


def test_scribble_hed_is_the_hed_map_thinned_and_thresholded(annotators):
    image = _picture(96, 96)
    soft = _hed_reference(image, False)
    blurred = cv2.GaussianBlur(soft.astype(np.float32), (0, 0), 3.0)
    peaks = np.zeros_like(blurred)
    for kernel in ([[0, 0, 0], [1, 1, 1], [0, 0, 0]], [[0, 1, 0]] * 3, np.eye(3), np.eye(3)[::-1]):
        dilated = cv2.dilate(blurred, np.array(kernel, np.uint8))
        peaks = np.where(dilated == blurred, blurred, peaks)
    thin = np.where(peaks > 127, 255, 0).astype(np.uint8)
    expected = np.where(cv2.GaussianBlur(thin, (0, 0), 3.0) > 4, 255, 0)
    made = preprocess("scribble_hed", image, RES)
    np.testing.assert_array_equal(made[:, :, 0], expected)


def test_a_unit_with_an_annotator_module_gets_its_map_through_the_one_path(annotators):
    image = _picture(64, 64)
    unit = parse_unit_text("Module: softedge_hed, Model: m, Processor Res: 64")
    made = unit_map(unit, image, 64, 64)
    np.testing.assert_array_equal(made.detected, preprocess("softedge_hed", image, 64))
    assert made.tensor().shape == (1, 3, 64, 64)
    old_name = unit_map(parse_unit_text("Module: hed, Model: m, Processor Res: 64"), image, 64, 64)  # the 1.0 name
    np.testing.assert_array_equal(old_name.detected, made.detected)


def test_weights_of_another_network_are_refused_in_one_line(annotators):
    torch.save(lineart_state(), annotators / "hed" / "ControlNetHED.pth")
    with pytest.raises(ValueError, match=r"ControlNetHED\.pth is not hed weights") as refused:
        preprocess("softedge_hed", _picture(), RES)
    assert "\n" not in str(refused.value) and len(str(refused.value)) < 200


def test_lineart_anime_is_the_unet_output_at_multiples_of_256_inverted(annotators):
    (annotators / "lineart_anime").mkdir()
    torch.save({f"module.{k}": v for k, v in anime_state().items()}, annotators / "lineart_anime" / "netG.pth")
    image = _picture()
    made = preprocess("lineart_anime", image, RES)
    padded, (width, height) = _scaled(image)  # 64×128: the network sees it at 256×256
    scaled = cv2.resize(padded, (256, 256), interpolation=cv2.INTER_CUBIC)
    with torch.no_grad():
        line = anime_reference(anime_state(), _as_tensor(scaled, 1 / 127.5) - 1.0)[0, 0] * 127.5 + 127.5
    line = cv2.resize(line.numpy(), padded.shape[1::-1], interpolation=cv2.INTER_CUBIC).clip(0, 255).astype(np.uint8)
    expected = 255 - line[:height, :width]
    np.testing.assert_allclose(made[:, :, 0], expected, atol=1)
    assert len(np.unique(made)) > 20


def test_a_network_loads_once_per_weights_file(annotators, monkeypatch):
    import os

    from jupyter_sd.engine.control import annotator_nets as module

    loads, real = [], module._load
    monkeypatch.setattr(module, "_load", lambda name, path: loads.append(path) or real(name, path))
    image = _picture()
    first = preprocess("softedge_hed", image, RES)
    preprocess("softedge_hedsafe", image, RES)
    assert len(loads) == 1  # both modules run the one HED network
    path = annotators / "hed" / "ControlNetHED.pth"
    torch.save({k: v * 1.5 for k, v in hed_state().items()}, path)
    os.utime(path, (1, 1))  # a replaced file (another mtime) is read again
    assert not np.array_equal(preprocess("softedge_hed", image, RES), first)
    assert len(loads) == 2
