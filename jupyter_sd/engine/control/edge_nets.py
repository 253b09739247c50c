"""The small annotator networks as plain torch modules, loading the weights lllyasviel/Annotators publishes.

Parameter names are the published files' own (``ControlNetHED.pth``, ``table5_pidinet.pth`` without its
``module.`` prefix, ``sk_model.pth``/``sk_model2.pth``), so the files load strictly; widths and depths are read from
the tensors, so a smaller network of the same layout loads the same way. Forward passes are the published ones:
HED's five side outputs, PiDiNet's pixel-difference convolutions (carv4: central, angular, radial, vanilla),
the lineart generator (reflection padding, instance norm, three residual blocks, sigmoid). The anime lineart U-Net
(``lineart_anime.py``) and TEED (``teed.py``, fixed widths; ``7_model.pth``, and MistoLine's ``MTEED.pth`` for
Anyline) load through the same table, ``NETS``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

# -- HED (ControlNetHED_Apache2) -----------------------------------------------------------------------------------


class _HedBlock(nn.Module):
    def __init__(self, cin: int, cout: int, layers: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(*[nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1) for i in range(layers)])
        self.projection = nn.Conv2d(cout, 1, 1)

    def forward(self, x: torch.Tensor, down: bool) -> tuple[torch.Tensor, torch.Tensor]:
        if down:
            x = F.max_pool2d(x, kernel_size=2, stride=2)
        for conv in self.convs:
            x = F.relu(conv(x))
        return x, self.projection(x)


class HedNet(nn.Module):
    """HED: five VGG-like blocks, each giving a one-channel side output (its projection) before pooling."""

    def __init__(self, widths: tuple[int, ...] = (64, 128, 256, 512, 512), layers: tuple[int, ...] = (2, 2, 3, 3, 3)):
        super().__init__()
        self.norm = nn.Parameter(torch.zeros(1, 3, 1, 1))
        ins = (3, *widths[:-1])
        for i, (cin, cout, n) in enumerate(zip(ins, widths, layers), start=1):
            setattr(self, f"block{i}", _HedBlock(cin, cout, n))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """`x`: 0..255 RGB; the five side outputs (logits) at the blocks' own scales."""
        h, sides = x - self.norm, []
        for i in range(1, 6):
            h, side = getattr(self, f"block{i}")(h, down=i > 1)
            sides.append(side)
        return sides

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> HedNet:
        """The network `state` (``ControlNetHED.pth``'s tensors) fits, loaded strictly."""
        widths = tuple(int(state[f"block{i}.projection.weight"].shape[1]) for i in range(1, 6))
        layers = tuple(len({k.split(".")[2] for k in state if k.startswith(f"block{i}.convs.")}) for i in range(1, 6))
        return _loaded(cls(widths, layers), state)


# -- PiDiNet (table5_pidinet: carv4, 60 channels, dilation 24, spatial attention) ----------------------------------

CARV4 = ("cd", "ad", "rd", "cv") * 4
"""The pixel-difference type of each of PiDiNet's 16 layers (the init block, then 15 blocks)."""
_CLOCKWISE = [3, 0, 1, 6, 4, 2, 7, 8, 5]


def pixel_difference_conv(x: torch.Tensor, weight: torch.Tensor, kind: str, groups: int = 1) -> torch.Tensor:
    """A 3×3 pixel-difference convolution: vanilla (cv), central (cd), angular (ad) or radial (rd, 5×5 reach)."""
    if kind == "cv":
        return F.conv2d(x, weight, padding=1, groups=groups)
    if kind == "cd":  # Σ w·(x_i − x_centre)
        centre = F.conv2d(x, weight.sum((2, 3), keepdim=True), groups=groups)
        return F.conv2d(x, weight, padding=1, groups=groups) - centre
    flat = weight.flatten(2)
    if kind == "ad":  # each neighbour minus its clockwise predecessor
        return F.conv2d(x, (flat - flat[:, :, _CLOCKWISE]).view_as(weight), padding=1, groups=groups)
    ring = torch.zeros(*flat.shape[:2], 25, dtype=weight.dtype, device=weight.device)  # rd: outer ring − inner ring
    ring[:, :, [0, 2, 4, 10, 14, 20, 22, 24]] = flat[:, :, 1:]
    ring[:, :, [6, 7, 8, 11, 13, 16, 17, 18]] = -flat[:, :, 1:]
    return F.conv2d(x, ring.view(*flat.shape[:2], 5, 5), padding=2, groups=groups)


