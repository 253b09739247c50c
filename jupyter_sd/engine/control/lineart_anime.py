"""``lineart_anime``: the anime lineart network (``netG.pth``, a pix2pix U-Net) and its map, as sd-webui-controlnet.

The U-Net nests one skip block per down step (eight for ``netG.pth``): each block is a stride-2 4×4 convolution
down, the inner block, a transposed convolution up, instance norm without parameters, and the block's input
concatenated to its output (after the block's leaky ReLU, which the published code applies in place). Parameter
names are the published file's (``model.model.1.model.1.weight`` …), a ``module.`` prefix dropped. The picture is
resized (bicubic) to multiples of 256, given in -1..1, and the output brought back to 0..255 at the picture's size;
the preprocessor then inverts it (white lines).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn


class _SkipBlock(nn.Module):
    def __init__(self, outer: int, inner: int, cin: int | None, sub: nn.Module | None, outermost: bool = False):
        super().__init__()
        self.outermost = outermost
        down = nn.Conv2d(cin or outer, inner, 4, 2, 1)
        if outermost:
            layers = [down, sub, nn.ReLU(), nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1), nn.Tanh()]
        elif sub is None:  # innermost: no norm at 1×1, no inner block
            layers = [nn.LeakyReLU(0.2), down, nn.ReLU(), nn.ConvTranspose2d(inner, outer, 4, 2, 1), _norm(outer)]
        else:
            up = nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1)
            layers = [nn.LeakyReLU(0.2), down, _norm(inner), sub, nn.ReLU(), up, _norm(outer)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        # the published network's first LeakyReLU works in place, so its skip connection carries leaky(x), not x
        return torch.cat([F.leaky_relu(x, 0.2), self.model(x)], 1)


def _norm(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class AnimeLineartNet(nn.Module):
    """The U-Net generator: `downs` halvings (8 in ``netG.pth``), widths `width`·1, 2, 4, then 8 to the bottom."""

    def __init__(self, width: int = 64, downs: int = 8) -> None:
        super().__init__()
        self.downs = downs
        block = _SkipBlock(width * 8, width * 8, None, None)
        for _ in range(downs - 5):
            block = _SkipBlock(width * 8, width * 8, None, block)
        for factor in (4, 2, 1):
            block = _SkipBlock(width * factor, width * factor * 2, None, block)
        self.model = _SkipBlock(1, width, 3, block, outermost=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`x`: -1..1 RGB, sides multiples of 2^downs; the line map in -1..1 (1 where there is no line)."""
        return self.model(x)

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> AnimeLineartNet:
        """The network `state` (``netG.pth``'s tensors, ``module.`` prefixed or not) fits, loaded strictly."""
        state = {key.replace("module.", ""): value for key, value in state.items()}
        downs = max(key.count("model.") for key in state) - 1
        net = cls(int(state["model.model.0.weight"].shape[0]), downs)
        net.load_state_dict(state, strict=True)
        return net.eval().requires_grad_(False)


def anime_lines(net: Any, image: np.ndarray) -> np.ndarray:
    """The network's line map of `image` (H×W×3 uint8) at the picture's size, 0..255 (white background)."""
    import cv2

    height, width = image.shape[:2]
    side = 2**net.downs  # 256 for netG.pth, as sd-webui-controlnet has it
    size = (side * -(-width // side), side * -(-height // side))
    scaled = cv2.resize(image, size, interpolation=cv2.INTER_CUBIC)
    device = next(net.parameters()).device
    pixels = torch.from_numpy(scaled).float().to(device).permute(2, 0, 1)[None] / 127.5 - 1.0
    with torch.no_grad():
        line = (net(pixels)[0, 0] * 127.5 + 127.5).float().cpu().numpy()
    return cv2.resize(line, (width, height), interpolation=cv2.INTER_CUBIC).clip(0, 255).astype(np.uint8)
