"""Tiny weights in ``dsine.pt``'s layout (normal_dsine: the EfficientNet of normal_nets, DSINE's decoder, GRU and
refinement heads) and DSINE's forward pass written out with torch.nn.functional on the tensors alone (the reference):
the camera as a 3×3 intrinsics matrix, rays from a pixel-centre grid, rotations as axis-angle → quaternion → matrix.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812

from helpers.normal_nets import STAGES, batch_norm_net_state, efficientnet_reference, encoder_shapes

NF, UP1, UP2, HEAD_HIDDEN, FEAT, HIDDEN, PS, REFINE_HIDDEN = 16, 16, 8, 8, 8, 8, 5, 8
"""dsine.pt's 2048, 1024, 512, 128, 64, 64, 5, 64 made small (the patch size kept)."""
HEADS = {
    "decoder.normal_head": (UP2 + 2, HEAD_HIDDEN, 3),
    "decoder.feature_head": (UP2 + 2, HEAD_HIDDEN, FEAT),
    "decoder.hidden_head": (UP2 + 2, HEAD_HIDDEN, HIDDEN),
    "prob_head": (HIDDEN + 2, REFINE_HIDDEN, PS * PS),
    "xy_head": (HIDDEN + 2, REFINE_HIDDEN, 2 * PS * PS),
    "angle_head": (HIDDEN + 2, REFINE_HIDDEN, PS * PS),
    "up_prob_head": (HIDDEN + 2, REFINE_HIDDEN, 9 * 8 * 8),
}


def _conv(shapes: dict[str, tuple[int, ...]], key: str, cout: int, cin: int, k: int) -> None:
    shapes[key + ".weight"], shapes[key + ".bias"] = (cout, cin, k, k), (cout,)


def dsine_state(seed: int = 7) -> dict[str, torch.Tensor]:
    """Random weights in dsine.pt's layout (``module.``-prefixed)."""
    shapes = encoder_shapes()
    head_width = shapes["module.encoder.original_model.conv_head.weight"][0]
    c8, c16 = STAGES[2][0], STAGES[4][0]  # the 1/8 and last 1/16 stages' widths
    d = "module.decoder."
    _conv(shapes, d + "conv2", NF, head_width + 2, 1)
    for name, cin, cout in (("up1", NF + c16 + 2, UP1), ("up2", UP1 + c8 + 2, UP2)):
        _conv(shapes, f"{d}{name}._net.0", cout, cin, 3)
        _conv(shapes, f"{d}{name}._net.3", cout, cout, 3)
        for norm in (1, 4):
            shapes[f"{d}{name}._net.{norm}.weight"] = shapes[f"{d}{name}._net.{norm}.bias"] = (cout,)
    for key, (cin, hidden, cout) in HEADS.items():
        _conv(shapes, f"module.{key}.0", hidden, cin, 3)
        _conv(shapes, f"module.{key}.2", hidden, hidden, 1)
        _conv(shapes, f"module.{key}.4", cout, hidden, 1)
    for gate in ("convz", "convr", "convq"):
        _conv(shapes, f"module.gru.{gate}", HIDDEN, HIDDEN + FEAT + 2, PS)
    return batch_norm_net_state(shapes, seed)


def _ws_conv(s: dict[str, torch.Tensor], key: str, x: torch.Tensor) -> torch.Tensor:
    w = s[key + ".weight"]
    w = w - w.mean(dim=1, keepdim=True).mean(dim=2, keepdim=True).mean(dim=3, keepdim=True)
    w = w / (w.reshape(w.shape[0], -1).std(dim=1).reshape(-1, 1, 1, 1) + 1e-5)
    return F.conv2d(x, w, s[key + ".bias"], padding=1)


