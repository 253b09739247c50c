"""Upscaler weights made by hand in the layouts downloaded files use (ESRGAN, Real-ESRGAN RRDB, compact).

An "identity" RRDB network (the first and last convolutions pass channels through, the trunk adds nothing, the
upsampling convolutions are identities) computes exactly nearest-neighbour ×4.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

FEATURES, GROWTH = 4, 2


def _identity_conv(out_channels: int, in_channels: int) -> torch.Tensor:
    weight = torch.zeros(out_channels, in_channels, 3, 3)
    for i in range(min(out_channels, in_channels)):
        weight[i, i, 1, 1] = 1.0
    return weight


def rrdbnet_weights(identity: bool, blocks: int = 1, ups: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    """BasicSR's RRDBNet layout (Real-ESRGAN's files): conv_first, body.N.rdbK.convJ, conv_body, conv_upI, …"""
    generator = torch.Generator().manual_seed(seed)

    def conv(out_channels: int, in_channels: int, ident: bool = False) -> torch.Tensor:
        if identity:
            return _identity_conv(out_channels, in_channels) if ident else torch.zeros(out_channels, in_channels, 3, 3)
        return torch.randn(out_channels, in_channels, 3, 3, generator=generator) * 0.1

    weights = {"conv_first.weight": conv(FEATURES, 3, True), "conv_first.bias": torch.zeros(FEATURES)}
    for block in range(blocks):
        for rdb in (1, 2, 3):
            for j in range(1, 6):
                out_channels = GROWTH if j < 5 else FEATURES
                weights[f"body.{block}.rdb{rdb}.conv{j}.weight"] = conv(out_channels, FEATURES + (j - 1) * GROWTH)
                weights[f"body.{block}.rdb{rdb}.conv{j}.bias"] = torch.zeros(out_channels)
    names = ["conv_body"] + [f"conv_up{i}" for i in range(1, ups + 1)] + ["conv_hr"]
    for name in names:
        weights[f"{name}.weight"] = conv(FEATURES, FEATURES, name != "conv_body")
        weights[f"{name}.bias"] = torch.zeros(FEATURES)
    weights["conv_last.weight"] = conv(3, FEATURES, True)
    weights["conv_last.bias"] = torch.zeros(3)
    return weights


def to_original_esrgan(weights: dict[str, torch.Tensor], blocks: int = 1) -> dict[str, torch.Tensor]:
    """The same weights in ESRGAN's original layout (4x-UltraSharp and friends): model.0 … model.10."""
    names = {"conv_first": "model.0", "conv_up1": "model.3", "conv_up2": "model.6", "conv_hr": "model.8"}
    names.update({"conv_last": "model.10", "conv_body": f"model.1.sub.{blocks}"})
    out = {}
    for key, value in weights.items():
        head, kind = key.rsplit(".", 1)
        if head.startswith("body."):
            _, block, rdb, conv = head.split(".")
            out[f"model.1.sub.{block}.RDB{rdb[-1]}.{conv}.0.{kind}"] = value
        else:
            out[f"{names[head]}.{kind}"] = value
    return out


def srvgg_weights(convs: int = 2, scale: int = 4) -> dict[str, torch.Tensor]:
    """Real-ESRGAN's compact network (realesr-general-x4v3's layout); the last conv zero, so it adds nothing to
    the nearest-neighbour upscale it always adds."""
    generator = torch.Generator().manual_seed(1)
    weights = {"body.0.weight": torch.randn(FEATURES, 3, 3, 3, generator=generator), "body.0.bias": torch.zeros(4)}
    index = 1
    for _ in range(convs):
        weights[f"body.{index}.weight"] = torch.full((FEATURES,), 0.25)
        weights[f"body.{index + 1}.weight"] = torch.randn(FEATURES, FEATURES, 3, 3, generator=generator)
        weights[f"body.{index + 1}.bias"] = torch.zeros(FEATURES)
        index += 2
    weights[f"body.{index}.weight"] = torch.full((FEATURES,), 0.25)
    weights[f"body.{index + 1}.weight"] = torch.zeros(3 * scale * scale, FEATURES, 3, 3)
    weights[f"body.{index + 1}.bias"] = torch.zeros(3 * scale * scale)
    return weights


def picture(width: int = 20, height: int = 12, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))
