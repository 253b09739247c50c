"""``mlsd``: M-LSD's straight lines (``mlsd_large_512_fp32.pth``, MobileV2_MLSD_Large), as sd-webui-controlnet.

The network is NAVER's M-LSD large: a MobileNetV2 backbone cut after its 96-channel blocks (TFLite padding: a
stride-2 convolution pads right and down by one), then four fuse-and-refine decoder steps up to half the input's
size, and a 9-channel head (the 16-channel last convolution less its first 7): a centre map and each centre's
start and end displacements. Parameter names are the published file's (``backbone.features.0.0.weight``,
``block15.conv1.0.weight`` …). The padded RGB picture goes in with a fourth channel of ones, as ``x/127.5 − 1``;
the centres are the sigmoid map's 3×3 local maxima, the best 200 kept; a centre whose score passes Threshold A
(value) and whose segment is longer than Threshold B (distance, in half-size pixels) gives a line, doubled to the
picture's size and drawn 1 px white on black.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

BACKBONE = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1))
"""MobileNetV2's settings as M-LSD keeps them: expansion, channels, repeats, first stride."""
TAPS = (1, 3, 6, 10, 13)
"""The backbone features the decoder takes (strides 2, 4, 8, 16, 16)."""
TOP_K = 200


class _ConvBnRelu6(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> None:
        padding = 0 if stride == 2 else (kernel - 1) // 2
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False), nn.BatchNorm2d(cout), nn.ReLU6()
        )
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (0, 1, 0, 1)) if self.stride == 2 else x)


