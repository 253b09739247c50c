"""MangaLineExtraction weights (``erika.pth``, "res_skip") with the published key names and shapes, written out here
from sd-webui-controlnet's ``annotator/manga_line`` model code, and the network's forward pass on the tensors alone.

Widths are the published ones (24, 48, 96, 192, 384; 16 at the end) divided by `divisor`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812

DOWN = (2, 3, 5, 7, 12)
UP = (7, 5, 3, 2)


def _bn_relu_conv(prefix: str, cin: int, cout: int, kernel: int) -> dict[str, tuple[int, ...]]:
    bn = {f"{prefix}.model.0.{n}": (cin,) for n in ("weight", "bias", "running_mean", "running_var")}
    conv = {f"{prefix}.model.2.weight": (cout, cin, kernel, kernel), f"{prefix}.model.2.bias": (cout,)}
    return {**bn, f"{prefix}.model.0.num_batches_tracked": (), **conv}


def _block(prefix: str, cin: int, cout: int, projected: bool) -> dict[str, tuple[int, ...]]:
    shapes = {**_bn_relu_conv(f"{prefix}.conv1", cin, cout, 3), **_bn_relu_conv(f"{prefix}.residual", cout, cout, 3)}
    if projected:
        shapes |= {f"{prefix}.shortcut.model.0.weight": (cout, cin, 1, 1), f"{prefix}.shortcut.model.0.bias": (cout,)}
    return shapes


def manga_shapes(divisor: int = 1) -> dict[str, tuple[int, ...]]:
    """Every tensor of ``res_skip``'s state dict and its shape."""
    widths = [w // divisor for w in (24, 48, 96, 192, 384)]
    last = 16 // divisor
    shapes: dict[str, tuple[int, ...]] = {}
    for stage, (cin, cout, repeats) in enumerate(zip([1, *widths[:-1]], widths, DOWN)):
        for i in range(repeats):
            strided = stage > 0 and i == repeats - 1
            first_in = cin if i == 0 else cout
            shapes |= _block(f"block{stage}.model.{i}", first_in, cout, first_in != cout or strided)
    for step, repeats in enumerate(UP):
        cin, cout = widths[4 - step], widths[3 - step]
        for i in range(repeats):
            shapes |= _block(f"block{5 + step}.model.{i}", cin if i == 0 else cout, cout, i == 0)
    for i in range(2):
        shapes |= _block(f"block9.model.{i}", widths[0] if i == 0 else last, last, i == 0)
    return shapes | _bn_relu_conv("conv15", last, 1, 1)


def manga_state(divisor: int = 8, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors in the published layout, scaled so the 0..255 input gives outputs in the hundreds."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in manga_shapes(divisor).items():
        if name.endswith("num_batches_tracked"):
            state[name] = torch.tensor(3)
        elif name.endswith("running_var"):
            state[name] = torch.rand(shape, generator=generator) + 0.5
        elif len(shape) == 4:
            state[name] = torch.randn(shape, generator=generator) * 0.8 / (shape[1] * shape[2] * shape[3]) ** 0.5
        elif name.endswith("model.0.weight"):
            state[name] = 1.0 + 0.2 * torch.randn(shape, generator=generator)
        else:
            state[name] = torch.randn(shape, generator=generator) * 0.1
    return state


def _unit(state: dict, prefix: str, x: torch.Tensor, stride: int = 1, up: bool = False) -> torch.Tensor:
    s = {n: state[f"{prefix}.model.0.{n}"] for n in ("running_mean", "running_var", "weight", "bias")}
    x = F.batch_norm(x, s["running_mean"], s["running_var"], s["weight"], s["bias"], False, 0.0, 1e-3)
    weight = state[f"{prefix}.model.2.weight"]
    x = F.conv2d(F.leaky_relu(x, 0.2), weight, state[f"{prefix}.model.2.bias"], stride, weight.shape[-1] // 2)
    return F.interpolate(x, scale_factor=2, mode="nearest") if up else x


def _run_block(state: dict, prefix: str, x: torch.Tensor, stride: int, up: bool) -> torch.Tensor:
    y = _unit(state, f"{prefix}.residual", _unit(state, f"{prefix}.conv1", x, stride, up))
    key = f"{prefix}.shortcut.model.0"
    if key + ".weight" not in state:
        return x + y
    shortcut = F.conv2d(x, state[key + ".weight"], state[key + ".bias"], stride)
    return y + (F.interpolate(shortcut, scale_factor=2, mode="nearest") if up else shortcut)


def manga_reference(state: dict, x: torch.Tensor) -> torch.Tensor:
    """``res_skip``'s output for `x` (1×1×H×W, 0..255 grey) from `state` alone."""
    skips = []
    for stage, repeats in enumerate(DOWN):
        for i in range(repeats):
            x = _run_block(state, f"block{stage}.model.{i}", x, 2 if stage and i == repeats - 1 else 1, False)
        skips.append(x)
    for step, repeats in enumerate(UP):
        for i in range(repeats):
            x = _run_block(state, f"block{5 + step}.model.{i}", x, 1, i == 0)
        x = skips[3 - step] + x
    for i in range(2):
        x = _run_block(state, f"block9.model.{i}", x, 1, False)
    return _unit(state, "conv15", x)
