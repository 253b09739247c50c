"""Tiny networks for the normal-map preprocessors: a DPT (MiDaS) depth model built from config, and weights with
the key names and layout of ``scannet.pt`` (normal_bae's NNET: EfficientNet encoder, BAE decoder) at small widths,
with NNET's forward pass written out with torch.nn.functional on the tensors alone (the reference).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812


def tiny_dpt(seed: int = 5) -> Any:
    """A tiny DPT depth model (ViT backbone), the kind of ``Intel/dpt-hybrid-midas`` without its BiT stem."""
    from transformers import DPTConfig, DPTForDepthEstimation

    torch.manual_seed(seed)
    config = DPTConfig(
        hidden_size=16,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=32,
        image_size=32,
        patch_size=16,
        neck_hidden_sizes=[4, 8, 8, 16],
        fusion_hidden_size=8,
        backbone_out_indices=[0, 1, 2, 3],
    )
    return DPTForDepthEstimation(config).eval()


# -- normal_bae: scannet.pt ------------------------------------------------------------------------------------------

STEM, HEAD = 8, 24
STAGES = ((8, 1, 3, 1), (8, 2, 3, 2), (16, 1, 5, 2), (16, 1, 3, 2), (16, 2, 5, 1), (24, 1, 5, 2), (24, 1, 3, 1))
"""(out channels, blocks, kernel, stride) per stage; EfficientNet-B5's are 24…512 wide, 3–9 blocks deep."""
UPS = (16, 16, 8, 8)
MLP = 8
ENC = "module.encoder.original_model."


def _bn(shapes: dict[str, tuple[int, ...]], key: str, width: int) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        shapes[f"{key}.{name}"] = (width,)


