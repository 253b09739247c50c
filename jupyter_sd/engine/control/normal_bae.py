"""``normal_bae``: Bae et al.'s surface-normal network (``scannet.pt``), as sd-webui-controlnet's normalbae annotator.

The network (NNET, the "BN" architecture) is an EfficientNet-B5 encoder (``tf_efficientnet_b5_ap``: TensorFlow
"same" padding, batch norm eps 1e-3, swish, squeeze-excite) and a decoder that upsamples the 1/32 features through
four skip connections and refines its normals from 1/8 to full resolution with per-pixel MLPs (1×1 convolutions).
Written here as plain torch modules whose parameter names are the published file's, the widths and depths read
from the file's tensors. The map: the picture scaled to 0..1 and normalized with ImageNet's mean and std; the
finest output's three normal channels mapped from −1..1 to 0..255.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)
"""The stride of each EfficientNet stage's first block (the file does not say them)."""
SKIPS = (0, 1, 2, 4)
"""The stages whose outputs the decoder joins (1/2, 1/4, 1/8, 1/16), besides the 1/32 head convolution."""
_ENCODER = "encoder.original_model."
_MEAN = np.array([0.485, 0.456, 0.406])
_STD = np.array([0.229, 0.224, 0.225])


def same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """TensorFlow's "same" padding of `x` for a `kernel`×`kernel` convolution of `stride` (the extra pixel last)."""
    pads = []
    for size in (x.shape[3], x.shape[2]):
        total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class SameConv(nn.Conv2d):
    """A convolution with TensorFlow's "same" padding."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The convolution of `x` padded as TensorFlow pads."""
        return F.conv2d(
            same_pad(x, self.kernel_size[0], self.stride[0]), self.weight, self.bias, self.stride, 0, 1, self.groups
        )


def _conv(weight: torch.Tensor, stride: int = 1, bias: bool = False, depthwise: bool = False) -> SameConv:
    out_ch, in_ch, kernel = weight.shape[0], weight.shape[1], weight.shape[2]
    groups = out_ch if depthwise else 1
    return SameConv(in_ch * groups, out_ch, kernel, stride, groups=groups, bias=bias)


def _bn(state: dict[str, torch.Tensor], key: str) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(state[key + ".weight"].shape[0], eps=1e-3)


