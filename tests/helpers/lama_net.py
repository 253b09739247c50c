"""LaMa weights with the key names and shapes of lllyasviel/Annotators' ``ControlNetLama.pth``, written out here from
big-lama's ``config.yaml`` and LaMa's ``FFCResNetGenerator`` (3 halvings, ¾ global channels in the residual
blocks), and the generator's forward pass on the tensors alone (functional ops, no module of ours).

`width` is ``ngf`` (64 published), `blocks` the residual blocks (18 published).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812


def _bn(prefix: str, channels: int) -> dict[str, tuple[int, ...]]:
    names = ("weight", "bias", "running_mean", "running_var")
    return {**{f"{prefix}.{n}": (channels,) for n in names}, f"{prefix}.num_batches_tracked": ()}


def lama_shapes(width: int = 64, blocks: int = 18) -> dict[str, tuple[int, ...]]:
    """Every tensor of the generator's state dict and its shape."""
    w, dim = width, width * 8
    g, loc = int(dim * 0.75), dim - int(dim * 0.75)
    shapes = {"model.1.ffc.convl2l.weight": (w, 4, 7, 7), **_bn("model.1.bn_l", w)}
    shapes |= {"model.2.ffc.convl2l.weight": (2 * w, w, 3, 3), **_bn("model.2.bn_l", 2 * w)}
    shapes |= {"model.3.ffc.convl2l.weight": (4 * w, 2 * w, 3, 3), **_bn("model.3.bn_l", 4 * w)}
    shapes |= {"model.4.ffc.convl2l.weight": (loc, 4 * w, 3, 3), "model.4.ffc.convl2g.weight": (g, 4 * w, 3, 3)}
    shapes |= {**_bn("model.4.bn_l", loc), **_bn("model.4.bn_g", g)}
    for index in range(5, 5 + blocks):
        for conv in ("conv1", "conv2"):
            p = f"model.{index}.{conv}"
            shapes |= {
                f"{p}.ffc.convl2l.weight": (loc, loc, 3, 3),
                f"{p}.ffc.convl2g.weight": (g, loc, 3, 3),
                f"{p}.ffc.convg2l.weight": (loc, g, 3, 3),
                f"{p}.ffc.convg2g.conv1.0.weight": (g // 2, g, 1, 1),
                **_bn(f"{p}.ffc.convg2g.conv1.1", g // 2),
                f"{p}.ffc.convg2g.fu.conv_layer.weight": (g, g, 1, 1),
                **_bn(f"{p}.ffc.convg2g.fu.bn", g),
                f"{p}.ffc.convg2g.conv2.weight": (g, g // 2, 1, 1),
                **_bn(f"{p}.bn_l", loc),
                **_bn(f"{p}.bn_g", g),
            }
    join = 5 + blocks  # ConcatTupleLayer, then (ConvTranspose2d, BatchNorm2d, ReLU) × 3, pad, 7×7 conv, sigmoid
    for step, (cin, cout) in enumerate(((8 * w, 4 * w), (4 * w, 2 * w), (2 * w, w))):
        up = join + 1 + 3 * step
        shapes |= {f"model.{up}.weight": (cin, cout, 3, 3), f"model.{up}.bias": (cout,), **_bn(f"model.{up + 1}", cout)}
    return shapes | {f"model.{join + 11}.weight": (3, w, 7, 7), f"model.{join + 11}.bias": (3,)}


def lama_state(width: int = 8, blocks: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors in the published layout, scaled so activations stay moderate (variances positive)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in lama_shapes(width, blocks).items():
        if name.endswith("num_batches_tracked"):
            state[name] = torch.tensor(7)
        elif name.endswith("running_var"):
            state[name] = torch.rand(shape, generator=generator) + 0.5
        elif len(shape) == 4:
            gain = 4.0 if shape[0] == 3 else 1.0  # the RGB convolution's: a fill that varies, not sigmoid(bias)
            state[name] = torch.randn(shape, generator=generator) * gain / (shape[1] * shape[2] * shape[3]) ** 0.5
        elif name.endswith(".weight"):  # batch norms' scales near 1, so the signal survives 30 layers
            state[name] = 1.0 + torch.randn(shape, generator=generator) * 0.2
        else:
            state[name] = torch.randn(shape, generator=generator) * 0.1
    return state


def _bn_apply(state: dict, prefix: str, x: torch.Tensor) -> torch.Tensor:
    s = {n: state[f"{prefix}.{n}"] for n in ("running_mean", "running_var", "weight", "bias")}
    return F.batch_norm(x, s["running_mean"], s["running_var"], s["weight"], s["bias"], False, 0.0, 1e-5)


def _conv(x: torch.Tensor, weight: torch.Tensor, stride: int = 1, pad: int = 0) -> torch.Tensor:
    return F.conv2d(F.pad(x, (pad,) * 4, mode="reflect") if pad else x, weight, stride=stride)


def fourier_reference(state: dict, prefix: str, x: torch.Tensor) -> torch.Tensor:
    """LaMa's FourierUnit: rfft2 (ortho), real/imag interleaved per channel, 1×1 conv, BN, ReLU, back."""
    batch, channels, height, width = x.shape
    spectrum = torch.fft.rfft2(x, norm="ortho")
    z = torch.stack([spectrum.real, spectrum.imag], dim=2).flatten(1, 2)
    z = F.relu(_bn_apply(state, f"{prefix}.bn", _conv(z, state[f"{prefix}.conv_layer.weight"]))).unflatten(1, (-1, 2))
    return torch.fft.irfft2(torch.complex(z[:, :, 0], z[:, :, 1]), s=(height, width), norm="ortho")


def _ffc_bn_act(state: dict, p: str, local, global_, stride: int, pad: int):
    def conv(name: str, x):
        key = f"{p}.ffc.{name}.weight"
        return _conv(x, state[key], stride, pad) if key in state and x is not None else 0

    out_local = out_global = None
    if f"{p}.bn_l.weight" in state:
        out_local = F.relu(_bn_apply(state, f"{p}.bn_l", conv("convl2l", local) + conv("convg2l", global_)))
    if f"{p}.bn_g.weight" in state:
        spectral = 0
        if f"{p}.ffc.convg2g.conv2.weight" in state and global_ is not None:
            t = F.relu(
                _bn_apply(state, f"{p}.ffc.convg2g.conv1.1", _conv(global_, state[f"{p}.ffc.convg2g.conv1.0.weight"]))
            )
            spectral = _conv(
                t + fourier_reference(state, f"{p}.ffc.convg2g.fu", t), state[f"{p}.ffc.convg2g.conv2.weight"]
            )
        out_global = F.relu(_bn_apply(state, f"{p}.bn_g", conv("convl2g", local) + spectral))
    return out_local, out_global


def lama_reference(state: dict, x: torch.Tensor) -> torch.Tensor:
    """The generator's output for `x` (1×4×H×W) from `state` alone."""
    blocks = len({k.split(".")[1] for k in state if ".conv1.ffc." in k})
    local, global_ = _ffc_bn_act(state, "model.1", F.pad(x, (3,) * 4, mode="reflect"), None, 1, 0)
    for index in (2, 3, 4):
        local, global_ = _ffc_bn_act(state, f"model.{index}", local, global_, 2, 1)
    for index in range(5, 5 + blocks):
        mid = _ffc_bn_act(state, f"model.{index}.conv1", local, global_, 1, 1)
        out = _ffc_bn_act(state, f"model.{index}.conv2", *mid, 1, 1)
        local, global_ = local + out[0], global_ + out[1]
    y = torch.cat([local, global_], dim=1)
    for step in range(3):
        up = 5 + blocks + 1 + 3 * step
        y = F.conv_transpose2d(y, state[f"model.{up}.weight"], state[f"model.{up}.bias"], 2, 1, output_padding=1)
        y = F.relu(_bn_apply(state, f"model.{up + 1}", y))
    final = f"model.{5 + blocks + 11}"
    return torch.sigmoid(F.conv2d(F.pad(y, (3,) * 4, mode="reflect"), state[f"{final}.weight"], state[f"{final}.bias"]))
