"""``inpaint_only+lama``: LaMa (big-lama's FFC ResNet generator, ``ControlNetLama.pth``) fills the mask first.

The generator, as sd-webui-controlnet builds it from LaMa's ``config.yaml`` (``ffc_resnet``: 64 features, 3 halvings,
18 residual blocks, sigmoid out): a 7×7 convolution, three stride-2 3×3 convolutions (reflect padding), the last
splitting its output into local (¼) and global (¾) channels, residual blocks of Fast Fourier Convolutions (local→local
and cross terms by 3×3 convolutions, global→global by a spectral transform: a 1×1 convolution on the real and
imaginary parts of the picture's 2-D FFT), the halves joined, three transposed convolutions up and a 7×7 to RGB.
Parameter names are the published file's (``model.5.conv1.ffc.convg2g.fu.conv_layer.weight`` …).

The preprocessor runs as the extension's: the picture with its mask (alpha) scaled to short side 256 and edge-padded
to multiples of 64, the masked pixels blacked and the mask given as a fourth channel, LaMa's fill kept inside the
mask only, cropped and resized (bilinear) back, then blended with the picture by the soft mask: H×W×4, the mask kept.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

GLOBAL_RATIO = 0.75
"""The share of the residual blocks' channels that go through the spectral (global) branch."""
DOWNS = 3
LAMA_RESOLUTION = 256
"""sd-webui-controlnet always runs LaMa at 256 (its training size); the unit's resolution is not used."""

Pair = tuple[torch.Tensor, "torch.Tensor | None"]


class FourierUnit(nn.Module):
    """A 1×1 convolution, batch norm and ReLU on the 2-D real FFT (real and imaginary parts interleaved per channel)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_layer = nn.Conv2d(channels * 2, channels * 2, 1, bias=False)
        self.bn = nn.BatchNorm2d(channels * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`x` (B×C×H×W) through the unit: the same shape."""
        batch, channels, height, width = x.shape
        spectrum = torch.fft.rfftn(x, dim=(-2, -1), norm="ortho")
        parts = torch.stack((spectrum.real, spectrum.imag), dim=2).reshape(batch, channels * 2, height, -1)
        parts = F.relu(self.bn(self.conv_layer(parts))).reshape(batch, channels, 2, height, -1)
        spectrum = torch.complex(parts[:, :, 0], parts[:, :, 1])
        return torch.fft.irfftn(spectrum, s=(height, width), dim=(-2, -1), norm="ortho")