class SqueezeExcite(nn.Module):
    """The channels scaled by a sigmoid gate computed from their means."""

    def __init__(self, state: dict[str, torch.Tensor], key: str) -> None:
        super().__init__()
        self.conv_reduce = _conv(state[key + ".conv_reduce.weight"], bias=True)
        self.conv_expand = _conv(state[key + ".conv_expand.weight"], bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`x` with each channel scaled by its gate."""
        gate = self.conv_expand(F.silu(self.conv_reduce(x.mean((2, 3), keepdim=True))))
        return x * torch.sigmoid(gate)


class Block(nn.Module):
    """An inverted residual block (``conv_pw`` expansion first) or a depthwise-separable one (without it)."""

    def __init__(self, state: dict[str, torch.Tensor], key: str, stride: int) -> None:
        super().__init__()
        self.expands = key + ".conv_pwl.weight" in state
        if self.expands:
            self.conv_pw, self.bn1 = _conv(state[key + ".conv_pw.weight"]), _bn(state, key + ".bn1")
            self.conv_dw = _conv(state[key + ".conv_dw.weight"], stride, depthwise=True)
            self.bn2 = _bn(state, key + ".bn2")
            self.conv_pwl, self.bn3 = _conv(state[key + ".conv_pwl.weight"]), _bn(state, key + ".bn3")
            out_ch, in_ch = self.conv_pwl.out_channels, self.conv_pw.in_channels
        else:
            self.conv_dw = _conv(state[key + ".conv_dw.weight"], stride, depthwise=True)
            self.bn1 = _bn(state, key + ".bn1")
            self.conv_pw, self.bn2 = _conv(state[key + ".conv_pw.weight"]), _bn(state, key + ".bn2")
            out_ch, in_ch = self.conv_pw.out_channels, self.conv_dw.in_channels
        self.se = SqueezeExcite(state, key + ".se")
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block on `x` (plus `x` where the shapes allow)."""
        if self.expands:
            h = F.silu(self.bn2(self.conv_dw(F.silu(self.bn1(self.conv_pw(x))))))
            h = self.bn3(self.conv_pwl(self.se(h)))
        else:
            h = self.bn2(self.conv_pw(self.se(F.silu(self.bn1(self.conv_dw(x))))))
        return h + x if self.residual else h


class EfficientNet(nn.Module):
    """The encoder: stem, seven stages of blocks, the head convolution; it gives the decoder's five features."""

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.conv_stem, self.bn1 = _conv(state["conv_stem.weight"], 2), _bn(state, "bn1")
        counts: dict[int, int] = {}
        for key in state:
            found = re.match(r"blocks\.(\d+)\.(\d+)\.", key)
            if found:
                stage, block = int(found[1]), int(found[2])
                counts[stage] = max(counts.get(stage, 0), block + 1)
        if sorted(counts) != list(range(len(STAGE_STRIDES))):
            raise ValueError(f"EfficientNet needs {len(STAGE_STRIDES)} stages, the file has {len(counts)}")
        self.blocks = nn.ModuleList(
            nn.Sequential(*(Block(state, f"blocks.{s}.{b}", stride if b == 0 else 1) for b in range(counts[s])))
            for s, stride in enumerate(STAGE_STRIDES)
        )
        self.conv_head, self.bn2 = _conv(state["conv_head.weight"]), _bn(state, "bn2")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The stage outputs at 1/2, 1/4, 1/8 and 1/16, and the head convolution at 1/32 (before its norm)."""
        x = F.silu(self.bn1(self.conv_stem(x)))
        features = []
        for stage in self.blocks:
            x = stage(x)
            features.append(x)
        return [features[i] for i in SKIPS] + [self.conv_head(x)]


class Encoder(nn.Module):
    """The file's ``encoder``: its EfficientNet as ``original_model``."""

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.original_model = EfficientNet(state)


class UpSample(nn.Module):
    """The coarser features resized (bilinear, corners aligned) to the skip's, joined, two 3×3 conv-BN-LeakyReLU."""

    def __init__(self, state: dict[str, torch.Tensor], key: str) -> None:
        super().__init__()
        first, second = state[key + "._net.0.weight"], state[key + "._net.3.weight"]
        self._net = nn.Sequential(
            nn.Conv2d(first.shape[1], first.shape[0], 3, padding=1),
            nn.BatchNorm2d(first.shape[0]),
            nn.LeakyReLU(),
            nn.Conv2d(second.shape[1], second.shape[0], 3, padding=1),
            nn.BatchNorm2d(second.shape[0]),
            nn.LeakyReLU(),
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """`x` brought to `skip`'s size, joined to it and convolved."""
        up = F.interpolate(x, size=skip.shape[2:], mode="bilinear", align_corners=True)
        return self._net(torch.cat([up, skip], dim=1))


def _mlp(state: dict[str, torch.Tensor], key: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in (0, 2, 4, 6):
        weight = state[f"{key}.{i}.weight"]
        layers += [nn.Conv1d(weight.shape[1], weight.shape[0], 1), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def norm_normalize(out: torch.Tensor) -> torch.Tensor:
    """The first three channels made a unit vector, the fourth (κ) ``elu + 1.01``."""
    normal, kappa = out[:, :3], out[:, 3:]
    normal = normal / (torch.sqrt((normal**2).sum(1, keepdim=True)) + 1e-10)
    return torch.cat([normal, F.elu(kappa) + 1.01], dim=1)


class Decoder(nn.Module):
    """Features → normals at 1/8, refined at 1/4, 1/2 and full resolution (every pixel, as at test time)."""

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        super().__init__()
        conv2, res8 = state["conv2.weight"], state["out_conv_res8.weight"]
        self.conv2 = nn.Conv2d(conv2.shape[1], conv2.shape[0], 1)
        self.up1, self.up2 = UpSample(state, "up1"), UpSample(state, "up2")
        self.up3, self.up4 = UpSample(state, "up3"), UpSample(state, "up4")
        self.out_conv_res8 = nn.Conv2d(res8.shape[1], res8.shape[0], 3, padding=1)
        self.out_conv_res4, self.out_conv_res2 = _mlp(state, "out_conv_res4"), _mlp(state, "out_conv_res2")
        self.out_conv_res1 = _mlp(state, "out_conv_res1")

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """The finest normals and κ (1×4×H×W) from the encoder's five features."""
        block0, block1, block2, block3, block4 = features
        d2 = self.up2(self.up1(self.conv2(block4), block3), block2)
        d3 = self.up3(d2, block1)
        d4 = self.up4(d3, block0)
        out = norm_normalize(self.out_conv_res8(d2))
        for feature, mlp in ((d2, self.out_conv_res4), (d3, self.out_conv_res2), (d4, self.out_conv_res1)):
            joined = torch.cat(
                [
                    F.interpolate(feature, scale_factor=2, mode="bilinear", align_corners=True),
                    F.interpolate(out, scale_factor=2, mode="bilinear", align_corners=True),
                ],
                dim=1,
            )
            batch, channels, height, width = joined.shape
            out = norm_normalize(mlp(joined.view(batch, channels, -1))).view(batch, -1, height, width)
        return out


class NormalBae(nn.Module):
    """NNET: ``encoder`` and ``decoder``; the finest normals and their κ (1×4×H×W)."""

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        super().__init__()
        encoder = {k.removeprefix(_ENCODER): v for k, v in state.items() if k.startswith(_ENCODER)}
        self.encoder = Encoder(encoder)
        self.decoder = Decoder({k.removeprefix("decoder."): v for k, v in state.items() if k.startswith("decoder.")})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """NNET on `x` (normalized, sides multiples of 32)."""
        return self.decoder(self.encoder.original_model(x))


def load_normal_bae(path: Path) -> NormalBae:
    """NNET with the weights of `path` (``scannet.pt``: its ``model`` entry, ``module.`` prefixes dropped)."""
    from .edge_nets import load_model_entry

    return load_model_entry(path, NormalBae, "normal_bae")  # type: ignore[return-value]


def bae_normal_map(net: NormalBae, image: np.ndarray) -> np.ndarray:
    """The normal map of `image` (H×W×3 uint8, sides multiples of 32): x, y, z from −1..1 to 0..255."""
    parameter = next(net.parameters())
    x = ((image.astype(np.float64) / 255.0 - _MEAN) / _STD).astype(np.float32).transpose(2, 0, 1)[None]
    with torch.no_grad():
        normal = net(torch.from_numpy(np.ascontiguousarray(x)).to(parameter.device, parameter.dtype))[0, :3]
    normal = ((normal.float() + 1) * 0.5).clip(0, 1).permute(1, 2, 0).cpu().numpy()
    return (normal * 255.0).clip(0, 255).astype(np.uint8)