class _InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.residual = stride == 1 and cin == cout
        layers = [_ConvBnRelu6(cin, hidden, kernel=1)] if expand != 1 else []
        layers += [_ConvBnRelu6(hidden, hidden, stride=stride, groups=hidden), nn.Conv2d(hidden, cout, 1, bias=False)]
        self.conv = nn.Sequential(*layers, nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


class _Backbone(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        features: list[nn.Module] = [_ConvBnRelu6(4, 32, stride=2)]
        cin = 32
        for expand, cout, repeats, stride in BACKBONE:
            for i in range(repeats):
                features.append(_InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
                cin = cout
        self.features = nn.Sequential(*features)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps = []
        for i, feature in enumerate(self.features):
            x = feature(x)
            if i in TAPS:
                taps.append(x)
        return taps


def _conv_bn_relu(cin: int, cout: int, kernel: int, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (kernel // 2)
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=pad, dilation=dilation), nn.BatchNorm2d(cout), nn.ReLU())


class _Fuse(nn.Module):  # BlockTypeA: both inputs to 64 channels (1×1), the deeper one upscaled 2×, concatenated
    def __init__(self, skip: int, deep: int, upscale: bool = True) -> None:
        super().__init__()
        self.conv1, self.conv2, self.upscale = _conv_bn_relu(deep, 64, 1), _conv_bn_relu(skip, 64, 1), upscale

    def forward(self, skip: torch.Tensor, deep: torch.Tensor) -> torch.Tensor:
        deep = self.conv1(deep)
        if self.upscale:
            deep = F.interpolate(deep, scale_factor=2.0, mode="bilinear", align_corners=True)
        return torch.cat((self.conv2(skip), deep), dim=1)


class _Refine(nn.Module):  # BlockTypeB: a residual 3×3, then 3×3 to 64
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = _conv_bn_relu(128, 128, 3), _conv_bn_relu(128, 64, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x) + x)


class _Head(nn.Module):  # BlockTypeC: dilated 3×3, 3×3, 1×1 to 16
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = _conv_bn_relu(64, 64, 3, dilation=5), _conv_bn_relu(64, 64, 3)
        self.conv3 = nn.Conv2d(64, 16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.conv2(self.conv1(x)))


class MlsdLarge(nn.Module):
    """M-LSD large: 4-channel picture in, 9 maps at half its size out (centre logits, 4 displacements, 4 unused)."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = _Backbone()
        self.block15, self.block16 = _Fuse(64, 96, upscale=False), _Refine()
        self.block17, self.block18 = _Fuse(32, 64), _Refine()
        self.block19, self.block20 = _Fuse(24, 64), _Refine()
        self.block21, self.block22 = _Fuse(16, 64), _Refine()
        self.block23 = _Head()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`x`: 1×4×H×W in −1..1; 1×9×H/2×W/2."""
        c1, c2, c3, c4, c5 = self.backbone(x)
        x = self.block16(self.block15(c4, c5))
        x = self.block18(self.block17(c3, x))
        x = self.block20(self.block19(c2, x))
        x = self.block22(self.block21(c1, x))
        return self.block23(x)[:, 7:]


def load_mlsd(path: Path) -> MlsdLarge:
    """The network with the tensors of ``mlsd_large_512_fp32.pth`` at `path`, loaded strictly; one line if not."""
    from .edge_nets import read_state_dict

    net, state = MlsdLarge(), read_state_dict(path)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0][:80]
        raise ValueError(f"controlnet: {path.name} is not mlsd weights ({first})") from None
    return net.eval().requires_grad_(False)


def line_centres(maps: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 200 best centres ``(y, x)`` (3×3 local maxima of the sigmoid centre map), scores, displacements.

    The displacement map is h×w×4: start x, y, end x, y, in half-size pixels from the centre.
    """
    heat = torch.sigmoid(maps[:, 0])
    heat = heat * (F.max_pool2d(heat, (3, 3), stride=1, padding=1) == heat).float()
    scores, indices = torch.topk(heat.reshape(-1), TOP_K, dim=-1, largest=True)
    width = maps.shape[3]
    centres = torch.stack((torch.floor_divide(indices, width), torch.fmod(indices, width)), dim=-1)
    displacement = maps[0, 1:5].cpu().numpy().transpose(1, 2, 0)
    return centres.cpu().numpy(), scores.cpu().numpy(), displacement


def segments(maps: torch.Tensor, value_threshold: float, distance_threshold: float) -> np.ndarray:
    """The line segments ``(x1, y1, x2, y2)`` at the picture's size from the network's maps (1×9×h×w)."""
    centres, scores, displacement = line_centres(maps)
    lengths = np.sqrt(np.sum((displacement[:, :, :2] - displacement[:, :, 2:]) ** 2, axis=-1))
    found = []
    for (y, x), score in zip(centres, scores):
        if score > value_threshold and lengths[y, x] > distance_threshold:
            dx1, dy1, dx2, dy2 = displacement[y, x, :]
            found.append([x + dx1, y + dy1, x + dx2, y + dy2])
    return 2 * np.array(found, dtype=np.float64).reshape(-1, 4)


def draw_lines(lines: np.ndarray, height: int, width: int) -> np.ndarray:
    """Segments drawn 1 px white on black (ends truncated to whole pixels): H×W uint8."""
    import cv2

    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    for line in lines:
        x1, y1, x2, y2 = (int(value) for value in line)
        cv2.line(canvas, (x1, y1), (x2, y2), [255, 255, 255], 1)
    return canvas[:, :, 0]


def network_input(image: np.ndarray) -> torch.Tensor:
    """An RGB picture with a channel of ones, 1×4×H×W in −1..1."""
    four = np.concatenate([image, np.ones([*image.shape[:2], 1])], axis=-1)
    return torch.from_numpy(four.transpose(2, 0, 1)[None].astype(np.float32) / 127.5 - 1.0)


def mlsd_map(net: Any, image: np.ndarray, value_threshold: float, distance_threshold: float) -> np.ndarray:
    """M-LSD's line map of the padded RGB picture (H×W uint8)."""
    with torch.no_grad():
        maps = net(network_input(image).to(next(net.parameters()).device)).float()
    return draw_lines(segments(maps, value_threshold, distance_threshold), *image.shape[:2])
