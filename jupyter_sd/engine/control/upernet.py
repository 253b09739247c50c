"""``seg_ufade20k``: UniFormer-S with mmseg's UperNet head (``upernet_global_small.pth``), as sd-webui-controlnet.

The extension's ``annotator/uniformer`` runs mmseg's ``EncoderDecoder`` from ``upernet_global_small.py``; written
here as plain torch modules whose names are the checkpoint's (``backbone.`` is ``uniformer.py``):

- ``decode_head`` (``UPerHead``, 512 channels, ``align_corners`` off): a pyramid pooling module on the last stage
  (adaptive average pools to 1, 2, 3 and 6, each a 1×1 conv-BN-ReLU, upsampled back bilinearly, concatenated with
  the stage and fused by the 3×3 ``bottleneck``); 1×1 ``lateral_convs`` on stages 1–3, a top-down path (each level
  plus the one above, upsampled), 3×3 ``fpn_convs``, every level upsampled to stride 4, concatenated, the 3×3
  ``fpn_bottleneck``, then ``conv_seg`` (1×1, 150 ADE20K classes);
- ``auxiliary_head`` (``FCNHead`` on stage 3: a 3×3 conv-BN-ReLU, ``conv_seg``): a training aid, in the file, loaded
  and never run.

The map (``upernet_labels``): the padded picture the extension hands over (RGB, which mmseg takes for BGR, so its
``to_rgb`` reverses the channels) resized as mmseg's test pipeline does (``Resize`` keep-ratio to (2048, 512): the
scale ``min(2048/long, 512/short)``, OpenCV bilinear on 0..255), normalized with ImageNet's mean and std; the
whole picture in one pass (``mode='whole'``); the class scores upsampled (bilinear) to the resized picture, then to
the padded one, each pixel's best class. ``segmentation.seg_map`` paints it in the ADE20K palette, as mmseg's
``show_result`` with opacity 1 does.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from .uniformer import UniFormer

SCALE = (2048, 512)
"""mmseg's test ``img_scale`` for ADE20K: the long side at most 2048, the short side at most 512."""
POOL_SCALES = (1, 2, 3, 6)
_MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
_STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)


class ConvModule(nn.Module):
    """mmcv's ``ConvModule`` with batch norm: ``conv`` (no bias), ``bn``, ReLU."""

    def __init__(self, width_in: int, width: int, kernel: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(width_in, width, kernel, padding=kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The conv, its batch norm, ReLU."""
        return F.relu(self.bn(self.conv(x)))


def _up(x: torch.Tensor, size: torch.Size | tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class UPerHead(nn.Module):
    """mmseg's ``UPerHead``: PPM on the last stage, FPN over all four, ``conv_seg`` to the classes."""

    def __init__(self, widths: tuple[int, ...], channels: int, classes: int) -> None:
        super().__init__()
        self.psp_modules = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(scale), ConvModule(widths[-1], channels, 1)) for scale in POOL_SCALES
        )
        self.bottleneck = ConvModule(widths[-1] + len(POOL_SCALES) * channels, channels, 3)
        self.lateral_convs = nn.ModuleList(ConvModule(width, channels, 1) for width in widths[:-1])
        self.fpn_convs = nn.ModuleList(ConvModule(channels, channels, 3) for _ in widths[:-1])
        self.fpn_bottleneck = ConvModule(len(widths) * channels, channels, 3)
        self.conv_seg = nn.Conv2d(channels, classes, 1)

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        """The class scores at stride 4 for the backbone's four outputs."""
        top = inputs[-1]
        pooled = [_up(ppm(top), top.shape[2:]) for ppm in self.psp_modules]
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, inputs)]
        laterals.append(self.bottleneck(torch.cat([top, *pooled], dim=1)))
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + _up(laterals[i], laterals[i - 1].shape[2:])
        outs = [conv(x) for conv, x in zip(self.fpn_convs, laterals)] + [laterals[-1]]
        outs = [outs[0]] + [_up(x, outs[0].shape[2:]) for x in outs[1:]]
        return self.conv_seg(self.fpn_bottleneck(torch.cat(outs, dim=1)))


