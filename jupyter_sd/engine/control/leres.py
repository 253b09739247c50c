"""``depth_leres``: LeReS's relative depth network (``res101.pth``), as sd-webui-controlnet's leres annotator.

The network (AdelaiDepth's ``RelDepthModel``) is a ResNeXt-101 32×8d encoder (torchvision's layout: 7×7 stem,
max pool, four stages of grouped bottlenecks, the stride on the 3×3) and the LeReS decoder: feature transfer blocks
(FTB) fusing the 1/32 … 1/4 features on the way up, bilinear ×2 steps (corners aligned) and an adaptive output
convolution to one channel at full size. Written here as plain torch modules whose parameter names are the
published file's, the widths, groups and depths read from the file's tensors.

Two habits of the published code are kept, since the extension's maps come from them:

- the FTB's residual branch opens with an in-place ReLU, which rectifies the tensor the sum then reads: the block
  is ``relu(h + branch(h))`` with ``h = relu(conv1(x))``;
- the picture goes in as BGR 0..255 (the RGB picture flipped, ``ToTensor`` of float32 does not divide by 255),
  minus ImageNet's mean, over its std.

The map (``leres_depth_map``): the depth stretched by its minimum and maximum to 16 bits (truncated), brought to
8 bits (``convertScaleAbs``, rounded); values at or under Remove Near % of 255 set to 0, inverted, values at or
under Remove Background % of 255 set to 0 (each only where its slider is not 0).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

_MEAN = np.array([0.485, 0.456, 0.406])
_STD = np.array([0.229, 0.224, 0.225])


def _conv(weight: torch.Tensor, stride: int = 1, groups: int = 1, bias: bool = False) -> nn.Conv2d:
    kernel = weight.shape[2]
    return nn.Conv2d(weight.shape[1] * groups, weight.shape[0], kernel, stride, kernel // 2, groups=groups, bias=bias)


def _bn(state: dict[str, torch.Tensor], key: str) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(state[key + ".weight"].shape[0])


class Bottleneck(nn.Module):
    """ResNeXt's bottleneck: 1×1, grouped 3×3 (the stride here), 1×1, each batch-normed, plus the shortcut."""

    def __init__(self, state: dict[str, torch.Tensor], key: str, stride: int) -> None:
        super().__init__()
        grouped = state[key + ".conv2.weight"]
        groups = grouped.shape[0] // grouped.shape[1]
        self.conv1, self.bn1 = _conv(state[key + ".conv1.weight"]), _bn(state, key + ".bn1")
        self.conv2, self.bn2 = _conv(grouped, stride, groups), _bn(state, key + ".bn2")
        self.conv3, self.bn3 = _conv(state[key + ".conv3.weight"]), _bn(state, key + ".bn3")
        self.downsample = None
        if key + ".downsample.0.weight" in state:
            self.downsample = nn.Sequential(
                _conv(state[key + ".downsample.0.weight"], stride), _bn(state, key + ".downsample.1")
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block on `x` plus its shortcut, rectified."""
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.bn2(self.conv2(h)))
        h = self.bn3(self.conv3(h))
        return F.relu(h + (x if self.downsample is None else self.downsample(x)))


class ResNeXt(nn.Module):
    """The encoder: stem and max pool, then ``layer1``…``layer4`` (strides 1, 2, 2, 2); their four outputs."""

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv(state["conv1.weight"], 2), _bn(state, "bn1")
        counts: dict[int, int] = {}
        for key in state:
            found = re.match(r"layer(\d)\.(\d+)\.", key)
            if found:
                counts[int(found[1])] = max(counts.get(int(found[1]), 0), int(found[2]) + 1)
        if sorted(counts) != [1, 2, 3, 4]:
            raise ValueError(f"ResNeXt needs layer1..layer4, the file has {sorted(counts)}")
        for layer in (1, 2, 3, 4):
            stride = 1 if layer == 1 else 2
            blocks = (Bottleneck(state, f"layer{layer}.{b}", stride if b == 0 else 1) for b in range(counts[layer]))
            setattr(self, f"layer{layer}", nn.Sequential(*blocks))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The features at 1/4, 1/8, 1/16 and 1/32."""
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        features = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            features.append(x)
        return features


class DepthNet(nn.Module):
    """The file's ``encoder_modules``: its ResNeXt as ``encoder``."""

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.encoder = ResNeXt(state)


class FTB(nn.Module):
    """A feature transfer block: 3×3 conv, then ``relu(h + branch(h))`` (see the module's note on ``h``)."""

    def __init__(self, state: dict[str, torch.Tensor], key: str) -> None:
        super().__init__()
        self.conv1 = _conv(state[key + ".conv1.weight"], bias=True)
        width = self.conv1.out_channels
        self.conv_branch = nn.Sequential(
            nn.ReLU(),
            _conv(state[key + ".conv_branch.1.weight"], bias=True),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            _conv(state[key + ".conv_branch.4.weight"], bias=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block on `x`."""
        h = F.relu(self.conv1(x))
        return F.relu(h + self.conv_branch(h))


def _up2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


class FFM(nn.Module):
    """A feature fusion step: the skip through one FTB, the coarser path added, a second FTB, ×2 up."""

    def __init__(self, state: dict[str, torch.Tensor], key: str) -> None:
        super().__init__()
        self.ftb1, self.ftb2 = FTB(state, key + ".ftb1"), FTB(state, key + ".ftb2")

    def forward(self, skip: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """`skip` fused with `coarse` (same size), at twice the size."""
        return _up2(self.ftb2(self.ftb1(skip) + coarse))


class Decoder(nn.Module):
    """The file's ``decoder_modules``: 1/32 → FTB, 3×3 conv, ×2; three FFMs to 1/2; the output conv to full size."""

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.conv, self.conv1 = FTB(state, "conv"), _conv(state["conv1.weight"], bias=True)
        self.ffm2, self.ffm1, self.ffm0 = FFM(state, "ffm2"), FFM(state, "ffm1"), FFM(state, "ffm0")
        first = state["outconv.adapt_conv.0.weight"]
        self.outconv = nn.Module()
        self.outconv.adapt_conv = nn.Sequential(
            _conv(first, bias=True),
            nn.BatchNorm2d(first.shape[0]),
            nn.ReLU(),
            _conv(state["outconv.adapt_conv.3.weight"], bias=True),
        )

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """The depth (1×1×H×W) from the encoder's four features."""
        x = _up2(self.conv1(self.conv(features[3])))
        x = self.ffm0(features[0], self.ffm1(features[1], self.ffm2(features[2], x)))
        return _up2(self.outconv.adapt_conv(x))


class DepthModel(nn.Module):
    """``encoder_modules`` and ``decoder_modules``."""

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.encoder_modules = DepthNet(_under(state, "encoder_modules.encoder."))
        self.decoder_modules = Decoder(_under(state, "decoder_modules."))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The relative depth of `x` (sides multiples of 32)."""
        return self.decoder_modules(self.encoder_modules.encoder(x))


class LeReS(nn.Module):
    """RelDepthModel: its ``depth_model``."""

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.depth_model = DepthModel(_under(state, "depth_model."))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The relative depth of `x`."""
        return self.depth_model(x)


def _under(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}


def load_leres(path: Path) -> LeReS:
    """LeReS with the weights of `path` (``res101.pth``: its ``depth_model`` entry, ``module.`` prefixes dropped)."""
    from .edge_nets import read_state_dict

    loaded = read_state_dict(path)
    state = loaded.get("depth_model", loaded) if isinstance(loaded, dict) else loaded
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if not any(k.startswith("depth_model.") for k in state):
        state = {"depth_model." + k: v for k, v in state.items()}
    try:
        net = LeReS(state)
        net.load_state_dict(state)
    except (KeyError, RuntimeError, IndexError, ValueError) as error:
        first = str(error).strip().splitlines()[0][:80] if str(error).strip() else type(error).__name__
        raise ValueError(f"controlnet: {path.name} is not depth_leres weights ({first})") from None
    return net.eval()


def leres_input(image: np.ndarray) -> np.ndarray:
    """The network's input for `image` (H×W×3 uint8 RGB): 1×3×H×W float32, BGR 0..255 normalized as ImageNet's."""
    bgr = image[:, :, ::-1].astype(np.float64)
    return ((bgr - _MEAN) / _STD).astype(np.float32).transpose(2, 0, 1)[None]


def leres_depth(net: LeReS, image: np.ndarray, width: int, height: int) -> np.ndarray:
    """The extension's ``estimateleres``: LeReS's depth of `image` (H×W×3 uint8 RGB), H×W float32.

    The picture is resized to `width`×`height` (bilinear; multiples of 32), the depth back to H×W (bicubic).
    """
    import cv2

    resized = image if image.shape[:2] == (height, width) else cv2.resize(image, (width, height))
    parameter = next(net.parameters())
    x = torch.from_numpy(np.ascontiguousarray(leres_input(resized))).to(parameter.device, parameter.dtype)
    with torch.no_grad():
        depth = net(x)[0, 0].float().cpu().numpy()
    if depth.shape != image.shape[:2]:
        depth = cv2.resize(depth, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_CUBIC)
    return depth


def depth_to_map(depth: np.ndarray, remove_near: float, remove_background: float) -> np.ndarray:
    """The extension's map of a depth: stretched to 16 bits, to 8, Remove Near, inverted, Remove Background."""
    import cv2

    span = depth.max() - depth.min()
    out = 65535.0 * (depth - depth.min()) / span if span > np.finfo(float).eps else np.zeros(depth.shape)
    made = cv2.convertScaleAbs(out.astype(np.uint16), alpha=255.0 / 65535.0)
    if remove_near:
        made = cv2.threshold(made, remove_near / 100 * 255, 255, cv2.THRESH_TOZERO)[1]
    made = cv2.bitwise_not(made)
    if remove_background:
        made = cv2.threshold(made, remove_background / 100 * 255, 255, cv2.THRESH_TOZERO)[1]
    return made


def leres_depth_map(net: LeReS, image: np.ndarray, remove_near: float, remove_background: float) -> np.ndarray:
    """The depth map of `image` (H×W×3 uint8, sides multiples of 32): H×W uint8, near bright."""
    return depth_to_map(leres_depth(net, image, image.shape[1], image.shape[0]), remove_near, remove_background)