def _block_shapes(shapes: dict[str, tuple[int, ...]], key: str, cin: int, cout: int, kernel: int, first: bool) -> None:
    se = max(1, cin // 4)
    if first:  # the depthwise-separable block: no expansion
        shapes[f"{key}.conv_dw.weight"] = (cin, 1, kernel, kernel)
        _bn(shapes, f"{key}.bn1", cin)
        mid = cin
    else:
        mid = cin * 2
        shapes[f"{key}.conv_pw.weight"] = (mid, cin, 1, 1)
        _bn(shapes, f"{key}.bn1", mid)
        shapes[f"{key}.conv_dw.weight"] = (mid, 1, kernel, kernel)
        _bn(shapes, f"{key}.bn2", mid)
    shapes.update({f"{key}.se.conv_reduce.weight": (se, mid, 1, 1), f"{key}.se.conv_reduce.bias": (se,)})
    shapes.update({f"{key}.se.conv_expand.weight": (mid, se, 1, 1), f"{key}.se.conv_expand.bias": (mid,)})
    last = "conv_pw" if first else "conv_pwl"
    shapes[f"{key}.{last}.weight"] = (cout, mid, 1, 1)
    _bn(shapes, f"{key}.{'bn2' if first else 'bn3'}", cout)


def _shapes() -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {ENC + "conv_stem.weight": (STEM, 3, 3, 3)}
    _bn(shapes, ENC + "bn1", STEM)
    cin = STEM
    for s, (cout, blocks, kernel, _) in enumerate(STAGES):
        for b in range(blocks):
            _block_shapes(shapes, f"{ENC}blocks.{s}.{b}", cin, cout, kernel, first=s == 0)
            cin = cout
    shapes[ENC + "conv_head.weight"] = (HEAD, cin, 1, 1)
    _bn(shapes, ENC + "bn2", HEAD)
    dec = "module.decoder."
    shapes.update({dec + "conv2.weight": (HEAD, HEAD, 1, 1), dec + "conv2.bias": (HEAD,)})
    below, skips = HEAD, (STAGES[4][0], STAGES[2][0], STAGES[1][0], STAGES[0][0])
    for i, (width, skip) in enumerate(zip(UPS, skips), start=1):
        shapes[f"{dec}up{i}._net.0.weight"], shapes[f"{dec}up{i}._net.0.bias"] = (width, below + skip, 3, 3), (width,)
        shapes[f"{dec}up{i}._net.3.weight"], shapes[f"{dec}up{i}._net.3.bias"] = (width, width, 3, 3), (width,)
        _bn(shapes, f"{dec}up{i}._net.1", width)
        _bn(shapes, f"{dec}up{i}._net.4", width)
        below = width
    shapes.update({dec + "out_conv_res8.weight": (4, UPS[1], 3, 3), dec + "out_conv_res8.bias": (4,)})
    for name, feature in (("res4", UPS[1]), ("res2", UPS[2]), ("res1", UPS[3])):
        for j, (cout, cin) in enumerate(((MLP, feature + 4), (MLP, MLP), (MLP, MLP), (4, MLP))):
            shapes[f"{dec}out_conv_{name}.{2 * j}.weight"] = (cout, cin, 1)
            shapes[f"{dec}out_conv_{name}.{2 * j}.bias"] = (cout,)
    return shapes


def normal_bae_state(seed: int = 3) -> dict[str, torch.Tensor]:
    """Random weights in scannet.pt's layout (``module.``-prefixed: the file was saved from a DataParallel)."""
    return batch_norm_net_state(_shapes(), seed)


def batch_norm_net_state(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    """Random weights for a conv net with batch norms: statistics near 1 and 0, convs scaled by their fan-in."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in shapes.items():
        if name.endswith("running_var"):
            state[name] = torch.rand(shape, generator=generator) + 0.5
        elif name.endswith(("running_mean", "bias")):
            state[name] = torch.randn(shape, generator=generator) * 0.1
        elif len(shape) == 1:  # a batch norm's scale
            state[name] = torch.rand(shape, generator=generator) + 0.5
        else:
            fan_in = max(1, math.prod(shape[1:]))
            state[name] = torch.randn(shape, generator=generator) * 1.5 / fan_in**0.5
    return state


def _same(x: torch.Tensor, w: torch.Tensor, stride: int, groups: int = 1, bias: Any = None) -> torch.Tensor:
    k, (h, width) = w.shape[-1], x.shape[2:]
    ph = max((-(-h // stride) - 1) * stride + k - h, 0)
    pw = max((-(-width // stride) - 1) * stride + k - width, 0)
    x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
    return F.conv2d(x, w, bias, stride, groups=groups)


def _norm(s: dict[str, torch.Tensor], key: str, x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    return F.batch_norm(x, s[f"{key}.running_mean"], s[f"{key}.running_var"], s[f"{key}.weight"], s[f"{key}.bias"],
                        eps=eps)  # fmt: skip


def _block(s: dict[str, torch.Tensor], k: str, x: torch.Tensor, stride: int, first: bool) -> torch.Tensor:
    h = x
    if not first:
        h = F.silu(_norm(s, f"{k}.bn1", _same(h, s[f"{k}.conv_pw.weight"], 1)))
    dw = s[f"{k}.conv_dw.weight"]
    h = F.silu(_norm(s, f"{k}.{'bn1' if first else 'bn2'}", _same(h, dw, stride, groups=dw.shape[0])))
    gate = F.conv2d(h.mean((2, 3), keepdim=True), s[f"{k}.se.conv_reduce.weight"], s[f"{k}.se.conv_reduce.bias"])
    h = h * torch.sigmoid(F.conv2d(F.silu(gate), s[f"{k}.se.conv_expand.weight"], s[f"{k}.se.conv_expand.bias"]))
    last = "conv_pw" if first else "conv_pwl"
    h = _norm(s, f"{k}.{'bn2' if first else 'bn3'}", F.conv2d(h, s[f"{k}.{last}.weight"]))
    return h + x if h.shape == x.shape and stride == 1 else h


def _up(s: dict[str, torch.Tensor], k: str, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    h = torch.cat([F.interpolate(x, skip.shape[2:], mode="bilinear", align_corners=True), skip], 1)
    for conv, bn in ((0, 1), (3, 4)):
        h = F.conv2d(h, s[f"{k}._net.{conv}.weight"], s[f"{k}._net.{conv}.bias"], padding=1)
        h = F.leaky_relu(_norm(s, f"{k}._net.{bn}", h, eps=1e-5), 0.01)
    return h


def _unit(x: torch.Tensor) -> torch.Tensor:
    n = x[:, :3] / (x[:, :3].pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
    return torch.cat([n, F.elu(x[:, 3:]) + 1.01], 1)


def efficientnet_reference(s: dict[str, torch.Tensor], x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The tiny EfficientNet's seven stage outputs and its head convolution (before bn2), `s` without ``module.``."""
    e = "encoder.original_model."
    h = F.silu(_norm(s, e + "bn1", _same(x, s[e + "conv_stem.weight"], 2)))
    outs = []
    for i, (_, blocks, _, stride) in enumerate(STAGES):
        for b in range(blocks):
            h = _block(s, f"{e}blocks.{i}.{b}", h, stride if b == 0 else 1, first=i == 0)
        outs.append(h)
    return outs, F.conv2d(h, s[e + "conv_head.weight"])


def encoder_shapes() -> dict[str, tuple[int, ...]]:
    """The tiny EfficientNet's tensors (``module.encoder.original_model.`` names) alone."""
    return {k: v for k, v in _shapes().items() if k.startswith(ENC)}


def normal_bae_reference(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """NNET's finest output (1×4×H×W) for `x` (normalized, sides multiples of 32)."""
    s = {k.removeprefix("module."): v for k, v in state.items()}
    d = "decoder."
    outs, h = efficientnet_reference(s, x)
    h = F.conv2d(h, s[d + "conv2.weight"], s[d + "conv2.bias"])
    feats = []
    for i, skip in enumerate((outs[4], outs[2], outs[1], outs[0]), start=1):
        h = _up(s, f"{d}up{i}", h, skip)
        feats.append(h)
    out = _unit(F.conv2d(feats[1], s[d + "out_conv_res8.weight"], s[d + "out_conv_res8.bias"], padding=1))
    for name, feat in (("res4", feats[1]), ("res2", feats[2]), ("res1", feats[3])):
        up = lambda t: F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=True)  # noqa: E731
        h = torch.cat([up(feat), up(out)], 1)
        for j in range(4):
            w = s[f"{d}out_conv_{name}.{2 * j}.weight"][..., None]
            h = F.conv2d(h, w, s[f"{d}out_conv_{name}.{2 * j}.bias"])
            h = F.relu(h) if j < 3 else h
        out = _unit(h)
    return out
