"""``lineart_anime_denoise``: MangaLineExtraction's ``res_skip`` in the published layout (``erika.pth``) loads
strictly, matches a layer-by-layer reference, and the preprocessor gives 255 − its output on the grey padded picture.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from helpers.annotator_nets import annotator_files, offline_refusal
from helpers.manga_net import manga_reference, manga_shapes, manga_state

from jupyter_sd.engine.control.manga_line import MangaLineNet
from jupyter_sd.engine.control.modules import find_module, module_params
from jupyter_sd.engine.control.preprocessors import preprocess


def test_the_published_layout_loads_strictly():
    with torch.device("meta"):
        full = MangaLineNet()
    assert {name: tuple(t.shape) for name, t in full.state_dict().items()} == manga_shapes(1)
    net = MangaLineNet.from_state_dict({f"module.{k}": v for k, v in manga_state().items()})
    assert {name: tuple(t.shape) for name, t in net.state_dict().items()} == manga_shapes(8)


def test_the_network_matches_the_layer_by_layer_reference():
    state = manga_state(seed=2)
    net = MangaLineNet.from_state_dict(state)
    x = torch.rand(1, 1, 48, 80) * 255
    with torch.no_grad():
        made = net(x)
    assert made.shape == (1, 1, 48, 80) and made.std() > 1
    torch.testing.assert_close(made, manga_reference(state, x), atol=1e-3, rtol=1e-4)


def test_the_module_is_a_lineart_one_with_a_resolution():
    assert module_params(find_module("lineart_anime_denoise")) == (512, None, None)


@pytest.fixture()
def manga_file(tmp_path):
    with annotator_files(tmp_path / "models", {"manga_line/erika.pth": manga_state(seed=5)}) as folder:
        yield folder / "manga_line"


def _picture() -> np.ndarray:
    y, x = np.mgrid[0:50, 0:70]
    picture = np.stack([x * 3, y * 4, np.full_like(x, 200)], axis=2).astype(np.uint8)
    cv2.line(picture, (5, 40), (60, 8), (10, 10, 10), 2)
    return picture


def test_the_map_is_255_minus_the_output_on_the_grey_padded_picture(manga_file):
    made = preprocess("lineart_anime_denoise", _picture(), 64)
    scaled = cv2.resize(_picture(), (90, 64), interpolation=cv2.INTER_CUBIC)  # 70×50 → short side 64
    padded = np.pad(scaled, [(0, 0), (0, 128 - 90), (0, 0)], mode="edge")
    grey = torch.from_numpy(cv2.cvtColor(padded, cv2.COLOR_RGB2GRAY)).float()[None, None]
    with torch.no_grad():
        line = manga_reference(manga_state(seed=5), grey)[0, 0].numpy()
    expected = (255 - line).clip(0, 255).astype(np.uint8)[:, :90]
    assert made.shape == (64, 90, 3) and len(np.unique(made)) > 20
    np.testing.assert_allclose(made.astype(int), np.repeat(expected[:, :, None], 3, axis=2).astype(int), atol=1)


def test_manga_line_without_its_file_offline_is_refused_in_one_line(tmp_path, monkeypatch):
    line = offline_refusal(tmp_path, monkeypatch, "lineart_anime_denoise", _picture(), 64)
    assert "lineart_anime_denoise needs ControlNet/annotators/manga_line/erika.pth" in line and "offline" in line
    assert "\n" not in line and len(line) < 200


def test_weights_of_another_network_are_refused_in_one_line(manga_file):
    torch.save({"conv.weight": torch.zeros(1)}, manga_file / "erika.pth")
    with pytest.raises(ValueError, match=r"erika\.pth is not manga line weights") as refused:
        preprocess("lineart_anime_denoise", _picture(), 64)
    assert "\n" not in str(refused.value) and len(str(refused.value)) < 200
    state = manga_state(seed=5)
    del state["block4.model.11.residual.model.2.bias"]
    torch.save(state, manga_file / "erika.pth")
    with pytest.raises(ValueError, match=r"is not manga line weights"):
        preprocess("lineart_anime_denoise", _picture(), 64)
