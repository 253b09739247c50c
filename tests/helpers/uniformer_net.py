"""UniFormer + UperNet weights in ``upernet_global_small.pth``'s layout (mmseg's ``EncoderDecoder``: ``backbone.``,
``decode_head.``, ``auxiliary_head.``), written from the reference code's modules (sd-webui-controlnet's
``annotator/uniformer/uniformer.py``, mmseg's ``UPerHead``/``PPM``/``FCNHead``, mmcv's ``ConvModule`` with BN), and
their forward written with torch.nn.functional on the tensors alone: the reference ``seg_ufade20k`` must equal.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812

REAL = {"widths": (64, 128, 320, 512), "depths": (3, 4, 8, 3), "channels": 512, "aux_channels": 256, "classes": 150}
"""``upernet_global_small.py``: UniFormer-S, UPerHead 512 channels, FCNHead 256 on stage 3, ADE20K's 150 classes."""
TINY = {"widths": (16, 32, 64, 128), "depths": (2, 1, 2, 1), "channels": 16, "aux_channels": 8, "classes": 24}
"""The same layout, small: stages 3 and 4 keep 64 channels per head (1 and 2 heads)."""
POOLS = (1, 2, 3, 6)


def _bn(shapes: dict, key: str, width: int) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        shapes[f"{key}.{name}"] = (width,)
    shapes[f"{key}.num_batches_tracked"] = ()


def _conv_module(shapes: dict, key: str, cin: int, cout: int, kernel: int) -> None:
    """mmcv ConvModule(norm_cfg=BN): ``conv`` without bias (a norm follows), ``bn``."""
    shapes[f"{key}.conv.weight"] = (cout, cin, kernel, kernel)
    _bn(shapes, f"{key}.bn", cout)


def _backbone(shapes: dict, widths: tuple, depths: tuple) -> None:
    cin = 3
    for s, (c, depth) in enumerate(zip(widths, depths), start=1):
        p = 4 if s == 1 else 2
        shapes |= {f"backbone.patch_embed{s}.proj.weight": (c, cin, p, p), f"backbone.patch_embed{s}.proj.bias": (c,)}
        shapes |= {f"backbone.patch_embed{s}.norm.weight": (c,), f"backbone.patch_embed{s}.norm.bias": (c,)}
        for i in range(depth):
            b = f"backbone.blocks{s}.{i}"
            shapes |= {f"{b}.pos_embed.weight": (c, 1, 3, 3), f"{b}.pos_embed.bias": (c,)}
            if s <= 2:  # CBlock: BN norms, 1x1 conv1/conv2, 5x5 depthwise attn, conv MLP
                _bn(shapes, f"{b}.norm1", c)
                shapes |= {f"{b}.conv1.weight": (c, c, 1, 1), f"{b}.conv1.bias": (c,)}
                shapes |= {f"{b}.conv2.weight": (c, c, 1, 1), f"{b}.conv2.bias": (c,)}
                shapes |= {f"{b}.attn.weight": (c, 1, 5, 5), f"{b}.attn.bias": (c,)}
                _bn(shapes, f"{b}.norm2", c)
                shapes |= {f"{b}.mlp.fc1.weight": (4 * c, c, 1, 1), f"{b}.mlp.fc1.bias": (4 * c,)}
                shapes |= {f"{b}.mlp.fc2.weight": (c, 4 * c, 1, 1), f"{b}.mlp.fc2.bias": (c,)}
            else:  # SABlock: LayerNorms, qkv (biased) and proj linears, linear MLP
                shapes |= {f"{b}.norm1.weight": (c,), f"{b}.norm1.bias": (c,)}
                shapes |= {f"{b}.attn.qkv.weight": (3 * c, c), f"{b}.attn.qkv.bias": (3 * c,)}
                shapes |= {f"{b}.attn.proj.weight": (c, c), f"{b}.attn.proj.bias": (c,)}
                shapes |= {f"{b}.norm2.weight": (c,), f"{b}.norm2.bias": (c,)}
                shapes |= {f"{b}.mlp.fc1.weight": (4 * c, c), f"{b}.mlp.fc1.bias": (4 * c,)}
                shapes |= {f"{b}.mlp.fc2.weight": (c, 4 * c), f"{b}.mlp.fc2.bias": (c,)}
        shapes |= {f"backbone.norm{s}.weight": (c,), f"backbone.norm{s}.bias": (c,)}
        cin = c


def checkpoint_shapes(widths, depths, channels, aux_channels, classes) -> dict[str, tuple[int, ...]]:
    """Every tensor's name and shape in the checkpoint's ``state_dict`` for these sizes."""
    shapes: dict[str, tuple[int, ...]] = {}
    _backbone(shapes, widths, depths)
    for i in range(len(POOLS)):
        _conv_module(shapes, f"decode_head.psp_modules.{i}.1", widths[-1], channels, 1)
    _conv_module(shapes, "decode_head.bottleneck", widths[-1] + len(POOLS) * channels, channels, 3)
    for i, c in enumerate(widths[:-1]):
        _conv_module(shapes, f"decode_head.lateral_convs.{i}", c, channels, 1)
        _conv_module(shapes, f"decode_head.fpn_convs.{i}", channels, channels, 3)
    _conv_module(shapes, "decode_head.fpn_bottleneck", len(widths) * channels, channels, 3)
    shapes |= {"decode_head.conv_seg.weight": (classes, channels, 1, 1), "decode_head.conv_seg.bias": (classes,)}
    _conv_module(shapes, "auxiliary_head.convs.0", widths[2], aux_channels, 3)
    shapes["auxiliary_head.conv_seg.weight"] = (classes, aux_channels, 1, 1)
    shapes["auxiliary_head.conv_seg.bias"] = (classes,)
    return shapes