class SpectralTransform(nn.Module):
    """The global→global path: 1×1 down to half the channels, plus its Fourier unit, 1×1 up (no local FU here)."""

    def __init__(self, channels_in: int, channels_out: int) -> None:
        super().__init__()
        half = channels_out // 2
        self.conv1 = nn.Sequential(nn.Conv2d(channels_in, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU())
        self.fu = FourierUnit(half)
        self.conv2 = nn.Conv2d(half, channels_out, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The global channels in, the global channels out (same size: no stride in the blocks)."""
        x = self.conv1(x)
        return self.conv2(x + self.fu(x))


class FFC(nn.Module):
    """A Fast Fourier Convolution: local and global channels in and out, the four paths where both sides exist."""

    def __init__(self, cin: int, cout: int, kernel: int, ratio_in: float, ratio_out: float, **conv: Any) -> None:
        super().__init__()
        global_in, global_out = int(cin * ratio_in), int(cout * ratio_out)
        local_in, local_out = cin - global_in, cout - global_out

        def spatial(a: int, b: int) -> nn.Module | None:
            return nn.Conv2d(a, b, kernel, bias=False, padding_mode="reflect", **conv) if a and b else None

        self.convl2l, self.convl2g = spatial(local_in, local_out), spatial(local_in, global_out)
        self.convg2l = spatial(global_in, local_out)
        self.convg2g = SpectralTransform(global_in, global_out) if global_in and global_out else None
        self.local_out, self.global_out = local_out, global_out

    def forward(self, x: Pair) -> Pair:
        """``(local, global)`` in, ``(local, global)`` out; None where a side has no channels."""
        local, global_ = x
        out_local = out_global = None
        if self.local_out:
            out_local = _sum(self.convl2l, local, self.convg2l, global_)
        if self.global_out:
            out_global = _sum(self.convl2g, local, self.convg2g, global_)
        return out_local, out_global


def _sum(from_local: nn.Module | None, local: Any, from_global: nn.Module | None, global_: Any) -> torch.Tensor:
    made = [path(x) for path, x in ((from_local, local), (from_global, global_)) if path is not None]
    return made[0] if len(made) == 1 else made[0] + made[1]


class FFCBnAct(nn.Module):
    """An FFC, then batch norm and ReLU on each of its outputs (``FFC_BN_ACT``)."""

    def __init__(self, cin: int, cout: int, kernel: int, ratio_in: float, ratio_out: float, **conv: Any) -> None:
        super().__init__()
        self.ffc = FFC(cin, cout, kernel, ratio_in, ratio_out, **conv)
        self.bn_l = nn.BatchNorm2d(self.ffc.local_out) if self.ffc.local_out else None
        self.bn_g = nn.BatchNorm2d(self.ffc.global_out) if self.ffc.global_out else None

    def forward(self, x: Pair | torch.Tensor) -> Pair:
        """A tensor (all local) or a ``(local, global)`` pair in, the pair out."""
        local, global_ = self.ffc(x if isinstance(x, tuple) else (x, None))
        local = None if local is None else F.relu(self.bn_l(local))
        return local, None if global_ is None else F.relu(self.bn_g(global_))


class FFCResnetBlock(nn.Module):
    """Two 3×3 FFCs (¾ global) with the block's input added back to each half."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv1 = FFCBnAct(dim, dim, 3, GLOBAL_RATIO, GLOBAL_RATIO, padding=1)
        self.conv2 = FFCBnAct(dim, dim, 3, GLOBAL_RATIO, GLOBAL_RATIO, padding=1)

    def forward(self, x: Pair) -> Pair:
        """The pair in, the pair out, each with the input added back."""
        local, global_ = self.conv2(self.conv1(x))
        return x[0] + local, x[1] + global_


class _Join(nn.Module):
    def forward(self, x: Pair) -> torch.Tensor:
        return x[0] if x[1] is None else torch.cat(x, dim=1)


class LamaGenerator(nn.Module):
    """big-lama's generator: 4 channels in (the blacked picture and its mask, 0..1), RGB in 0..1 out."""

    def __init__(self, width: int = 64, blocks: int = 18) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), FFCBnAct(4, width, 7, 0, 0)]
        for i in range(DOWNS):
            ratio_out = GLOBAL_RATIO if i == DOWNS - 1 else 0
            layers.append(FFCBnAct(width * 2**i, width * 2 ** (i + 1), 3, 0, ratio_out, stride=2, padding=1))
        layers += [FFCResnetBlock(width * 2**DOWNS) for _ in range(blocks)]
        layers.append(_Join())
        for i in range(DOWNS, 0, -1):
            up = nn.ConvTranspose2d(width * 2**i, width * 2 ** (i - 1), 3, stride=2, padding=1, output_padding=1)
            layers += [up, nn.BatchNorm2d(width * 2 ** (i - 1)), nn.ReLU()]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(width, 3, 7), nn.Sigmoid()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`x`: 1×4×H×W (sides multiples of 8); the generated RGB, 0..1."""
        return self.model(x)


def load_lama(path: Path) -> LamaGenerator:
    """The generator with the tensors of ``ControlNetLama.pth`` at `path`, loaded strictly; one line if not.

    Batch norms' ``num_batches_tracked`` counters (unused in eval) may be absent; every other key must match.
    """
    from .edge_nets import read_state_dict

    state = read_state_dict(path)
    try:
        width = int(state["model.1.ffc.convl2l.weight"].shape[0])
        blocks = len({key.split(".")[1] for key in state if ".conv1.ffc." in key and key.startswith("model.")})
        net = LamaGenerator(width, blocks)
        missing, unexpected = net.load_state_dict(state, strict=False)
        missing = [key for key in missing if not key.endswith("num_batches_tracked")]
        if missing or unexpected:
            raise RuntimeError(f"missing {missing[:1]}, unexpected {unexpected[:1]}")
    except (KeyError, RuntimeError, AttributeError) as error:
        first = str(error).strip().splitlines()[0][:80]
        raise ValueError(f"controlnet: {path.name} is not LaMa weights ({first})") from None
    return net.eval().requires_grad_(False)


def lama_fill(net: Any, picture: np.ndarray) -> np.ndarray:
    """LaMa on `picture` (H×W×4 uint8, sides multiples of 8): its fill inside the mask (alpha > ½), RGB uint8."""
    device = next(net.parameters()).device
    rgba = torch.from_numpy(np.ascontiguousarray(picture)).float().to(device) / 255.0
    mask = (rgba[:, :, 3:4] > 0.5).float()
    colour = rgba[:, :, :3] * (1 - mask)
    with torch.no_grad():
        made = net(torch.cat([colour, mask], dim=2).permute(2, 0, 1)[None])[0].permute(1, 2, 0)
    made = (made * mask + colour * (1 - mask)) * 255.0
    return made.cpu().numpy().clip(0, 255).astype(np.uint8)


def lama_inpaint_map(net: Any, picture: np.ndarray) -> np.ndarray:
    """``inpaint_only+lama``'s map of `picture` (H×W×4 uint8, the mask in alpha): LaMa's fill blended in, mask kept."""
    import cv2

    from .resolution import scale_with_pad

    height, width = picture.shape[:2]
    padded, (scaled_h, scaled_w) = scale_with_pad(picture, LAMA_RESOLUTION)
    filled = cv2.resize(lama_fill(net, padded)[:scaled_h, :scaled_w], (width, height))
    alpha = picture[:, :, 3:4].astype(np.float32) / 255.0
    blended = filled.astype(np.float32) * alpha + picture[:, :, :3].astype(np.float32) * (1 - alpha)
    mask = picture[:, :, 3:4].astype(np.uint8)
    return np.concatenate([blended.clip(0, 255).astype(np.uint8), mask], axis=2)


def outpaint_input(picture: np.ndarray, width: int, height: int) -> np.ndarray:
    """`picture` (H×W×4, the mask in alpha) fitted to the size painted by "Resize and Fill", before LaMa runs.

    sd-webui-controlnet's outpaint fix for ``inpaint_only+lama``: the added border is masked (the map stays float,
    unrounded), so LaMa fills the border too.
    """
    from .maps import fit_map

    return fit_map(picture.astype(np.float32), width, height, "Resize and Fill")


def lama_start_noise(noise: torch.Tensor, map_latent: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """The start noise sd-webui-controlnet gives a picture with an ``inpaint_only+lama`` unit.

    The map's latent (its RGB in −1..1 through the VAE, scaled) diffused to the last timestep:
    ``√ᾱ·x₀ + √(1−ᾱ)·noise`` at t = 999. A latent of another size (a hires pass) leaves the noise as it is, as the
    extension does.
    """
    if noise.shape[-2:] != map_latent.shape[-2:]:
        return noise
    last = alphas_cumprod[-1].to(device=noise.device, dtype=noise.dtype)
    return last.sqrt() * map_latent.to(noise) + (1 - last).sqrt() * noise
