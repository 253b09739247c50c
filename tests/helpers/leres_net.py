"""Tiny weights with the key names and layout of ``res101.pth`` (LeReS: ResNeXt encoder, FTB/FFM decoder) at small
widths and depths, with the network's forward pass written out with torch.nn.functional on the tensors alone (the
reference), the in-place ReLU of the published FTB kept as the published code has it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812

from helpers.normal_nets import batch_norm_net_state

STEM, GROUPS = 8, 2
LAYERS = ((4, 8, 2), (8, 16, 1), (8, 16, 2), (16, 32, 1))
"""(bottleneck width, out channels, blocks) per stage; ResNeXt-101 32×8d's are 256…2048 wide, 3/4/23/3 deep."""
MID = (8, 8, 8, 16)
"""The decoder's widths (LeReS's are 256, 256, 256, 512)."""
ENC, DEC = "module.depth_model.encoder_modules.encoder.", "module.depth_model.decoder_modules."


def _bn(shapes: dict[str, tuple[int, ...]], key: str, width: int) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        shapes[f"{key}.{name}"] = (width,)


def _ftb_shapes(shapes: dict[str, tuple[int, ...]], key: str, cin: int, mid: int) -> None:
    shapes.update({f"{key}.conv1.weight": (mid, cin, 3, 3), f"{key}.conv1.bias": (mid,)})
    for i in (1, 4):
        shapes.update({f"{key}.conv_branch.{i}.weight": (mid, mid, 3, 3), f"{key}.conv_branch.{i}.bias": (mid,)})
    _bn(shapes, f"{key}.conv_branch.2", mid)


def _shapes() -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {ENC + "conv1.weight": (STEM, 3, 7, 7)}
    _bn(shapes, ENC + "bn1", STEM)
    cin = STEM
    for layer, (width, cout, blocks) in enumerate(LAYERS, start=1):
        for b in range(blocks):
            key = f"{ENC}layer{layer}.{b}"
            shapes[key + ".conv1.weight"] = (width, cin, 1, 1)
            shapes[key + ".conv2.weight"] = (width, width // GROUPS, 3, 3)
            shapes[key + ".conv3.weight"] = (cout, width, 1, 1)
            for i, w in ((1, width), (2, width), (3, cout)):
                _bn(shapes, f"{key}.bn{i}", w)
            if b == 0:
                shapes[key + ".downsample.0.weight"] = (cout, cin, 1, 1)
                _bn(shapes, key + ".downsample.1", cout)
            cin = cout
    outs = [cout for _, cout, _ in LAYERS]
    _ftb_shapes(shapes, DEC + "conv", outs[3], MID[3])
    shapes.update({DEC + "conv1.weight": (MID[2], MID[3], 3, 3), DEC + "conv1.bias": (MID[2],)})
    for i in (2, 1, 0):
        _ftb_shapes(shapes, f"{DEC}ffm{i}.ftb1", outs[i], MID[i])
        _ftb_shapes(shapes, f"{DEC}ffm{i}.ftb2", MID[i], MID[i])
    half = MID[0] // 2
    shapes.update(
        {DEC + "outconv.adapt_conv.0.weight": (half, MID[0], 3, 3), DEC + "outconv.adapt_conv.0.bias": (half,)}
    )
    _bn(shapes, DEC + "outconv.adapt_conv.1", half)
    shapes.update({DEC + "outconv.adapt_conv.3.weight": (1, half, 3, 3), DEC + "outconv.adapt_conv.3.bias": (1,)})
    return shapes


def leres_state(seed: int = 7) -> dict[str, torch.Tensor]:
    """Random weights in res101.pth's ``depth_model`` layout (``module.``-prefixed, as the file was saved)."""
    return batch_norm_net_state(_shapes(), seed)


def _norm(s: dict[str, torch.Tensor], key: str, x: torch.Tensor) -> torch.Tensor:
    return F.batch_norm(x, s[f"{key}.running_mean"], s[f"{key}.running_var"], s[f"{key}.weight"], s[f"{key}.bias"])


def _conv(s: dict[str, torch.Tensor], key: str, x: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, s[key + ".weight"], s[key + ".bias"], padding=1)


def _ftb(s: dict[str, torch.Tensor], k: str, x: torch.Tensor) -> torch.Tensor:
    """As published: ``x = conv1(x); x = x + branch(x); relu`` with the branch's first ReLU in place on ``x``."""
    x = _conv(s, k + ".conv1", x)

    def branch(t: torch.Tensor) -> torch.Tensor:
        t = torch.relu_(t)  # rectifies x itself: the sum below reads the rectified x
        t = torch.relu(_norm(s, k + ".conv_branch.2", _conv(s, k + ".conv_branch.1", t)))
        return _conv(s, k + ".conv_branch.4", t)

    x = x + branch(x)
    return torch.relu(x)


def _up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


def leres_reference(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """LeReS's depth (1×1×H×W) for `x` (normalized, sides multiples of 32)."""
    s = {k.removeprefix("module.depth_model."): v for k, v in state.items()}
    e, d = "encoder_modules.encoder.", "decoder_modules."
    h = F.max_pool2d(torch.relu(_norm(s, e + "bn1", F.conv2d(x, s[e + "conv1.weight"], stride=2, padding=3))), 3, 2, 1)
    feats = []
    for layer, (_, _, blocks) in enumerate(LAYERS, start=1):
        for b in range(blocks):
            k, stride = f"{e}layer{layer}.{b}", (2 if layer > 1 and b == 0 else 1)
            y = torch.relu(_norm(s, k + ".bn1", F.conv2d(h, s[k + ".conv1.weight"])))
            y = F.conv2d(y, s[k + ".conv2.weight"], stride=stride, padding=1, groups=GROUPS)
            y = _norm(s, k + ".bn3", F.conv2d(torch.relu(_norm(s, k + ".bn2", y)), s[k + ".conv3.weight"]))
            if b == 0:
                h = _norm(s, k + ".downsample.1", F.conv2d(h, s[k + ".downsample.0.weight"], stride=stride))
            h = torch.relu(y + h)
        feats.append(h)
    h = _up(_conv(s, d + "conv1", _ftb(s, d + "conv", feats[3])))
    for i in (2, 1, 0):
        h = _up(_ftb(s, f"{d}ffm{i}.ftb2", _ftb(s, f"{d}ffm{i}.ftb1", feats[i]) + h))
    h = torch.relu(_norm(s, d + "outconv.adapt_conv.1", _conv(s, d + "outconv.adapt_conv.0", h)))
    return _up(_conv(s, d + "outconv.adapt_conv.3", h))
