"""seg_anime_face on tiny weights in UNet.pth's layout: the map against the U-Net's forward written with
torch.nn.functional and sd-webui-controlnet's colour table and scaling (short side 512, PIL bicubic), computed here.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from helpers.anime_face_net import anime_face_reference, anime_face_state
from helpers.annotator_nets import annotator_files, offline_refusal
from PIL import Image

from jupyter_sd.engine.control.modules import find_module, module_params
from jupyter_sd.engine.control.preprocessors import preprocess

COLOURS = {
    0: (255, 255, 0),  # background
    1: (0, 0, 255),  # hair
    2: (255, 0, 0),  # eye
    3: (255, 255, 255),  # mouth
    4: (0, 255, 0),  # face
    5: (0, 255, 255),  # skin
    6: (255, 0, 255),  # clothes
}
"""The extension's annotator/anime_face_segment PALETTE, written out here."""


def _picture(height, width):
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 255 // width, y * 255 // height, (3 * x + 2 * y) % 256], axis=2).astype(np.uint8)
    cv2.circle(image, (width // 3, height // 2), height // 4, (230, 40, 90), -1)
    cv2.rectangle(image, (width // 2, height // 5), (width - 9, height // 2), (20, 200, 60), -1)
    return image


@pytest.fixture()
def anime_face(tmp_path):
    state = anime_face_state()
    with annotator_files(tmp_path / "models", {"anime_face_segment/UNet.pth": state}) as folder:
        yield state, folder


def _expected(state, padded):
    """The extension's map of an already padded picture: Resize(512) bicubic, ToTensor, argmax → PALETTE."""
    height, width = padded.shape[:2]
    k = 512 / min(height, width)
    size = (512, int(width * k)) if height <= width else (int(height * k), 512)
    picture = Image.fromarray(padded)
    if size != (height, width):
        picture = picture.resize(size[::-1], Image.BICUBIC)
    x = torch.from_numpy(np.asarray(picture).astype(np.float32).transpose(2, 0, 1)[None] / 255.0)
    with torch.no_grad():
        classes = anime_face_reference(state, x)[0].numpy()
    labels = classes.argmax(axis=0)
    return np.array([COLOURS[c] for c in range(7)], dtype=np.uint8)[labels], labels


def test_seg_anime_face_is_built_in_with_the_resolution_slider():
    module = find_module("seg_anime_face")
    assert module.annotator and module_params(module) == (512, None, None)


def test_seg_anime_face_map_is_the_reference_classes_in_the_extensions_colours(anime_face):
    state, _ = anime_face
    image = _picture(512, 512)  # short side 512: no scaling, no padding, no resize to 512
    made = preprocess("seg_anime_face", image, 512)
    expected, labels = _expected(state, image)
    assert made.shape == (512, 512, 3)
    assert (made == expected).all(axis=2).mean() > 0.999  # an argmax near a tie may flip
    assert len(np.unique(labels)) >= 3  # several classes painted


def test_a_smaller_resolution_is_run_at_512_and_cropped_as_the_extension_crops(anime_face):
    state, _ = anime_face
    image = _picture(100, 150)  # res 128: 128×192, no padding; the network sees 512×768
    made = preprocess("seg_anime_face", image, 128)
    expected, _ = _expected(state, cv2.resize(image, (192, 128), interpolation=cv2.INTER_CUBIC))
    assert made.shape == (128, 192, 3)  # the extension crops the 512-scale map at the 128-scale size
    assert (made == expected[:128, :192]).all(axis=2).mean() > 0.999


def test_module_prefixed_names_load_and_other_weights_are_refused_in_one_line(anime_face):
    state, folder = anime_face
    torch.save({"module." + k: v for k, v in state.items()}, folder / "anime_face_segment" / "UNet.pth")
    image = _picture(64, 64)
    assert preprocess("seg_anime_face", image, 64).shape == (64, 64, 3)
    torch.save({"en_block0.0.0.weight": torch.zeros(8, 3, 3, 3)}, folder / "anime_face_segment" / "UNet.pth")
    with pytest.raises(ValueError, match="UNet.pth is not seg_anime_face weights") as refused:
        preprocess("seg_anime_face", image, 64)
    assert "\n" not in str(refused.value) and len(str(refused.value)) < 200


def test_offline_without_unet_pth_is_one_line(tmp_path, monkeypatch):
    line = offline_refusal(tmp_path / "empty", monkeypatch, "seg_anime_face", _picture(64, 64), 64)
    assert "ControlNet/annotators/anime_face_segment/UNet.pth" in line
    assert "bdsqlsz/qinglong_controlnet-lllite" in line