def uniformer_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights of the tiny layout (norms near identity, running variances positive)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in checkpoint_shapes(**TINY).items():
        if name.endswith("num_batches_tracked"):
            state[name] = torch.tensor(7)
        elif name.endswith("running_var"):
            state[name] = 0.5 + torch.rand(shape, generator=generator)
        elif (".norm" in name or ".bn." in name) and name.endswith(".weight"):
            state[name] = 1.0 + 0.1 * torch.randn(shape, generator=generator)
        else:
            fan_in = max(1, int(torch.tensor(shape[1:]).prod())) if len(shape) > 1 else 4
            state[name] = torch.randn(shape, generator=generator) / fan_in**0.5
    return state


def _ln(x, s, key, eps):
    """LayerNorm over the channels of N×C×H×W."""
    c = x.shape[1]
    return F.layer_norm(x.permute(0, 2, 3, 1), (c,), s[key + ".weight"], s[key + ".bias"], eps).permute(0, 3, 1, 2)


def _bnf(x, s, key):
    w, b, m, v = (s[f"{key}.{n}"] for n in ("weight", "bias", "running_mean", "running_var"))
    return F.batch_norm(x, m, v, w, b, False, 0.0, 1e-5)


def _dw(x, s, key, pad):
    return F.conv2d(x, s[key + ".weight"], s[key + ".bias"], padding=pad, groups=x.shape[1])


def _c1(x, s, key):
    return F.conv2d(x, s[key + ".weight"], s[key + ".bias"])


def _cblock(x, s, b):
    x = x + _dw(x, s, f"{b}.pos_embed", 1)
    x = x + _c1(_dw(_c1(_bnf(x, s, f"{b}.norm1"), s, f"{b}.conv1"), s, f"{b}.attn", 2), s, f"{b}.conv2")
    return x + _c1(F.gelu(_c1(_bnf(x, s, f"{b}.norm2"), s, f"{b}.mlp.fc1")), s, f"{b}.mlp.fc2")


def _sablock(x, s, b, heads):
    x = x + _dw(x, s, f"{b}.pos_embed", 1)
    n, c, h, w = x.shape
    t = x.flatten(2).transpose(1, 2)
    y = F.layer_norm(t, (c,), s[f"{b}.norm1.weight"], s[f"{b}.norm1.bias"], 1e-6)
    qkv = F.linear(y, s[f"{b}.attn.qkv.weight"], s[f"{b}.attn.qkv.bias"]).reshape(n, -1, 3, heads, c // heads)
    q, k, v = (z.transpose(1, 2) for z in qkv.unbind(2))
    attn = ((q @ k.transpose(-2, -1)) * (c // heads) ** -0.5).softmax(-1)
    y = (attn @ v).transpose(1, 2).reshape(n, -1, c)
    t = t + F.linear(y, s[f"{b}.attn.proj.weight"], s[f"{b}.attn.proj.bias"])
    y = F.layer_norm(t, (c,), s[f"{b}.norm2.weight"], s[f"{b}.norm2.bias"], 1e-6)
    y = F.linear(F.gelu(F.linear(y, s[f"{b}.mlp.fc1.weight"], s[f"{b}.mlp.fc1.bias"])), s[f"{b}.mlp.fc2.weight"])
    t = t + y + s[f"{b}.mlp.fc2.bias"]
    return t.transpose(1, 2).reshape(n, c, h, w)


def _cm(x, s, key):
    weight = s[key + ".conv.weight"]
    return F.relu(_bnf(F.conv2d(x, weight, padding=weight.shape[-1] // 2), s, key + ".bn"))


def _bilinear(x, size):
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def uniformer_reference(s: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The class scores at `x`'s size (1×3×H×W, normalized BGR): backbone, UPerHead, upsampled (encode_decode)."""
    feats, h = [], x
    for stage in range(1, 5):
        w = s[f"backbone.patch_embed{stage}.proj.weight"]
        h = F.conv2d(h, w, s[f"backbone.patch_embed{stage}.proj.bias"], stride=w.shape[-1])
        h = _ln(h, s, f"backbone.patch_embed{stage}.norm", 1e-5)
        for i in range(TINY["depths"][stage - 1]):
            b = f"backbone.blocks{stage}.{i}"
            h = _cblock(h, s, b) if stage <= 2 else _sablock(h, s, b, h.shape[1] // 64)
        feats.append(_ln(h, s, f"backbone.norm{stage}", 1e-6))
    top = feats[3]
    psp = [top] + [
        _bilinear(_cm(F.adaptive_avg_pool2d(top, p), s, f"decode_head.psp_modules.{i}.1"), top.shape[2:])
        for i, p in enumerate(POOLS)
    ]
    lat = [_cm(feats[i], s, f"decode_head.lateral_convs.{i}") for i in range(3)]
    lat.append(_cm(torch.cat(psp, 1), s, "decode_head.bottleneck"))
    for i in (3, 2, 1):
        lat[i - 1] = lat[i - 1] + _bilinear(lat[i], lat[i - 1].shape[2:])
    outs = [_cm(lat[i], s, f"decode_head.fpn_convs.{i}") for i in range(3)] + [lat[3]]
    outs = [outs[0]] + [_bilinear(o, outs[0].shape[2:]) for o in outs[1:]]
    out = _cm(torch.cat(outs, 1), s, "decode_head.fpn_bottleneck")
    return _bilinear(_c1(out, s, "decode_head.conv_seg"), x.shape[2:])