def _up(s: dict[str, torch.Tensor], key: str, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    h = torch.cat([F.interpolate(x, size=skip.shape[2:], mode="bilinear", align_corners=False), skip], 1)
    for conv, norm in ((0, 1), (3, 4)):
        h = _ws_conv(s, f"{key}._net.{conv}", h)
        h = F.leaky_relu(F.group_norm(h, 8, s[f"{key}._net.{norm}.weight"], s[f"{key}._net.{norm}.bias"]), 0.01)
    return h


def _head(s: dict[str, torch.Tensor], key: str, x: torch.Tensor) -> torch.Tensor:
    h = F.relu(F.conv2d(x, s[key + ".0.weight"], s[key + ".0.bias"], padding=1))
    h = F.relu(F.conv2d(h, s[key + ".2.weight"], s[key + ".2.bias"]))
    return F.conv2d(h, s[key + ".4.weight"], s[key + ".4.bias"])


def _coords(h: int, w: int) -> torch.Tensor:
    coords = torch.ones(1, 3, h, w)
    coords[0, 0] = torch.arange(w).float().view(1, w).expand(h, w) + 0.5
    coords[0, 1] = torch.arange(h).float().view(h, 1).expand(h, w) + 0.5
    return coords


def _cam(intrins: torch.Tensor, h: int, w: int, full_h: int, full_w: int) -> tuple[torch.Tensor, ...]:
    sw, sh = w / full_w, h / full_h
    return intrins[0, 0] * sw, intrins[1, 1] * sh, intrins[0, 2] * sw, intrins[1, 2] * sh


def _ray(intrins: torch.Tensor, h: int, w: int, full_h: int, full_w: int) -> torch.Tensor:
    fu, fv, cu, cv = _cam(intrins, h, w, full_h, full_w)
    ray = _coords(h, w)
    ray[:, 0], ray[:, 1] = (ray[:, 0] - cu) / fu, (ray[:, 1] - cv) / fv
    return ray


def _ray_relu(n: torch.Tensor, ray: torch.Tensor) -> torch.Tensor:
    cos = torch.cosine_similarity(n, ray, dim=1).unsqueeze(1)
    return F.normalize(n + ray * (torch.relu(cos - 0.01) + 0.01) - ray * cos, dim=1)


def _unfold(x: torch.Tensor, ps: int) -> torch.Tensor:
    b, c, h, w = x.shape
    p = (ps - 1) // 2
    return F.unfold(F.pad(x, (p, p, p, p), mode="replicate"), [ps, ps]).view(b, c, ps * ps, h, w)


def _convex(x: torch.Tensor, mask: torch.Tensor, k: int = 8) -> torch.Tensor:
    b, c, h, w = x.shape
    mask = torch.softmax(mask.view(b, 1, 9, k, k, h, w), dim=2)
    up = (mask * _unfold(x, 3).view(b, c, 9, 1, 1, h, w)).sum(dim=2)
    return F.normalize(up.permute(0, 1, 4, 2, 5, 3).reshape(b, c, k * h, k * w), dim=1)


def _matrix(axis_angle: torch.Tensor) -> torch.Tensor:
    """Axis-angle (…×3) → rotation matrices (…×3×3) through the unit quaternion."""
    angle = axis_angle.norm(dim=-1, keepdim=True)
    safe = torch.where(angle < 1e-6, torch.ones_like(angle), angle)
    scale = torch.where(angle < 1e-6, 0.5 - angle * angle / 48, torch.sin(angle * 0.5) / safe)
    r, i, j, k = torch.cat([torch.cos(angle * 0.5), axis_angle * scale], -1).unbind(-1)
    rows = (
        (1 - 2 * (j * j + k * k), 2 * (i * j - k * r), 2 * (i * k + j * r)),
        (2 * (i * j + k * r), 1 - 2 * (i * i + k * k), 2 * (j * k - i * r)),
        (2 * (i * k - j * r), 2 * (j * k + i * r), 1 - 2 * (i * i + j * j)),
    )
    return torch.stack([torch.stack(row, -1) for row in rows], -2)


def _refine(s, h, feat, normal, intrins, full, uv_8, ray_8):  # noqa: ANN001, ANN202 - the reference's step
    b, _, hh, ww = normal.shape
    fu, fv, cu, cv = _cam(intrins, hh, ww, *full)
    gru_in = torch.cat([h, feat], 1)
    z = torch.sigmoid(F.conv2d(gru_in, s["gru.convz.weight"], s["gru.convz.bias"], padding=PS // 2))
    r = torch.sigmoid(F.conv2d(gru_in, s["gru.convr.weight"], s["gru.convr.bias"], padding=PS // 2))
    q = torch.tanh(F.conv2d(torch.cat([r * h, feat], 1), s["gru.convq.weight"], s["gru.convq.bias"], padding=PS // 2))
    h = (1 - z) * h + z * q
    inp = torch.cat([h, uv_8], 1)
    prob = torch.sigmoid(_head(s, "prob_head", inp)).unsqueeze(1)
    nbr = _unfold(normal, PS)
    xy = _head(s, "xy_head", inp)
    xy = F.normalize(torch.stack([xy[:, : PS * PS], xy[:, PS * PS :]], 1), dim=1)
    angle = (torch.sigmoid(_head(s, "angle_head", inp)) * math.pi).unsqueeze(1)
    pix = _unfold(_coords(hh, ww), PS)
    du, dv = xy[:, 0] / fu, xy[:, 1] / fv
    tu, tv = (pix[:, 0] + xy[:, 0] - cu) / fu, (pix[:, 1] + xy[:, 1] - cv) / fv
    den = tu * nbr[:, 0] + tv * nbr[:, 1] + nbr[:, 2]
    small = den.abs() < 1e-8
    den[small] = 1e-8 * torch.sign(den[small])
    dz = -(du * nbr[:, 0] + dv * nbr[:, 1]) / den
    axes = F.normalize(torch.stack([du + dz * tu, dv + dz * tv, dz], 1), dim=1)
    axes[(torch.isnan(axes) | torch.isinf(axes)).any(1, keepdim=True).expand_as(axes)] = 0.0
    rot = _matrix((axes * angle).permute(0, 2, 3, 4, 1))  # B×ps²×H×W×3×3
    turned = (rot @ nbr.permute(0, 2, 3, 4, 1).unsqueeze(-1)).squeeze(-1).permute(0, 4, 1, 2, 3)
    turned = F.normalize(turned, dim=1)
    turned = torch.stack([_ray_relu(turned[:, :, i], ray_8) for i in range(PS * PS)], 2)
    normal = F.normalize((prob * turned).sum(2), dim=1)
    return h, normal, _convex(normal, _head(s, "up_prob_head", inp))


def dsine_reference(state: dict[str, torch.Tensor], x: torch.Tensor, intrins: torch.Tensor, iterations: int):  # noqa: ANN201
    """DSINE's final normals (1×3×H×W) for `x` (normalized, sides multiples of 32) and a 3×3 `intrins`."""
    s = {k.removeprefix("module."): v for k, v in state.items()}
    outs, head = efficientnet_reference(s, x)
    full = (x.shape[2], x.shape[3])
    intrins = intrins.clone()
    intrins[0, 2] += 0.5
    intrins[1, 2] += 0.5
    uv_32, uv_16, uv_8 = (_ray(intrins, full[0] // d, full[1] // d, *full)[:, :2] for d in (32, 16, 8))
    ray_8 = F.normalize(_ray(intrins, full[0] // 8, full[1] // 8, *full), dim=1)
    d = "decoder."
    x_d = F.conv2d(torch.cat([head, uv_32], 1), s[d + "conv2.weight"], s[d + "conv2.bias"])
    x_d = _up(s, d + "up1", x_d, torch.cat([outs[4], uv_16], 1))
    feat_in = torch.cat([_up(s, d + "up2", x_d, torch.cat([outs[2], uv_8], 1)), uv_8], 1)
    normal = _ray_relu(F.normalize(_head(s, d + "normal_head", feat_in), dim=1), ray_8)
    feat, h = torch.cat([_head(s, d + "feature_head", feat_in), uv_8], 1), _head(s, d + "hidden_head", feat_in)
    up = _convex(normal, _head(s, "up_prob_head", torch.cat([h, uv_8], 1)))
    for _ in range(iterations):
        h, normal, up = _refine(s, h, feat, normal, intrins, full, uv_8, ray_8)
    return up
