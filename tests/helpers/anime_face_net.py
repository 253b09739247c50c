"""Tiny weights with the key names and layout of ``UNet.pth`` (the anime face segmentation U-Net: MobileNetV2's
features as ``en_block0..4``, ``de_block4..0``) at small widths and depths, and the network's forward pass written
out with torch.nn.functional on the tensors alone (the reference).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812

from helpers.normal_nets import batch_norm_net_state

STEM = 8
ENCODER = (
    ((None, 4),),
    ((8, 6), (12, 6)),
    ((12, 8), (16, 8)),
    ((16, 10), (20, 12)),
    ((24, 14), (28, 14)),
)
"""Per ``en_blockN``, each inverted residual's (expanded width or None for none, output width), its input width
the previous output; ``en_block0`` starts with the stem. ``en_block3``'s second block changes the width (no
residual), as MobileNetV2's 64 → 96 step does. MobileNetV2's are 16…160 wide, and
``en_block3`` has 7 blocks (64 then 96 wide), ``en_block4`` 3."""
CLASSES = 7


def _bn(shapes: dict[str, tuple[int, ...]], key: str, width: int) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        shapes[f"{key}.{name}"] = (width,)


def _shapes() -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {"en_block0.0.0.weight": (STEM, 3, 3, 3)}
    _bn(shapes, "en_block0.0.1", STEM)
    cin, widths = STEM, []
    for n, blocks in enumerate(ENCODER):
        for b, (hidden, cout) in enumerate(blocks):
            key = f"en_block{n}.{b + 1 if n == 0 else b}.conv"
            if hidden is None:  # expansion 1: depthwise, projection
                shapes[key + ".0.0.weight"] = (cin, 1, 3, 3)
                _bn(shapes, key + ".0.1", cin)
                shapes[key + ".1.weight"] = (cout, cin, 1, 1)
                _bn(shapes, key + ".2", cout)
            else:
                shapes[key + ".0.0.weight"] = (hidden, cin, 1, 1)
                _bn(shapes, key + ".0.1", hidden)
                shapes[key + ".1.0.weight"] = (hidden, 1, 3, 3)
                _bn(shapes, key + ".1.1", hidden)
                shapes[key + ".2.weight"] = (cout, hidden, 1, 1)
                _bn(shapes, key + ".3", cout)
            cin = cout
        widths.append(cin)
    for n in (4, 3, 2, 1):
        cin_dec = widths[4] if n == 4 else 2 * widths[n]
        shapes[f"de_block{n}.1.weight"] = (widths[n - 1], cin_dec, 3, 3)
        shapes[f"de_block{n}.1.bias"] = (widths[n - 1],)
    shapes["de_block0.1.weight"] = (CLASSES, 2 * widths[0], 3, 3)
    shapes["de_block0.1.bias"] = (CLASSES,)
    return shapes


def anime_face_state() -> dict[str, torch.Tensor]:
    """Random weights in ``UNet.pth``'s names, with the batch norms' counters torchvision saves."""
    state = batch_norm_net_state(_shapes(), 24)
    for key in [k for k in state if k.endswith("running_var")]:
        state[key.removesuffix("running_var") + "num_batches_tracked"] = torch.tensor(0)
    return state


def _norm(s: dict[str, torch.Tensor], key: str, x: torch.Tensor) -> torch.Tensor:
    return F.batch_norm(x, s[key + ".running_mean"], s[key + ".running_var"], s[key + ".weight"], s[key + ".bias"])


def _cbr(s: dict[str, torch.Tensor], conv: str, norm: str, x: torch.Tensor, stride: int = 1) -> torch.Tensor:
    w = s[conv]
    groups = x.shape[1] if w.shape[1] == 1 and x.shape[1] > 1 else 1
    return F.relu6(_norm(s, norm, F.conv2d(x, w, None, stride, w.shape[2] // 2, 1, groups)))


def _block(s: dict[str, torch.Tensor], key: str, hidden: int | None, x: torch.Tensor, stride: int) -> torch.Tensor:
    if hidden is None:
        h = _cbr(s, key + ".0.0.weight", key + ".0.1", x, stride)
        out = _norm(s, key + ".2", F.conv2d(h, s[key + ".1.weight"]))
    else:
        h = _cbr(s, key + ".0.0.weight", key + ".0.1", x)
        h = _cbr(s, key + ".1.0.weight", key + ".1.1", h, stride)
        out = _norm(s, key + ".3", F.conv2d(h, s[key + ".2.weight"]))
    return x + out if stride == 1 and x.shape[1] == out.shape[1] else out


def anime_face_reference(s: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The 7 class probabilities for `x` (1×3×H×W, 0..1)."""
    h = _cbr(s, "en_block0.0.0.weight", "en_block0.0.1", x, 2)
    skips = []
    for n, blocks in enumerate(ENCODER):
        for b, (hidden, _) in enumerate(blocks):
            stride = 2 if b == 0 and n > 0 else 1
            h = _block(s, f"en_block{n}.{b + 1 if n == 0 else b}.conv", hidden, h, stride)
        skips.append(h)
    for n in (4, 3, 2, 1):
        up = F.interpolate(h, scale_factor=2, mode="nearest")
        up = F.conv2d(up, s[f"de_block{n}.1.weight"], s[f"de_block{n}.1.bias"], padding=1)
        up = F.leaky_relu(F.instance_norm(up), 0.1)
        skip = skips[n - 1]
        h = torch.cat([F.interpolate(up, size=skip.shape[2:], mode="bilinear", align_corners=True), skip], dim=1)
    h = F.interpolate(h, scale_factor=2, mode="nearest")
    return torch.softmax(F.conv2d(h, s["de_block0.1.weight"], s["de_block0.1.bias"], padding=1), dim=1)
