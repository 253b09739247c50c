"""LeReS++'s merge network and double estimation (BoostingMonocularDepth, as sd-webui-controlnet runs it).

The merge network is pix2pix's U-Net generator (``latest_net_G.pth``, ``unet_1024``: ten levels, no normalization
layers): each level a 4×4 stride-2 convolution down (LeakyReLU 0.2 before it, except at the outermost), the inner
levels, a ReLU and a 4×4 stride-2 transposed convolution up, the level's input concatenated before the result
(except at the outermost, which ends in tanh). Only the outermost up-convolution has a bias. The published
LeakyReLU is in place: it rectifies the level's input, which the concatenation then reads, so the skip carries
``leaky_relu(x)``, not ``x``; kept, as the extension's maps come from it. Written here as plain
torch modules whose parameter names are the file's (``model.model.0`` …, the sub-level at index 1 or 3), the
depth and widths read from the file.

Its input is two depths at 1024×1024, each stretched to 0..1 by its minimum and maximum, then to −1..1: the low
resolution one first. ``double_estimate`` runs LeReS at 448 (its receptive field) and at the picture's R_x
resolution (``processing_res``, the search over the picture's Sobel edges), both resized to 1024 (bicubic), merges
them, and stretches ``(out + 1) / 2`` to 0..1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

RECEPTIVE = 448
"""LeReS's receptive field, the double estimation's low resolution (the extension's ``net_receptive_field_size``)."""
MERGE_SIZE = 1024
"""The merge network's input size (``pix2pixsize``)."""
R_MAX = 1600
"""The highest R_x resolution (``whole_size_threshold``)."""


class UNetLevel(nn.Module):
    """One level of pix2pix's U-Net: ``model``, a Sequential with the down conv, the inner level, the up conv."""

    def __init__(self, state: dict[str, torch.Tensor], key: str, outermost: bool) -> None:
        super().__init__()
        down_index, inner_index = (0, 1) if outermost else (1, 3)
        self.innermost = f"{key}.model.{inner_index}.model.1.weight" not in state
        self.outermost = outermost
        up_index = inner_index if self.innermost else inner_index + 2
        down = state[f"{key}.model.{down_index}.weight"]
        up = state[f"{key}.model.{up_index}.weight"]
        layers: dict[int, nn.Module] = {down_index: nn.Conv2d(down.shape[1], down.shape[0], 4, 2, 1, bias=False)}
        if not self.innermost:
            layers[inner_index] = UNetLevel(state, f"{key}.model.{inner_index}", outermost=False)
        layers[up_index] = nn.ConvTranspose2d(up.shape[0], up.shape[1], 4, 2, 1, bias=outermost)
        self.model = nn.Sequential()
        for index in range(max(layers) + 1):
            self.model.add_module(str(index), layers.get(index, nn.Identity()))
        self._down, self._up = down_index, up_index
        self._inner = None if self.innermost else inner_index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The level on `x`: its output, after `x` rectified (see the module's note) except at the outermost."""
        if not self.outermost:
            x = F.leaky_relu(x, 0.2)
        h = self.model[self._down](x)
        if self._inner is not None:
            h = self.model[self._inner](h)
        h = self.model[self._up](F.relu(h))
        return torch.tanh(h) if self.outermost else torch.cat([x, h], 1)


class MergeNet(nn.Module):
    """pix2pix's ``UnetGenerator``: its outermost level as ``model``."""

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.model = UNetLevel(state, "model", outermost=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The merged depth (N×1×H×W, −1..1) of the two depths in `x` (N×2×H×W)."""
        return self.model(x)


def load_merge_net(path: Path) -> MergeNet:
    """The merge network with the weights of `path` (``latest_net_G.pth``)."""
    from .edge_nets import read_state_dict

    loaded = read_state_dict(path)
    state = {k.removeprefix("module."): v for k, v in loaded.items()} if isinstance(loaded, dict) else {}
    try:
        net = MergeNet(state)
        net.load_state_dict(state)
    except (KeyError, RuntimeError, IndexError, ValueError) as error:
        first = str(error).strip().splitlines()[0][:80] if str(error).strip() else type(error).__name__
        raise ValueError(f"controlnet: {path.name} is not LeReS++'s merge network ({first})") from None
    return net.eval()


def _unit_range(depth: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(depth, dtype=np.float32))[None, None]
    return (t - t.min()) / (t.max() - t.min()) * 2 - 1


def merge(net: MergeNet, outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The merge network on `outer` (the low resolution depth) and `inner`: ``(out + 1) / 2``, H×W float32."""
    parameter = next(net.parameters())
    x = torch.cat([_unit_range(outer), _unit_range(inner)], 1).to(parameter.device, parameter.dtype)
    with torch.no_grad():
        out = net(x).float()
    return ((out + 1) / 2)[0, 0].cpu().numpy()


def double_estimate(leres: Any, net: MergeNet, image: np.ndarray, low: int, high: int) -> np.ndarray:
    """LeReS at `low` and `high` (square), both at 1024 (bicubic), merged, stretched to 0..1: 1024×1024 float32."""
    import cv2

    from .leres import leres_depth

    size = (MERGE_SIZE, MERGE_SIZE)
    first, second = (
        cv2.resize(leres_depth(leres, image, side, side), size, interpolation=cv2.INTER_CUBIC) for side in (low, high)
    )
    merged = merge(net, first, second)
    return (merged - merged.min()) / (merged.max() - merged.min())


def gray_gradient(image: np.ndarray) -> np.ndarray:
    """``|Sobel y| + |Sobel x|`` (3×3, float64) of `image`'s grey (0.2989 R + 0.5870 G + 0.1140 B)."""
    import cv2

    gray = np.dot(image[..., :3], [0.2989, 0.5870, 0.1140])
    return np.abs(cv2.Sobel(gray, cv2.CV_64F, 0, 1, ksize=3)) + np.abs(cv2.Sobel(gray, cv2.CV_64F, 1, 0, ksize=3))


def _max_pool(grid: np.ndarray, n: int) -> np.ndarray:
    """scikit-image's ``block_reduce(grid, (n, n), np.max)``: `n`×`n` blocks, the edge ones padded with 0."""
    rows, cols = -(-grid.shape[0] // n) * n, -(-grid.shape[1] // n) * n
    padded = np.zeros((rows, cols), grid.dtype)
    padded[: grid.shape[0], : grid.shape[1]] = grid
    return padded.reshape(rows // n, n, cols // n, n).max(axis=(1, 3))


def processing_res(image: np.ndarray, confidence: float = 0.2) -> tuple[int, float]:
    """The extension's R_x search (``calculateprocessingres``): the whole picture's high resolution, the patch scale.

    Its resizes pass the interpolation where OpenCV takes ``dst``, so they are bilinear; kept so.
    """
    import cv2

    speed = 32
    side = int(min(image.shape[:2]))
    grad = cv2.resize(gray_gradient(image), (side, side))
    middle = grad.min() + 0.4 * (grad.max() - grad.min())
    grad = (grad >= middle).astype(np.float64)
    kernel = np.ones((RECEPTIVE // speed, RECEPTIVE // speed))
    kernel2 = np.ones((int(RECEPTIVE / (4 * speed)), int(RECEPTIVE / (4 * speed))))
    threshold = min(R_MAX, 3 * max(image.shape[:2]))
    sizes = range(RECEPTIVE // speed, int(threshold / speed), RECEPTIVE // (2 * speed))
    if not sizes:
        raise ValueError(
            f"controlnet: depth_leres++ needs a picture side of at least 160 after Processor Res "
            f"(the boost's resolution search has no step under it; got {max(image.shape[:2])})"
        )
    best = RECEPTIVE / speed
    for p_size in sizes:
        pooled = cv2.resize(_max_pool(grad, int(np.floor(side / p_size))), (p_size, p_size))
        pooled = (pooled >= 0.5).astype(np.float64)
        if (1 - cv2.dilate(pooled, kernel, iterations=1)).mean() > confidence:
            break
        best = p_size
    return int(best * speed), float(cv2.dilate(pooled, kernel2, iterations=1).mean())
