"""``normal_dsine``: DSINE (Bae & Davison, CVPR 2024) surface normals (``dsine.pt``), as sd-webui-controlnet runs it.

The network: the EfficientNet-B5 encoder of ``normal_bae.py`` (TensorFlow "same" padding; its stage outputs at 1/8
and 1/16 and the head convolution at 1/32 are used), a decoder whose every level also sees the camera's ray
directions (u, v of each pixel's ray), an initial normal at 1/8 kept facing the camera (``ray_relu``), then
Threshold B (Iterations) refinement steps: a convolutional GRU, and each pixel's normal remade as a weighted mean of
its 5×5 neighbours' normals each rotated about an axis the network predicts, then upsampled ×8 by learned convex
combinations. Plain torch modules named as the file's tensors, widths read from their shapes.

The extension's pre- and post-processing, kept as it is: the picture scaled and padded (``scale_with_pad``), 0..1,
ImageNet-normalized; the camera's intrinsics made from Threshold A (Fov, degrees) on the *unit picture's own* size
(focal = long side / 2 / tan(fov / 2), principal point at its centre shifted by DSINE's pad to 32 of that size),
while the network sees the scaled picture; its output cropped at that pad offset to the unit picture's own size,
then to the scaled picture's (so a unit picture smaller than the processor resolution gives a part of the map, as
in the extension); normals mapped from −1..1 to 0..255.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from .normal_bae import Encoder

_MEAN = np.array([0.485, 0.456, 0.406])
_STD = np.array([0.229, 0.224, 0.225])
_RAY_EPS = 1e-2


class WSConv(nn.Conv2d):
    """A 3×3 convolution with weight standardization (each filter minus its mean, over its std + 1e-5)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The convolution of `x` with the standardized weight."""
        weight = self.weight - self.weight.mean(dim=(1, 2, 3), keepdim=True)
        weight = weight / (weight.view(weight.shape[0], -1).std(dim=1).view(-1, 1, 1, 1) + 1e-5)
        return F.conv2d(x, weight, self.bias, self.stride, self.padding)


class UpSample(nn.Module):
    """The coarser features resized (bilinear, corners not aligned) to the skip's, joined, two WS-conv-GN-LeakyReLU."""

    def __init__(self, state: dict[str, torch.Tensor], key: str) -> None:
        super().__init__()
        first, second = state[key + "._net.0.weight"], state[key + "._net.3.weight"]
        self._net = nn.Sequential(
            WSConv(first.shape[1], first.shape[0], 3, padding=1),
            nn.GroupNorm(8, first.shape[0]),
            nn.LeakyReLU(),
            WSConv(second.shape[1], second.shape[0], 3, padding=1),
            nn.GroupNorm(8, second.shape[0]),
            nn.LeakyReLU(),
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """`x` brought to `skip`'s size, joined to it and convolved."""
        up = F.interpolate(x, size=skip.shape[2:], mode="bilinear", align_corners=False)
        return self._net(torch.cat([up, skip], dim=1))


def _head(state: dict[str, torch.Tensor], key: str) -> nn.Sequential:
    """A prediction head: 3×3 conv, ReLU, 1×1 conv, ReLU, 1×1 conv."""
    first, second, third = (state[f"{key}.{i}.weight"] for i in (0, 2, 4))
    return nn.Sequential(
        nn.Conv2d(first.shape[1], first.shape[0], 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(second.shape[1], second.shape[0], 1),
        nn.ReLU(),
        nn.Conv2d(third.shape[1], third.shape[0], 1),
    )


class Decoder(nn.Module):
    """Features and ray directions → the initial normal, the context features and the GRU's first state (1/8)."""

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        super().__init__()
        conv2 = state["conv2.weight"]
        self.conv2 = nn.Conv2d(conv2.shape[1], conv2.shape[0], 1)
        self.up1, self.up2 = UpSample(state, "up1"), UpSample(state, "up2")
        self.normal_head, self.feature_head = _head(state, "normal_head"), _head(state, "feature_head")
        self.hidden_head = _head(state, "hidden_head")

    def forward(self, features: list[torch.Tensor], uvs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """(normal, context features, hidden state) from the 1/8, 1/16 and 1/32 features and their rays' u, v."""
        block2, block3, block4 = features
        uv_32, uv_16, uv_8 = uvs
        x = self.conv2(torch.cat([block4, uv_32], dim=1))
        x = self.up1(x, torch.cat([block3, uv_16], dim=1))
        x = torch.cat([self.up2(x, torch.cat([block2, uv_8], dim=1)), uv_8], dim=1)
        return F.normalize(self.normal_head(x), dim=1), self.feature_head(x), self.hidden_head(x)


class ConvGRU(nn.Module):
    """A convolutional GRU cell (update z, reset r, candidate q)."""

    def __init__(self, state: dict[str, torch.Tensor], key: str) -> None:
        super().__init__()
        for name in ("convz", "convr", "convq"):
            weight = state[f"{key}.{name}.weight"]
            k = weight.shape[2]
            setattr(self, name, nn.Conv2d(weight.shape[1], weight.shape[0], k, padding=(k - 1) // 2))

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The next hidden state from `h` and the input `x`."""
        hx = torch.cat([h, x], dim=1)
        z, r = torch.sigmoid(self.convz(hx)), torch.sigmoid(self.convr(hx))
        q = torch.tanh(self.convq(torch.cat([r * h, x], dim=1)))
        return (1 - z) * h + z * q


def ray_relu(normal: torch.Tensor, ray: torch.Tensor) -> torch.Tensor:
    """`normal` turned so its cosine with the viewing `ray` is at least 0.01 (a surface seen from its front)."""
    cos = F.cosine_similarity(normal, ray, dim=1).unsqueeze(1)
    return F.normalize(normal + ray * (torch.relu(cos - _RAY_EPS) + _RAY_EPS) - ray * cos, dim=1)


def convex_upsample(out: torch.Tensor, mask: torch.Tensor, k: int) -> torch.Tensor:
    """`out` ×`k`: each new pixel a softmax-weighted mix of its coarse pixel's 3×3 neighbours (edges repeated)."""
    b, c, h, w = out.shape
    weights = torch.softmax(mask.view(b, 1, 9, k, k, h, w), dim=2)
    patches = F.unfold(F.pad(out, (1, 1, 1, 1), mode="replicate"), [3, 3]).view(b, c, 9, 1, 1, h, w)
    mixed = (weights * patches).sum(dim=2)
    return mixed.permute(0, 1, 4, 2, 5, 3).reshape(b, c, k * h, k * w)


def unfold_patches(x: torch.Tensor, size: int) -> torch.Tensor:
    """Each pixel's `size`×`size` neighbourhood (edges repeated): B×C×size²×H×W."""
    b, c, h, w = x.shape
    pad = (size - 1) // 2
    return F.unfold(F.pad(x, (pad, pad, pad, pad), mode="replicate"), [size, size]).view(b, c, size * size, h, w)


def rotate(vectors: torch.Tensor, axes: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """`vectors` (B×3×…) rotated by `angles` about the unit (or zero) `axes` (Rodrigues' formula)."""
    cos, sin = torch.cos(angles), torch.sin(angles)
    cross = torch.cross(axes, vectors, dim=1)
    return vectors * cos + cross * sin + axes * (axes * vectors).sum(1, keepdim=True) * (1 - cos)


def _pixel_grid(h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """The pixel centres (x + 0.5, y + 0.5, 1) of an `h`×`w` grid: 1×3×h×w."""
    ys, xs = torch.meshgrid(
        torch.arange(h, device=like.device, dtype=like.dtype) + 0.5,
        torch.arange(w, device=like.device, dtype=like.dtype) + 0.5,
        indexing="ij",
    )
    return torch.stack([xs, ys, torch.ones_like(xs)])[None]


def _rays(camera: tuple[float, ...], h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """The rays' (u, v, 1) of an `h`×`w` grid for `camera` (fu, fv, cu, cv already scaled to that grid)."""
    fu, fv, cu, cv = camera
    grid = _pixel_grid(h, w, like)
    return torch.cat([(grid[:, :1] - cu) / fu, (grid[:, 1:2] - cv) / fv, grid[:, 2:]], dim=1)


def _scaled(camera: tuple[float, ...], h: int, w: int, full: tuple[int, int]) -> tuple[float, ...]:
    fu, fv, cu, cv = camera
    return fu * w / full[1], fv * h / full[0], cu * w / full[1], cv * h / full[0]


def neighbour_axes(normals: torch.Tensor, xys: torch.Tensor, camera: tuple[float, ...], ps: int) -> torch.Tensor:
    """The rotation axis for each neighbour: the plane of its normal moved by the predicted offset `xys` (unit).

    `normals` B×3×ps²×H×W; `xys` B×2×ps²×H×W; `camera` scaled to the H×W grid. Degenerate axes are zero.
    """
    fu, fv, cu, cv = camera
    grid = unfold_patches(_pixel_grid(normals.shape[3], normals.shape[4], normals), ps)
    du, dv = xys[:, 0] / fu, xys[:, 1] / fv
    term_u, term_v = (grid[:, 0] + xys[:, 0] - cu) / fu, (grid[:, 1] + xys[:, 1] - cv) / fv
    nx, ny, nz = normals[:, 0], normals[:, 1], normals[:, 2]
    denominator = term_u * nx + term_v * ny + nz
    tiny = denominator.abs() < 1e-8
    denominator = torch.where(tiny, 1e-8 * torch.sign(denominator), denominator)
    dz = -(du * nx + dv * ny) / denominator
    axes = F.normalize(torch.stack([du + dz * term_u, dv + dz * term_v, dz], dim=1), dim=1)
    invalid = (~torch.isfinite(axes)).any(dim=1, keepdim=True)
    return torch.where(invalid, torch.zeros_like(axes), axes)


class DSINE(nn.Module):
    """The file's ``encoder``, ``decoder``, ``gru`` and the refinement heads; ``forward`` gives unit normals."""

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        super().__init__()
        encoder = "encoder.original_model."
        self.encoder = Encoder({k.removeprefix(encoder): v for k, v in state.items() if k.startswith(encoder)})
        self.decoder = Decoder({k.removeprefix("decoder."): v for k, v in state.items() if k.startswith("decoder.")})
        self.gru = ConvGRU(state, "gru")
        self.prob_head, self.xy_head = _head(state, "prob_head"), _head(state, "xy_head")
        self.angle_head, self.up_prob_head = _head(state, "angle_head"), _head(state, "up_prob_head")
        self.ps = math.isqrt(state["prob_head.4.weight"].shape[0])
        self.ratio = math.isqrt(state["up_prob_head.4.weight"].shape[0] // 9)

    def refine(self, h: torch.Tensor, context: torch.Tensor, normal: torch.Tensor, camera: tuple, ray: torch.Tensor):
        """One step: the GRU's next state, the normal remade from its rotated neighbours, and that normal ×8."""
        b, _, height, width = normal.shape
        h = self.gru(h, context)
        inputs = torch.cat([h, context[:, -2:]], dim=1)
        probs = torch.sigmoid(self.prob_head(inputs)).unsqueeze(1)
        xs, ys = self.xy_head(inputs).split(self.ps * self.ps, dim=1)
        xys = F.normalize(torch.stack([xs, ys], dim=1), dim=1)
        angles = (torch.sigmoid(self.angle_head(inputs)) * math.pi).unsqueeze(1)
        neighbours = unfold_patches(normal, self.ps)
        turned = F.normalize(rotate(neighbours, neighbour_axes(neighbours, xys, camera, self.ps), angles), dim=1)
        turned = ray_relu(turned, ray.unsqueeze(2))
        normal = F.normalize((probs * turned).sum(dim=2), dim=1)
        up = convex_upsample(normal, self.up_prob_head(inputs), self.ratio)
        return h, normal, F.normalize(up, dim=1)

    def forward(self, x: torch.Tensor, camera: tuple[float, ...], iterations: int) -> torch.Tensor:
        """Unit normals (1×3×H×W) of `x` (normalized, sides multiples of 32) seen by `camera` (fu, fv, cu, cv)."""
        full = (x.shape[2], x.shape[3])
        fu, fv, cu, cv = camera
        camera = (fu, fv, cu + 0.5, cv + 0.5)
        features = self.encoder.original_model(x)
        uvs = []
        for down in (32, 16, 8):
            h, w = full[0] // down, full[1] // down
            uvs.append(_rays(_scaled(camera, h, w, full), h, w, x)[:, :2])
        h8, w8 = full[0] // 8, full[1] // 8
        camera8 = _scaled(camera, h8, w8, full)
        ray = F.normalize(_rays(camera8, h8, w8, x), dim=1)
        normal, context, hidden = self.decoder([features[2], features[3], features[4]], tuple(uvs))
        normal = ray_relu(normal, ray)
        context = torch.cat([context, uvs[2]], dim=1)
        up = F.normalize(convex_upsample(normal, self.up_prob_head(torch.cat([hidden, uvs[2]], 1)), self.ratio), dim=1)
        for _ in range(iterations):
            hidden, normal, up = self.refine(hidden, context, normal, camera8, ray)
        return up


def load_dsine(path: Path) -> DSINE:
    """DSINE with the weights of `path` (``dsine.pt``: its ``model`` entry, ``module.`` prefixes dropped)."""
    from .edge_nets import load_model_entry

    return load_model_entry(path, DSINE, "normal_dsine")  # type: ignore[return-value]


def pad_to_32(size: int) -> tuple[int, int]:
    """DSINE's padding of `size` to a multiple of 32: (before, after), the odd pixel after."""
    total = -size % 32
    return total // 2, total - total // 2


def fov_camera(fov: float, height: int, width: int) -> tuple[float, float, float, float]:
    """The extension's intrinsics for a `height`×`width` picture: (fu, fv, cu, cv), DSINE's pad offset added."""
    tangent = math.tan(math.radians(fov / 2.0))
    focal = (max(width, height) / 2.0) / tangent if tangent else math.inf  # Fov 0: parallel rays, as numpy's inf
    return focal, focal, width / 2.0 - 0.5 + pad_to_32(width)[0], height / 2.0 - 0.5 + pad_to_32(height)[0]


def dsine_normal_map(
    net: DSINE, image: np.ndarray, unit_size: tuple[int, int], fov: float, iterations: float
) -> np.ndarray:
    """The map of `image` (the padded picture) for a unit picture of `unit_size` (H, W), cropped as the extension.

    Returns uint8 normals (x, y, z from −1..1 to 0..255) at ``image[t:t + H, l:l + W]``.
    """
    parameter = next(net.parameters())
    height, width = unit_size
    camera = fov_camera(float(fov), height, width)
    x = ((image.astype(np.float64) / 255.0 - _MEAN) / _STD).astype(np.float32).transpose(2, 0, 1)[None]
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(x)).to(parameter.device, parameter.dtype)
        normal = net(x, camera, int(iterations))[0]
    top, left = pad_to_32(height)[0], pad_to_32(width)[0]
    normal = ((normal[:, top : top + height, left : left + width].float() + 1) * 0.5).clip(0, 1)
    return (normal.permute(1, 2, 0).cpu().numpy() * 255.0).clip(0, 255).astype(np.uint8)
