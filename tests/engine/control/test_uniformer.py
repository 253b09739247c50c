"""seg_ufade20k: UniFormer-S + UperNet in upernet_global_small.pth's layout. The full-size module's tensors are the
checkpoint's (names and shapes written here from the reference code); on tiny random weights saved as an mmseg
checkpoint in the models folder, the map equals mmseg's test path written here: OpenCV bilinear keep-ratio resize to
(2048, 512), the RGB picture's channels reversed (mmseg's to_rgb on a picture that already was), ImageNet
normalization, the functional forward, scores upsampled to the resized then the padded picture, argmax, palette.
"""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from helpers.annotator_nets import annotator_files, offline_refusal
from helpers.uniformer_net import REAL, TINY, checkpoint_shapes, uniformer_reference, uniformer_state

from jupyter_sd.engine.control.modules import NEEDS_WEIGHTS, find_module, module_params
from jupyter_sd.engine.control.preprocessors import preprocess
from jupyter_sd.engine.control.segmentation import ADE20K_PALETTE
from jupyter_sd.engine.control.upernet import UperNetUniFormer, input_size, load_upernet, upernet_scores

WEIGHTS = "uniformer/upernet_global_small.pth"
MMSEG_ADE_PALETTE_SHA256 = "ce475c9151035eff51f4cf27fd7d906959b1480f6d15b9423ae2417c1b23a0ed"
"""sha256 of mmseg's ADE20KDataset.PALETTE (get_palette('ade'), 150 RGB triples) as uint8 bytes."""


def _picture(height, width):
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 255 // width, y * 255 // height, (5 * x + 3 * y) % 256], axis=2).astype(np.uint8)
    cv2.circle(image, (width // 3, height // 2), height // 4, (230, 40, 90), -1)
    cv2.rectangle(image, (width // 2, height // 5), (width - 5, height // 2), (20, 200, 60), -1)
    return image


@pytest.fixture()
def uniformer(tmp_path):
    state = uniformer_state()
    checkpoint = {"meta": {"CLASSES": ("wall",) * TINY["classes"], "mmcv_version": "1.3.0"}, "state_dict": state}
    with annotator_files(tmp_path / "models", {WEIGHTS: checkpoint}) as folder:
        yield state, folder


def _expected(state, padded):
    """mmseg's whole-mode test on `padded` (RGB uint8): scores and the palette map, both at `padded`'s size."""
    height, width = padded.shape[:2]
    scale = min(2048 / max(height, width), 512 / min(height, width))
    size = (int(width * scale + 0.5), int(height * scale + 0.5))
    resized = cv2.resize(padded, size, interpolation=cv2.INTER_LINEAR).astype(np.float32)
    bgr = resized[:, :, [2, 1, 0]]  # the extension's RGB picture, taken for BGR and "converted to RGB"
    x = (bgr - np.float32([123.675, 116.28, 103.53])) * (1.0 / np.float32([58.395, 57.12, 57.375]))
    with torch.no_grad():
        scores = uniformer_reference(state, torch.from_numpy(x.transpose(2, 0, 1)[None].copy()))
    scores = F.interpolate(scores, size=(height, width), mode="bilinear", align_corners=False)
    labels = scores[0].argmax(0).numpy()
    return scores, ADE20K_PALETTE[labels], labels


def test_full_size_module_has_the_checkpoints_names_and_shapes():
    with torch.device("meta"):
        net = UperNetUniFormer()
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert shapes == checkpoint_shapes(**REAL)
    weights = sum(v.numel() for k, v in net.state_dict().items() if not k.endswith(("running_var", "_mean", "tracked")))
    assert 51_000_000 < weights < 52_000_000  # UperNet + UniFormer-S: 52M in the UniFormer paper; a 197 MiB file
    assert net.backbone.blocks3[0].attn.heads == 5 and net.backbone.blocks4[0].attn.heads == 8  # 64 per head


def test_palette_is_mmsegs_ade20k_palette_and_module_is_built_in():
    assert hashlib.sha256(ADE20K_PALETTE.astype(np.uint8).tobytes()).hexdigest() == MMSEG_ADE_PALETTE_SHA256
    module = find_module("segmentation")  # the extension's old label
    assert module.name == "seg_ufade20k" and module.annotator and "seg_ufade20k" not in NEEDS_WEIGHTS
    assert module_params(module) == (512, None, None)


def test_input_size_is_mmcvs_keep_ratio_rescale_to_2048_by_512():
    assert input_size(64, 64) == (512, 512)
    assert input_size(512, 768) == (512, 768)
    assert input_size(1024, 1536) == (512, 768)
    assert input_size(64, 320) == (410, 2048)  # 5:1: the long side's 2048 binds (6.4×; 409.6 rounds up)
    assert input_size(600, 900) == (512, 768)


def test_map_is_the_reference_classes_in_the_ade20k_palette(uniformer):
    state, folder = uniformer
    image = _picture(64, 64)  # res 64: no scaling, no padding; the network sees 512×512
    made = preprocess("seg_ufade20k", image, 64)
    scores, expected, labels = _expected(state, image)
    assert made.shape == (64, 64, 3)
    assert (made == expected).all(axis=2).mean() > 0.999  # an argmax near a tie may flip
    assert len(np.unique(labels)) >= 3  # several classes painted
    ours = upernet_scores(load_upernet(folder / WEIGHTS), image)  # on the CPU, as the reference
    assert torch.allclose(ours, scores, atol=1e-4, rtol=1e-4)


def test_a_wide_picture_is_scaled_to_the_2048_long_side_and_cropped(uniformer):
    state, _ = uniformer
    image = _picture(40, 200)  # res 64: 64×320, padded to 64×320; the network sees 410×2048
    made = preprocess("seg_ufade20k", image, 64)
    scaled = cv2.resize(image, (320, 64), interpolation=cv2.INTER_CUBIC)
    _, expected, _ = _expected(state, scaled)
    assert made.shape == (64, 320, 3)
    assert (made == expected).all(axis=2).mean() > 0.999


def test_a_checkpoint_without_batch_counters_loads_and_other_weights_are_one_line(uniformer):
    state, folder = uniformer
    bare = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    torch.save({"state_dict": bare}, folder / WEIGHTS)
    assert preprocess("seg_ufade20k", _picture(64, 64), 64).shape == (64, 64, 3)
    torch.save({"state_dict": {k: v for k, v in state.items() if "fpn_convs.1" not in k}}, folder / WEIGHTS)
    with pytest.raises(ValueError, match="upernet_global_small.pth is not seg_ufade20k") as refused:
        preprocess("seg_ufade20k", _picture(64, 64), 64)
    assert "\n" not in str(refused.value) and len(str(refused.value)) < 200


def test_offline_without_the_checkpoint_is_one_line(tmp_path, monkeypatch):
    line = offline_refusal(tmp_path / "empty", monkeypatch, "seg_ufade20k", _picture(64, 64), 64)
    assert "ControlNet/annotators/uniformer/upernet_global_small.pth" in line
    assert "lllyasviel/Annotators" in line and "offline" in line
