"""Tiny weights in the layout of LeReS++'s merge network (``latest_net_G.pth``: pix2pix's U-Net generator, no
normalization layers) and its forward pass written with torch.nn.functional on the tensors alone (the reference),
the published in-place LeakyReLU kept: the skip carries the rectified input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812


def _widths(levels: int, ngf: int) -> list[tuple[int, int]]:
    """(outer, inner) channels per level, outermost first: pix2pix's unet_N with `levels` downsamplings."""
    inner = [ngf, ngf * 2, ngf * 4] + [ngf * 8] * (levels - 3)
    outer = [None, ngf, ngf * 2] + [ngf * 4] + [ngf * 8] * (levels - 4)
    return list(zip(outer, inner))


def merge_state(levels: int = 6, ngf: int = 2, seed: int = 3) -> dict[str, torch.Tensor]:
    """Random weights in ``latest_net_G.pth``'s layout (2 channels in, 1 out)."""
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    key = "model"
    for level, (outer, inner) in enumerate(_widths(levels, ngf)):
        first, last = level == 0, level == levels - 1
        cin, cout = (2, 1) if first else (outer, outer)
        down, sub = (0, 1) if first else (1, 3)
        up = sub if last else sub + 2
        state[f"{key}.model.{down}.weight"] = torch.randn(inner, cin, 4, 4, generator=generator) * 0.3
        state[f"{key}.model.{up}.weight"] = (
            torch.randn(inner if last else inner * 2, cout, 4, 4, generator=generator) * 0.3
        )
        if first:
            state[f"{key}.model.{up}.bias"] = torch.randn(cout, generator=generator) * 0.1
        key = f"{key}.model.{sub}"
    return state


def merge_reference(
    state: dict[str, torch.Tensor], x: torch.Tensor, key: str = "model", top: bool = True
) -> torch.Tensor:
    """The generator's output (N×1×H×W) for `x` (N×2×H×W): pix2pix's recursion with functional ops."""
    down, sub = (0, 1) if top else (1, 3)
    innermost = f"{key}.model.{sub}.model.1.weight" not in state
    up = sub if innermost else sub + 2
    if not top:
        x = F.leaky_relu(x, 0.2)  # in place in the published code: the skip below reads the rectified x
    h = F.conv2d(x, state[f"{key}.model.{down}.weight"], stride=2, padding=1)
    if not innermost:
        h = merge_reference(state, h, f"{key}.model.{sub}", top=False)
    h = F.conv_transpose2d(torch.relu(h), state[f"{key}.model.{up}.weight"], state.get(f"{key}.model.{up}.bias"), 2, 1)
    return torch.tanh(h) if top else torch.cat([x, h], 1)