class _PdcConv(nn.Module):
    def __init__(self, kind: str, cin: int, cout: int, groups: int = 1) -> None:
        super().__init__()
        self.kind, self.groups = kind, groups
        self.weight = nn.Parameter(torch.zeros(cout, cin // groups, 3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pixel_difference_conv(x, self.weight, self.kind, self.groups)


class _PdcBlock(nn.Module):
    def __init__(self, kind: str, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride
        if stride > 1:
            self.shortcut = nn.Conv2d(cin, cout, 1)
        self.conv1 = _PdcConv(kind, cin, cin, groups=cin)
        self.conv2 = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = F.max_pool2d(x, kernel_size=2, stride=2)
        y = self.conv2(F.relu(self.conv1(x)))
        return y + (self.shortcut(x) if self.stride > 1 else x)


class _Dilations(nn.Module):  # CDCM: four dilated 3×3 convolutions summed
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 1)
        for i, d in enumerate((5, 7, 9, 11), start=1):
            setattr(self, f"conv2_{i}", nn.Conv2d(cout, cout, 3, dilation=d, padding=d, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(F.relu(x))
        return sum(getattr(self, f"conv2_{i}")(x) for i in range(1, 5))


class _Attention(nn.Module):  # CSAM: a sigmoid mask from four channels
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 4, 1)
        self.conv2 = nn.Conv2d(4, 1, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.conv2(self.conv1(F.relu(x))))


class _Reduce(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class PidiNet(nn.Module):
    """PiDiNet: four stages of pixel-difference blocks, each reduced to an edge map; a 1×1 classifier fuses them."""

    STAGES = ((1, 3), (2, 4), (3, 4), (4, 4))

    def __init__(self, width: int = 60, dil: int = 24, kinds: tuple[str, ...] = CARV4) -> None:
        super().__init__()
        self.init_block = _PdcConv(kinds[0], 3, width)
        layer, cin, planes = 1, width, []
        for stage, count in self.STAGES:
            cout = width * min(2 ** (stage - 1), 4)
            for i in range(1, count + 1):
                stride = 2 if stage > 1 and i == 1 else 1
                setattr(self, f"block{stage}_{i}", _PdcBlock(kinds[layer], cin if i == 1 else cout, cout, stride))
                layer += 1
            cin = cout
            planes.append(cout)
        self.dilations = nn.ModuleList(_Dilations(p, dil) for p in planes)
        self.attentions = nn.ModuleList(_Attention(dil) for _ in planes)
        self.conv_reduces = nn.ModuleList(_Reduce(dil) for _ in planes)
        self.classifier = nn.Conv2d(4, 1, 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """`x`: 0..1; the four stages' edge maps and the fused one (last), as probabilities at the input size."""
        size, h, edges = x.shape[2:], self.init_block(x), []
        for (stage, count), dilation, attention, reduce in zip(
            self.STAGES, self.dilations, self.attentions, self.conv_reduces
        ):
            for i in range(1, count + 1):
                h = getattr(self, f"block{stage}_{i}")(h)
            edge = reduce(attention(dilation(h)))
            edges.append(F.interpolate(edge, size, mode="bilinear", align_corners=False))
        edges.append(self.classifier(torch.cat(edges, dim=1)))
        return [torch.sigmoid(edge) for edge in edges]

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> PidiNet:
        """The network `state` (``table5_pidinet.pth``'s, ``module.`` prefixed or not) fits, loaded strictly."""
        state = {key.removeprefix("module."): value for key, value in state.items()}
        width, dil = int(state["init_block.weight"].shape[0]), int(state["conv_reduces.0.conv.weight"].shape[1])
        return _loaded(cls(width, dil), state)


# -- lineart (sk_model.pth / sk_model2.pth: a residual generator) --------------------------------------------------


class _Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            nn.InstanceNorm2d(channels),
            nn.ReLU(),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            nn.InstanceNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class LineartNet(nn.Module):
    """The lineart generator: 7×7 in, two stride-2 downs, residual blocks, two transposed ups, 7×7 out, sigmoid."""

    def __init__(self, width: int = 64, blocks: int = 3) -> None:
        super().__init__()
        w2, w4 = width * 2, width * 4
        self.model0 = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(3, width, 7), nn.InstanceNorm2d(width), nn.ReLU())
        self.model1 = nn.Sequential(*_stage(nn.Conv2d(width, w2, 3, 2, 1), w2), *_stage(nn.Conv2d(w2, w4, 3, 2, 1), w4))
        self.model2 = nn.Sequential(*[_Residual(w4) for _ in range(blocks)])
        self.model3 = nn.Sequential(
            *_stage(nn.ConvTranspose2d(w4, w2, 3, 2, 1, output_padding=1), w2),
            *_stage(nn.ConvTranspose2d(w2, width, 3, 2, 1, output_padding=1), width),
        )
        self.model4 = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(width, 1, 7), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`x`: 0..1 RGB; the line map in 0..1 (1 where there is no line)."""
        return self.model4(self.model3(self.model2(self.model1(self.model0(x)))))

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> LineartNet:
        """The network `state` (``sk_model.pth``'s or ``sk_model2.pth``'s tensors) fits, loaded strictly."""
        blocks = len({key.split(".")[1] for key in state if key.startswith("model2.")})
        return _loaded(cls(int(state["model0.1.weight"].shape[0]), blocks), state)


def _stage(conv: nn.Module, channels: int) -> list[nn.Module]:
    return [conv, nn.InstanceNorm2d(channels), nn.ReLU()]


# -- loading -------------------------------------------------------------------------------------------------------


def _loaded(net: nn.Module, state: dict[str, torch.Tensor]) -> Any:
    net.load_state_dict(state, strict=True)
    return net.eval().requires_grad_(False)


def _anime(state: dict[str, torch.Tensor]) -> nn.Module:
    from .lineart_anime import AnimeLineartNet

    return AnimeLineartNet.from_state_dict(state)


def _teed(state: dict[str, torch.Tensor]) -> nn.Module:
    from .teed import TeedNet

    return TeedNet.from_state_dict(state)


NETS: dict[str, Any] = {
    "hed": HedNet.from_state_dict,
    "pidinet": PidiNet.from_state_dict,
    "lineart": LineartNet.from_state_dict,
    "lineart_coarse": LineartNet.from_state_dict,
    "lineart_anime": _anime,
    "teed": _teed,
    "mteed": _teed,
}


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A ``.pth`` (tensors only: ``weights_only``) or ``.safetensors`` file's tensors.

    A training checkpoint gives its ``state_dict`` entry (PiDiNet's file is one).
    """
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure is one line
        raise ValueError(f"controlnet: can't read {path.name} as annotator weights ({str(error)[:80]})") from None
    return loaded.get("state_dict", loaded) if isinstance(loaded, dict) else loaded


def load_net(annotator: str, path: Path) -> nn.Module:
    """`annotator`'s network with the weights at `path`; one line where they are not that network's."""
    state = read_state_dict(path)
    try:
        return NETS[annotator](state)
    except (KeyError, RuntimeError, IndexError, ValueError) as error:
        first = str(error).strip().splitlines()[0][:80] if str(error).strip() else type(error).__name__
        raise ValueError(f"controlnet: {path.name} is not {annotator} weights ({first})") from None


def load_model_entry(path: Path, build: Any, kind: str) -> nn.Module:
    """`build(state)` loaded strictly with `path`'s weights (a checkpoint's ``model`` entry, ``module.`` dropped).

    NNET's ``scannet.pt`` and DSINE's ``dsine.pt`` are saved that way; weights of another network are one line.
    """
    loaded = read_state_dict(path)
    state = loaded.get("model", loaded) if isinstance(loaded, dict) else loaded
    state = {k.removeprefix("module."): v for k, v in state.items()}
    try:
        net = build(state)
        net.load_state_dict(state)
    except (KeyError, RuntimeError, IndexError, ValueError, AttributeError) as error:
        first = str(error).strip().splitlines()[0][:80] if str(error).strip() else type(error).__name__
        raise ValueError(f"controlnet: {path.name} is not {kind} weights ({first})") from None
    return net.eval()
