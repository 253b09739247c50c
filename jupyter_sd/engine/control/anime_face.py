"""``seg_anime_face``: the anime face segmentation U-Net (``UNet.pth``), as sd-webui-controlnet's annotator.

The network (siyeong0's Anime-Face-Segmentation) is a U-Net on a MobileNetV2 encoder: ``en_block0`` … ``en_block4``
hold torchvision's ``mobilenet_v2().features[0..16]`` (the 3×3 stem, then inverted residuals: an optional 1×1
expansion, a depthwise 3×3, a 1×1 projection, each batch-normed, ReLU6 after the first two, the input added back
where the stride is 1 and the width is kept); each block's first layer halves the size. The decoder's
``de_block4`` … ``de_block1`` are nearest ×2, a 3×3 conv, an instance norm (no parameters), LeakyReLU 0.1
(and a dropout, idle in eval); each output is resized (bilinear, corners aligned) to the next skip and
concatenated with it; ``de_block0`` ends in a softmax over the 7 classes. Written here as plain torch modules whose
parameter names are the published file's, the widths and block counts read from its tensors.

The map (``anime_face_map``): the padded picture scaled so its short side is 512 (PIL bicubic, as torchvision's
``Resize(512)``; the long side truncated), 0..1 RGB, each pixel painted with its most likely class's colour
(``PALETTE``). The map stays at that scale, as the extension leaves it.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

PALETTE = np.array(
    [(255, 255, 0), (0, 0, 255), (255, 0, 0), (255, 255, 255), (0, 255, 0), (0, 255, 255), (255, 0, 255)],
    dtype=np.uint8,
)
"""The classes' RGB colours: background, hair, eye, mouth, face, skin, clothes (the extension's table)."""
SIZE = 512
"""The short side the network sees."""


def _conv(weight: torch.Tensor, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    groups = weight.shape[0] if weight.shape[1] == 1 and weight.shape[2] > 1 else 1
    kernel = weight.shape[2]
    return nn.Conv2d(weight.shape[1] * groups, weight.shape[0], kernel, stride, kernel // 2, groups=groups, bias=bias)


def _conv_bn_relu6(state: dict[str, torch.Tensor], key: str, stride: int = 1) -> nn.Sequential:
    """A ``Conv2dNormActivation`` (torchvision's): ``key.0`` conv (no bias), ``key.1`` batch norm, ReLU6."""
    weight = state[key + ".0.weight"]
    return nn.Sequential(_conv(weight, stride), nn.BatchNorm2d(weight.shape[0]), nn.ReLU6())


class InvertedResidual(nn.Module):
    """MobileNetV2's block: ``conv`` = [1×1 expansion,] depthwise 3×3 (the stride here), 1×1 projection, BN."""

    def __init__(self, state: dict[str, torch.Tensor], key: str, stride: int) -> None:
        super().__init__()
        expanded = key + ".conv.3.weight" in state
        layers = [_conv_bn_relu6(state, key + ".conv.0")] if expanded else []
        first = state[key + ".conv.0.0.weight"]
        layers.append(_conv_bn_relu6(state, key + (".conv.1" if expanded else ".conv.0"), stride))
        projection = state[key + (".conv.2.weight" if expanded else ".conv.1.weight")]
        layers += [_conv(projection), nn.BatchNorm2d(projection.shape[0])]
        self.conv = nn.Sequential(*layers)
        width_in = first.shape[1] if expanded else first.shape[0]
        self.residual = stride == 1 and width_in == projection.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block on `x`, plus `x` where the block keeps its size and width."""
        return x + self.conv(x) if self.residual else self.conv(x)


def _encoder_block(state: dict[str, torch.Tensor], key: str) -> nn.Sequential:
    """``en_blockN``: its layers in order, the first halving the size (``en_block0``'s first is the stem)."""
    count = 1 + max(int(m[1]) for k in state if (m := re.match(re.escape(key) + r"\.(\d+)\.", k)))
    layers: list[nn.Module] = []
    for index in range(count):
        stride = 2 if index == 0 else 1
        if f"{key}.{index}.conv.0.0.weight" in state:
            layers.append(InvertedResidual(state, f"{key}.{index}", stride))
        else:
            layers.append(_conv_bn_relu6(state, f"{key}.{index}", stride))
    return nn.Sequential(*layers)


def _decoder_block(state: dict[str, torch.Tensor], key: str, last: bool) -> nn.Sequential:
    """``de_blockN``: nearest ×2, 3×3 conv, then InstanceNorm/LeakyReLU/Dropout, or the softmax for the last."""
    conv = _conv(state[key + ".1.weight"], bias=True)
    up = nn.Upsample(scale_factor=2, mode="nearest")
    if last:
        return nn.Sequential(up, conv, nn.Softmax(dim=1))
    width = conv.out_channels
    return nn.Sequential(up, conv, nn.InstanceNorm2d(width), nn.LeakyReLU(0.1), nn.Dropout(0.2))


class AnimeFaceUNet(nn.Module):
    """The U-Net: ``en_block0..4`` (MobileNetV2's features 0–16) and ``de_block4..0``."""

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        super().__init__()
        for n in range(5):
            setattr(self, f"en_block{n}", _encoder_block(state, f"en_block{n}"))
            setattr(self, f"de_block{n}", _decoder_block(state, f"de_block{n}", last=n == 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The 7 classes' probabilities (1×7×H×W) for `x` (1×3×H×W, 0..1 RGB)."""
        skips = []
        for n in range(5):
            x = getattr(self, f"en_block{n}")(x)
            skips.append(x)
        h = skips[4]
        for n in (4, 3, 2, 1):
            up = getattr(self, f"de_block{n}")(h)
            skip = skips[n - 1]
            h = torch.cat((F.interpolate(up, size=skip.shape[2:], mode="bilinear", align_corners=True), skip), 1)
        return self.de_block0(h)


def load_anime_face(path: Path) -> AnimeFaceUNet:
    """The U-Net with the weights of `path` (``UNet.pth``; ``module.`` dropped from names, as the extension does)."""
    from .edge_nets import read_state_dict

    state = {k.replace("module.", ""): v for k, v in read_state_dict(path).items()}
    try:
        net = AnimeFaceUNet(state)
        net.load_state_dict(state)
    except (KeyError, RuntimeError, IndexError, ValueError) as error:
        first = str(error).strip().splitlines()[0][:80] if str(error).strip() else type(error).__name__
        raise ValueError(f"controlnet: {path.name} is not seg_anime_face weights ({first})") from None
    return net.eval()


def anime_face_input(image: np.ndarray) -> np.ndarray:
    """`image` (H×W×3 uint8) as the network sees it: short side 512 (PIL bicubic), 1×3×h×w float32 in 0..1."""
    from PIL import Image

    height, width = image.shape[:2]
    short, long = sorted((height, width))
    size = (SIZE, int(SIZE * long / short))
    new_h, new_w = size if height <= width else size[::-1]
    picture = Image.fromarray(image)
    if (new_h, new_w) != (height, width):
        picture = picture.resize((new_w, new_h), Image.Resampling.BICUBIC)
    return (np.asarray(picture, dtype=np.float32) / 255.0).transpose(2, 0, 1)[None]


def anime_face_map(net: AnimeFaceUNet, image: np.ndarray) -> np.ndarray:
    """The segmentation map of `image` (H×W×3 uint8): h×w×3 uint8 at the network's scale, a colour per class."""
    parameter = next(net.parameters())
    x = torch.from_numpy(np.ascontiguousarray(anime_face_input(image))).to(parameter.device, parameter.dtype)
    with torch.no_grad():
        classes = net(x)[0].float().cpu().numpy()
    return PALETTE[np.argmax(classes, axis=0)]
