"""``lineart_anime_denoise``: MangaLineExtraction's network (``erika.pth``, "res_skip") and its map, as the extension.

A residual U-Net on the grey picture: five down stages of pre-activation residual blocks (batch norm ε 1e-3, leaky
ReLU 0.2, 3×3 convolution; 2, 3, 5, 7 and 12 blocks, 24 to 384 channels, each stage but the first ending in a stride
2), four up stages (7, 5, 3, 2 blocks; the first block of each upsamples by 2, nearest) each added to the down stage
of its size, two more blocks at 16 channels and a 1×1 to one channel. Parameter names are the published file's
(``block0.model.0.conv1.model.0.weight`` …), a ``module.`` prefix dropped. The picture goes in as 0..255 grey
(OpenCV's RGB→grey), unnormalized; the map is 255 minus the output (white lines on black).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

DOWN_REPEATS = (2, 3, 5, 7, 12)
UP_REPEATS = (7, 5, 3, 2)


def _bn_relu_conv(cin: int, cout: int, kernel: int, stride: int = 1, up: bool = False) -> nn.Sequential:
    conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2)
    layers = [nn.BatchNorm2d(cin, eps=1e-3), nn.LeakyReLU(0.2), conv]
    return nn.Sequential(*layers, *([nn.Upsample(scale_factor=2, mode="nearest")] if up else []))


class _Wrapped(nn.Module):
    """A module under ``.model`` (the published names nest every layer group so)."""

    def __init__(self, model: nn.Module | None) -> None:
        super().__init__()
        self.model = model


class _Block(nn.Module):
    """Pre-activation residual block: two BN-LeakyReLU-conv, the input added (1×1 convolved where shapes change)."""

    def __init__(self, cin: int, cout: int, stride: int = 1, up: bool = False) -> None:
        super().__init__()
        self.conv1 = _Wrapped(_bn_relu_conv(cin, cout, 3, stride, up))
        self.residual = _Wrapped(_bn_relu_conv(cout, cout, 3))
        shortcut = None
        if cin != cout or (stride != 1 and not up):  # the input projected (and upsampled) to the output's shape
            upsample = [nn.Upsample(scale_factor=2, mode="nearest")] if up else []
            shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride), *upsample)
        self.shortcut = _Wrapped(shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output: the residual branch plus the (projected) input."""
        y = self.residual.model(self.conv1.model(x))
        return y + (x if self.shortcut.model is None else self.shortcut.model(x))


def _stage(cin: int, cout: int, repeats: int, down: bool = False, up: bool = False) -> _Wrapped:
    blocks = [
        _Block(cin if i == 0 else cout, cout, 2 if down and i == repeats - 1 else 1, up and i == 0)
        for i in range(repeats)
    ]
    return _Wrapped(nn.Sequential(*blocks))


class MangaLineNet(nn.Module):
    """``res_skip``: `widths` per down stage (24…384 published), `last` the final blocks' width (16)."""

    def __init__(self, widths: tuple[int, ...] = (24, 48, 96, 192, 384), last: int = 16) -> None:
        super().__init__()
        ins = (1, *widths[:-1])
        for i, (cin, cout) in enumerate(zip(ins, widths)):
            setattr(self, f"block{i}", _stage(cin, cout, DOWN_REPEATS[i], down=i > 0))
        for i, repeats in enumerate(UP_REPEATS):
            setattr(self, f"block{5 + i}", _stage(widths[4 - i], widths[3 - i], repeats, up=True))
        self.block9 = _stage(widths[0], last, 2)
        self.conv15 = _Wrapped(_bn_relu_conv(last, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`x`: 1×1×H×W grey in 0..255 (sides multiples of 16); the line map (about 255 where there is no line)."""
        skips = []
        for i in range(5):
            x = getattr(self, f"block{i}").model(x)
            skips.append(x)
        for i in range(4):
            x = getattr(self, f"block{5 + i}").model(x) + skips[3 - i]
        return self.conv15.model(self.block9.model(x))

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> MangaLineNet:
        """The network `state` (``erika.pth``'s tensors, ``module.`` prefixed or not) fits, loaded strictly."""
        state = {key.replace("module.", ""): value for key, value in state.items()}
        widths = tuple(int(state[f"block{i}.model.0.conv1.model.2.weight"].shape[0]) for i in range(5))
        net = cls(widths, int(state["conv15.model.2.weight"].shape[1]))
        net.load_state_dict(state, strict=True)
        return net.eval().requires_grad_(False)


def load_manga_line(path: Path) -> MangaLineNet:
    """The network with the tensors of ``erika.pth`` at `path`; one line where they are not that network's."""
    from .edge_nets import read_state_dict

    try:
        return MangaLineNet.from_state_dict(read_state_dict(path))
    except (KeyError, RuntimeError, AttributeError, IndexError) as error:
        first = str(error).strip().splitlines()[0][:80]
        raise ValueError(f"controlnet: {path.name} is not manga line weights ({first})") from None


def manga_lines(net: Any, image: np.ndarray) -> np.ndarray:
    """``lineart_anime_denoise``'s map of `image` (H×W×3 uint8, sides multiples of 16): 255 − the output, grey."""
    import cv2

    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    device = next(net.parameters()).device
    with torch.no_grad():
        line = net(torch.from_numpy(grey).float().to(device)[None, None])[0, 0].float().cpu().numpy()
    return (255 - line).clip(0, 255).astype(np.uint8)
