"""densepose / densepose_parula on a tiny TorchScript model with the published export's signature (a 3×H×W uint8
picture in; boxes, coarse and fine segmentations, U and V out): the map against sd-webui-controlnet's painting
written out here as a formula (parts by the boxes, part × 255/24 through the colour map, viridis's background).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from helpers.annotator_nets import annotator_files, offline_refusal
from torch import nn

from jupyter_sd.engine.control.modules import find_module, module_params
from jupyter_sd.engine.control.preprocessors import preprocess

BOXES = [[4.7, 6.2, 40.9, 50.5], [20.3, 10.0, 63.0, 60.8], [44.5, 40.2, 80.0, 90.0], [30.0, 30.0, 30.6, 45.0]]
"""x0, y0, x1, y1: two people overlapping, one reaching out of a 64×64 picture, one less than a pixel wide."""


class TinyDensePose(nn.Module):
    """Four people whose segmentations come from a 1×1 conv of the pooled picture plus fixed noise, at 8×8."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(5)
        self.conv = nn.Conv2d(3, 27, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(27, 3, 1, 1, generator=generator))
            self.conv.bias.copy_(torch.randn(27, generator=generator) * 0.1)
        self.register_buffer("noise", torch.randn(len(BOXES), 27, 8, 8, generator=generator) * 2)
        self.register_buffer("boxes", torch.tensor(BOXES))

    def forward(
        self, image: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        x = F.adaptive_avg_pool2d(image.float()[None] / 255.0, (8, 8))
        out = self.conv(x) + self.noise
        coarse, fine = out[:, :2] + 0.5, out[:, 2:]
        return self.boxes, coarse, fine, fine * 0.1, fine * 0.2


def _picture(height, width):
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 255 // width, y * 255 // height, (3 * x + 2 * y) % 256], axis=2).astype(np.uint8)
    cv2.circle(image, (width // 3, height // 2), height // 4, (230, 40, 90), -1)
    return image


@pytest.fixture()
def densepose(tmp_path):
    net = TinyDensePose().eval()
    with annotator_files(tmp_path / "models", {}) as folder:
        (folder / "densepose").mkdir(parents=True)
        torch.jit.save(torch.jit.script(net), str(folder / "densepose" / "densepose_r50_fpn_dl.torchscript"))
        yield net, folder


def _lut(colormap):
    """OpenCV's colour map as an RGB table of 256 colours."""
    return cv2.applyColorMap(np.arange(256, dtype=np.uint8)[None], colormap)[0, :, ::-1]


def _expected(net, image, colormap):
    """The extension's painting, person by person, written as a formula on the tiny model's raw outputs."""
    with torch.no_grad():
        boxes, coarse, fine, _, _ = net(torch.from_numpy(image).permute(2, 0, 1))
    height, width = image.shape[:2]
    lut = _lut(cv2.COLORMAP_VIRIDIS if colormap == "viridis" else cv2.COLORMAP_PARULA)
    out = np.zeros((height, width, 3), dtype=np.uint8)
    for i, (x0, y0, x1, y1) in enumerate(boxes.numpy()):
        x, y, w, h = int(x0), int(y0), int(np.float32(x1 - x0)), int(np.float32(y1 - y0))
        size = (max(h, 1), max(w, 1))
        body = F.interpolate(coarse[i : i + 1], size, mode="bilinear").argmax(1)[0].numpy() > 0
        parts = F.interpolate(fine[i : i + 1], size, mode="bilinear").argmax(1)[0].numpy() * body
        for r in range(size[0]):
            for c in range(size[1]):
                if w > 0 and h > 0 and parts[r, c] and 0 <= y + r < height and 0 <= x + c < width:
                    out[y + r, x + c] = lut[int(parts[r, c] * 255 / 24)]
    if colormap == "viridis":
        for channel, value in enumerate((68, 1, 84)):
            out[:, :, channel][out[:, :, channel] == 0] = value
    return out


def test_densepose_modules_are_built_in_with_the_resolution_slider():
    for name in ("densepose", "densepose_parula"):
        module = find_module(name)
        assert module.annotator and module_params(module) == (512, None, None)


@pytest.mark.parametrize(("module", "colormap"), [("densepose", "viridis"), ("densepose_parula", "parula")])
def test_densepose_map_is_the_extensions_painting_of_the_models_parts(densepose, module, colormap):
    net, _ = densepose
    image = _picture(64, 64)  # a multiple of 64: no resize, no padding
    made = preprocess(module, image, 64)
    expected = _expected(net, image, colormap)
    assert made.shape == (64, 64, 3)
    assert (made == expected).all()
    painted = (expected != (np.array([68, 1, 84]) if colormap == "viridis" else 0)).any(axis=2)
    assert 0.2 < painted.mean() < 0.9  # people and background both present
    assert len(np.unique(made.reshape(-1, 3), axis=0)) > 8  # many parts, many colours


def test_viridis_background_is_viridis_at_zero_and_parula_keeps_black(densepose):
    assert tuple(_lut(cv2.COLORMAP_VIRIDIS)[0]) == (68, 1, 84)
    image = _picture(64, 64)
    viridis, parula = preprocess("densepose", image, 64), preprocess("densepose_parula", image, 64)
    background = (parula == 0).all(axis=2)
    assert background.any() and (viridis[background] == (68, 1, 84)).all()


def test_a_file_that_is_not_torchscript_is_refused_in_one_line(densepose):
    _, folder = densepose
    (folder / "densepose" / "densepose_r50_fpn_dl.torchscript").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a TorchScript export of DensePose") as refused:
        preprocess("densepose", _picture(64, 64), 64)
    assert "\n" not in str(refused.value) and len(str(refused.value)) < 200


def test_the_published_files_torchvision_ops_missing_is_one_line(densepose, monkeypatch):
    def load(*_args, **_kwargs):
        raise RuntimeError("Unknown builtin op: torchvision::nms.\nCould not find any similar ops to torchvision::nms.")

    monkeypatch.setattr(torch.jit, "load", load)
    with pytest.raises(ValueError, match="needs torchvision's ops") as refused:
        preprocess("densepose", _picture(64, 64), 64)
    assert "\n" not in str(refused.value) and len(str(refused.value)) < 200


def test_offline_without_the_torchscript_file_is_one_line(tmp_path, monkeypatch):
    line = offline_refusal(tmp_path / "empty", monkeypatch, "densepose_parula", _picture(64, 64), 64)
    assert "ControlNet/annotators/densepose/densepose_r50_fpn_dl.torchscript" in line
    assert "LayerNorm/DensePose-TorchScript-with-hint-image" in line
