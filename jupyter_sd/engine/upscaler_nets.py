"""The two upscaler networks of `upscalers`, sized from their weights: RRDBNet (ESRGAN) and SRVGGNetCompact.

Written from the ESRGAN and Real-ESRGAN papers' architectures as BasicSR names their layers, so the weights
people download load as they are; ESRGAN's original ``model.N.`` layout is renamed to BasicSR's first.
Imported only when a hires pass uses an upscaler model (it imports torch).
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch
from torch import nn
from torch.nn import functional

_OLD_BODY = re.compile(r"^model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(weight|bias)$")
_OLD_CONV = re.compile(r"^model\.(\d+)\.(weight|bias)$")


class _DenseBlock(nn.Module):
    """Five 3×3 convolutions, each seeing the block's input and every earlier output; residual scaled by 0.2."""

    def __init__(self, features: int, growth: int) -> None:
        super().__init__()
        for i in range(1, 5):
            setattr(self, f"conv{i}", nn.Conv2d(features + (i - 1) * growth, growth, 3, 1, 1))
        self.conv5 = nn.Conv2d(features + 4 * growth, features, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [x]
        for i in range(1, 5):
            outputs.append(functional.leaky_relu(getattr(self, f"conv{i}")(torch.cat(outputs, 1)), 0.2))
        return self.conv5(torch.cat(outputs, 1)) * 0.2 + x


class _RRDB(nn.Module):
    """Three dense blocks in a row, with a residual around them scaled by 0.2."""

    def __init__(self, features: int, growth: int) -> None:
        super().__init__()
        self.rdb1, self.rdb2, self.rdb3 = (_DenseBlock(features, growth) for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    """ESRGAN's generator: RRDB trunk at the input size, then ×2 nearest + conv steps (``ups`` of them).

    Real-ESRGAN's ×2 and ×1 models first fold 2×2 or 4×4 pixels into channels (``unshuffle``), then go up ×4.
    """

    def __init__(self, channels: int, features: int, blocks: int, growth: int, ups: int, unshuffle: int) -> None:
        super().__init__()
        self.unshuffle = unshuffle
        self.scale = 2**ups // unshuffle
        self.conv_first = nn.Conv2d(channels * unshuffle**2, features, 3, 1, 1)
        self.body = nn.Sequential(*(_RRDB(features, growth) for _ in range(blocks)))
        self.conv_body = nn.Conv2d(features, features, 3, 1, 1)
        self.ups = ups
        for i in range(1, ups + 1):
            setattr(self, f"conv_up{i}", nn.Conv2d(features, features, 3, 1, 1))
        self.conv_hr = nn.Conv2d(features, features, 3, 1, 1)
        self.conv_last = nn.Conv2d(features, channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """A batch of RGB pictures in 0–1 → the same pictures `scale` times larger."""
        height, width = x.shape[2:]
        if self.unshuffle > 1:  # pad to a multiple of the fold, as Real-ESRGAN's own inference does
            pad_h, pad_w = (-height) % self.unshuffle, (-width) % self.unshuffle
            if pad_h or pad_w:
                x = functional.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
            x = functional.pixel_unshuffle(x, self.unshuffle)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        for i in range(1, self.ups + 1):
            up = getattr(self, f"conv_up{i}")
            feat = functional.leaky_relu(up(functional.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
        out = self.conv_last(functional.leaky_relu(self.conv_hr(feat), 0.2))
        return out[:, :, : height * self.scale, : width * self.scale]


class SRVGGNetCompact(nn.Module):
    """Real-ESRGAN's compact network: plain 3×3 convs with PReLU, a pixel shuffle, plus the nearest upscale."""

    def __init__(self, channels: int, features: int, convs: int, scale: int) -> None:
        super().__init__()
        self.scale = scale
        layers: list[nn.Module] = [nn.Conv2d(channels, features, 3, 1, 1), nn.PReLU(features)]
        for _ in range(convs):
            layers += [nn.Conv2d(features, features, 3, 1, 1), nn.PReLU(features)]
        layers.append(nn.Conv2d(features, channels * scale * scale, 3, 1, 1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """A batch of RGB pictures in 0–1 → the same pictures `scale` times larger."""
        out = functional.pixel_shuffle(self.body(x), self.scale)
        return out + functional.interpolate(x, scale_factor=self.scale, mode="nearest")


def esrgan_to_rrdbnet(weights: dict[str, Any]) -> dict[str, Any]:
    """ESRGAN's original layout (``model.0`` … ``model.N``) under BasicSR's names.

    ``model.0`` is the first conv, ``model.1.sub`` the trunk (its last entry the trunk conv), then one conv per ×2
    upsample (every third index), the HR conv and the last conv.
    """
    convs = sorted({int(m.group(1)) for key in weights if (m := _OLD_CONV.match(key))})
    if len(convs) < 3 or convs[0] != 0:
        return weights  # not the original layout after all: left for the caller to refuse
    *ups, hr, last = convs[1:]
    names = {0: "conv_first", hr: "conv_hr", last: "conv_last"}
    names.update({index: f"conv_up{i}" for i, index in enumerate(ups, 1)})
    trunk = max((int(m.group(1)) for key in weights if (m := _OLD_BODY.match(key))), default=-1) + 1
    renamed = {}
    for key, value in weights.items():
        if m := _OLD_BODY.match(key):
            block, rdb, conv, kind = m.groups()
            renamed[f"body.{block}.rdb{rdb}.conv{conv}.{kind}"] = value
        elif key.startswith(f"model.1.sub.{trunk}."):
            renamed[f"conv_body.{key.rsplit('.', 1)[1]}"] = value
        elif (m := _OLD_CONV.match(key)) and int(m.group(1)) in names:
            renamed[f"{names[int(m.group(1))]}.{m.group(2)}"] = value
        else:
            renamed[key] = value  # unknown: load_state_dict names it
    return renamed


def rrdbnet_for(weights: dict[str, Any]) -> RRDBNet:
    """An RRDBNet sized from BasicSR-layout weights (features, blocks, growth, upsamples, input fold)."""
    first = weights["conv_first.weight"]
    features, in_channels = first.shape[0], first.shape[1]
    channels = weights["conv_last.weight"].shape[0]
    blocks = 1 + max(int(key.split(".")[1]) for key in weights if key.startswith("body."))
    growth = weights["body.0.rdb1.conv1.weight"].shape[0]
    ups = sum(1 for key in weights if re.fullmatch(r"conv_up\d+\.weight", key))
    unshuffle = math.isqrt(max(1, in_channels // channels))
    return RRDBNet(channels, features, blocks, growth, ups, unshuffle)


def srvgg_for(weights: dict[str, Any]) -> SRVGGNetCompact:
    """An SRVGGNetCompact sized from its weights (``body.0`` conv … ``body.N`` conv, PReLUs between)."""
    last = max(int(key.split(".")[1]) for key in weights)
    first = weights["body.0.weight"]
    channels, features = first.shape[1], first.shape[0]
    out_channels = weights[f"body.{last}.weight"].shape[0]
    return SRVGGNetCompact(channels, features, (last - 2) // 2, math.isqrt(out_channels // channels))