class FCNHead(nn.Module):
    """mmseg's ``FCNHead`` (the auxiliary head): ``convs`` (3×3 conv-BN-ReLU) and ``conv_seg``."""

    def __init__(self, width_in: int, channels: int, classes: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(ConvModule(width_in, channels, 3))
        self.conv_seg = nn.Conv2d(channels, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores from stage 3 (training only)."""
        return self.conv_seg(self.convs(x))


class UperNetUniFormer(nn.Module):
    """The segmentor: ``backbone`` (UniFormer), ``decode_head`` (UPerHead), ``auxiliary_head`` (FCN, not run).

    Parameters
    ----------
    widths, depths
        The backbone's stages (UniFormer-S: 64, 128, 320, 512; 3, 4, 8, 3).
    channels, aux_channels
        The decode head's and the auxiliary head's widths (512, 256).
    classes
        The classes scored (ADE20K's 150).
    mlp_ratio
        The backbone MLPs' hidden width over the block's (4).
    """

    def __init__(
        self,
        widths: tuple[int, ...] = (64, 128, 320, 512),
        depths: tuple[int, ...] = (3, 4, 8, 3),
        channels: int = 512,
        aux_channels: int = 256,
        classes: int = 150,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        self.backbone = UniFormer(widths, depths, mlp_ratio=mlp_ratio)
        self.decode_head = UPerHead(widths, channels, classes)
        self.auxiliary_head = FCNHead(widths[2], aux_channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The class scores at `x`'s size (mmseg's ``encode_decode``), `x` N×3×H×W normalized BGR."""
        return _up(self.decode_head(self.backbone(x)), x.shape[2:])


def _config(state: dict[str, torch.Tensor]) -> dict:
    """The segmentor's sizes, read from the checkpoint's tensors."""
    widths = tuple(state[f"backbone.patch_embed{s}.proj.weight"].shape[0] for s in range(1, 5))
    depths = tuple(
        1 + max(int(m[1]) for k in state if (m := re.match(rf"backbone\.blocks{s}\.(\d+)\.", k))) for s in range(1, 5)
    )
    hidden = state["backbone.blocks1.0.mlp.fc1.weight"].shape[0]
    return {
        "widths": widths,
        "depths": depths,
        "channels": state["decode_head.conv_seg.weight"].shape[1],
        "aux_channels": state["auxiliary_head.conv_seg.weight"].shape[1],
        "classes": state["decode_head.conv_seg.weight"].shape[0],
        "mlp_ratio": hidden / widths[0],
    }


def _with_counters(state: dict[str, torch.Tensor], net: nn.Module) -> dict[str, torch.Tensor]:
    """`state` with any batch norm's ``num_batches_tracked`` it lacks (older checkpoints leave it out)."""
    missing = [k for k in net.state_dict() if k.endswith("num_batches_tracked") and k not in state]
    return {**state, **{k: torch.tensor(0) for k in missing}}


def load_upernet(path: Path) -> UperNetUniFormer:
    """The segmentor with the weights of `path` (mmseg's checkpoint: its ``state_dict``, ``module.`` dropped).

    Raises
    ------
    ValueError
        One line where the file holds other weights.
    """
    from .edge_nets import read_state_dict

    state = {k.removeprefix("module."): v for k, v in read_state_dict(path).items()}
    try:
        net = UperNetUniFormer(**_config(state))
        net.load_state_dict(_with_counters(state, net), strict=True)
    except (KeyError, RuntimeError, IndexError, ValueError, AttributeError) as error:
        first = str(error).strip().splitlines()[0][:80] if str(error).strip() else type(error).__name__
        raise ValueError(f"controlnet: {path.name} is not seg_ufade20k (UniFormer UperNet) weights ({first})") from None
    return net.eval()


def input_size(height: int, width: int) -> tuple[int, int]:
    """The size mmcv's ``imrescale`` to ``SCALE`` gives: scaled by ``min(2048/long, 512/short)``, rounded."""
    scale = min(max(SCALE) / max(height, width), min(SCALE) / min(height, width))
    return int(height * scale + 0.5), int(width * scale + 0.5)


def upernet_input(image: np.ndarray) -> np.ndarray:
    """`image` (H×W×3 uint8 RGB) as the network sees it: resized, channels reversed, normalized; 1×3×h×w."""
    import cv2

    height, width = input_size(*image.shape[:2])
    resized = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    normalized = (resized[:, :, ::-1].astype(np.float32) - _MEAN) / _STD
    return np.ascontiguousarray(normalized.transpose(2, 0, 1)[None])


def upernet_scores(net: UperNetUniFormer, image: np.ndarray) -> torch.Tensor:
    """Each class's score at each pixel of `image` (1×C×H×W): the resized picture's, upsampled to `image`'s size."""
    parameter = next(net.parameters())
    x = torch.from_numpy(upernet_input(image)).to(parameter.device, parameter.dtype)
    with torch.no_grad():
        return _up(net(x).float(), image.shape[:2])


def upernet_labels(net: UperNetUniFormer, image: np.ndarray) -> np.ndarray:
    """Each pixel's best ADE20K class (H×W int) for `image` (H×W×3 uint8 RGB)."""
    return upernet_scores(net, image)[0].argmax(0).cpu().numpy()
