"""``softedge_teed``: TEED (Tiny and Efficient Edge Detector, Soria et al. 2023, ~58k parameters) as a torch module.

The layout is the one sd-webui-controlnet builds (``annotator/teed/ted.py``, from xavysp/TEED) and that
``7_model.pth`` (bdsqlsz/qinglong_controlnet-lllite, ``Annotators/``) holds, under its own parameter names, so the
file loads strictly. Smish, ``x·tanh(ln(1 + sigmoid(x)))``, is the activation throughout. On 0..255 RGB, unnormalized:

- ``block_1``: two 3×3 convolutions (16 channels, the first with stride 2), each followed by Smish;
- ``block_2``: two 3×3 convolutions to 32 channels, Smish between them only;
- ``side_1`` (1×1, stride 2) of ``block_1`` added to ``block_2`` max-pooled (3×3, stride 2, padding 1);
- ``dblock_3``: one dense layer: ``½·(conv2(Smish(conv1(Smish(x)))) + skip)``, conv1 3×3 with padding 2 and conv2
  3×3 without, the skip ``pre_dense_3`` (1×1, 48 channels) of the pooled ``block_2`` (before the addition);
- ``up_block_1``/``2``/``3``: (1×1 convolution, Smish, transposed convolution ×2) once for the first two, twice for
  the third (16 channels, then 1; kernel 4, padding 1), each giving a one-channel logit map at the input size;
- ``block_cat`` (DoubleFusion) on the three maps: a depthwise 3×3 to 24 channels (×8 each) of their Smish, a
  depthwise 3×3 of that one's Smish added to it, summed over channels, Smish.

The four maps (three side outputs and the fused one) are what the preprocessor averages: the same arithmetic as HED's
(``annotators.side_edges``). The input's sides must be multiples of 4 (the padded picture's are of 64).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn


def smish(x: torch.Tensor) -> torch.Tensor:
    """Smish (Wang et al. 2022): ``x·tanh(ln(1 + sigmoid(x)))``."""
    return x * torch.tanh(torch.log(1 + torch.sigmoid(x)))


class _Smish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return smish(x)


class _DoubleConv(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1, last_act: bool = True) -> None:
        super().__init__()
        self.last_act = last_act
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv2(smish(self.conv1(x)))
        return smish(x) if self.last_act else x


class _Single(nn.Module):  # a 1×1 convolution under ``.conv``
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class _DenseLayer(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=2)
        self.conv2 = nn.Conv2d(cout, cout, 3)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return 0.5 * (self.conv2(smish(self.conv1(smish(x)))) + skip)


class _DenseBlock(nn.Module):  # ``dblock_3``: one dense layer under ``.denselayer1``
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.denselayer1 = _DenseLayer(cin, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.denselayer1(x, skip)


class _UpBlock(nn.Module):
    """`steps` × (1×1 convolution, Smish, transposed convolution ×2): 16 channels, the last step's 1."""

    def __init__(self, cin: int, steps: int) -> None:
        super().__init__()
        kernel, padding = 2**steps, (0, 0, 1, 3, 7)[steps]
        layers: list[nn.Module] = []
        for i in range(steps):
            cout = 1 if i == steps - 1 else 16
            layers += [nn.Conv2d(cin, cout, 1), _Smish(), nn.ConvTranspose2d(cout, cout, kernel, 2, padding)]
            cin = cout
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class _DoubleFusion(nn.Module):
    def __init__(self, maps: int = 3) -> None:
        super().__init__()
        self.DWconv1 = nn.Conv2d(maps, maps * 8, 3, padding=1, groups=maps)  # noqa: N815 - the file's names
        self.DWconv2 = nn.Conv2d(maps * 8, maps * 8, 3, padding=1, groups=maps * 8)  # noqa: N815

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = self.DWconv1(smish(x))
        second = self.DWconv2(smish(first))
        return smish((first + second).sum(1, keepdim=True))


class TeedNet(nn.Module):
    """TEED: three side outputs (from ½, ½ and ¼ scale) and their fusion, logits at the input size."""

    def __init__(self) -> None:
        super().__init__()
        self.block_1 = _DoubleConv(3, 16, stride=2)
        self.block_2 = _DoubleConv(16, 32, last_act=False)
        self.dblock_3 = _DenseBlock(32, 48)
        self.side_1 = _Single(16, 32, 2)
        self.pre_dense_3 = _Single(32, 48, 1)
        self.up_block_1 = _UpBlock(16, 1)
        self.up_block_2 = _UpBlock(32, 1)
        self.up_block_3 = _UpBlock(48, 2)
        self.block_cat = _DoubleFusion(3)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """`x`: 0..255 RGB (B×3×H×W); the three side outputs and the fused map, each B×1×H×W."""
        block_1 = self.block_1(x)
        block_2 = self.block_2(block_1)
        pooled = F.max_pool2d(block_2, kernel_size=3, stride=2, padding=1)
        block_3 = self.dblock_3(pooled + self.side_1(block_1), self.pre_dense_3(pooled))
        sides = [self.up_block_1(block_1), self.up_block_2(block_2), self.up_block_3(block_3)]
        return [*sides, self.block_cat(torch.cat(sides, dim=1))]

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> TeedNet:
        """The network with `state` (``7_model.pth``'s tensors, a ``module.`` prefix dropped) loaded strictly."""
        net = cls()
        net.load_state_dict({key.removeprefix("module."): value for key, value in state.items()}, strict=True)
        return net.eval().requires_grad_(False)
