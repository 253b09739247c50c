"""Depth maps through transformers' Depth Anything and DPT (MiDaS) models, shaped as sd-webui-controlnet shapes them.

The resize and normalization are done here with OpenCV and numpy (no image processor, so no torchvision):

- ``depth_anything``/``depth_anything_v2``: the picture's channels reversed (the extension converts BGR→RGB on a
  picture that is already RGB), scaled to 0..1, resized bicubically so both sides are at least 518 and multiples
  of 14 ("lower bound"), normalized with ImageNet's mean and std; the predicted depth resized back (bilinear),
  stretched to 0..255 by its minimum and maximum and truncated to 8 bits.
- ``depth_midas``: the picture as it is, in -1..1; the depth stretched by its minimum and maximum to 0..255;
  ``normal_midas``: normals from that depth's Sobel derivatives (``midas_normal_map``).
- ``depth_zoe``: ZoeDepth's own ``infer`` (reflect padding, flip averaging, its 384×512 input scaling); the
  depth's 2nd..85th percentiles stretched to 255..0.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

_MEAN = np.array([0.485, 0.456, 0.406])
_STD = np.array([0.229, 0.224, 0.225])
NET_SIDE, MULTIPLE = 518, 14


def load_depth_model(folder: Path) -> Any:
    """The transformers depth model in `folder` (``config.json`` and its weights), in eval mode."""
    from transformers import AutoModelForDepthEstimation

    try:
        model = AutoModelForDepthEstimation.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError) as error:
        first = str(error).strip().splitlines()[0][:100] if str(error).strip() else type(error).__name__
        raise ValueError(f"controlnet: {folder} is not a transformers depth model ({first})") from None
    return model.eval().requires_grad_(False)


def _multiple(x: float, minimum: int) -> int:
    """`x` rounded to a multiple of 14, rounded up instead where rounding would fall under `minimum`."""
    y = int(round(x / MULTIPLE) * MULTIPLE)
    return y if y >= minimum else int(math.ceil(x / MULTIPLE) * MULTIPLE)


def net_size(height: int, width: int) -> tuple[int, int]:
    """Depth Anything's input size for a `height`×`width` picture: both sides ≥ 518, multiples of 14, aspect kept."""
    scale = max(NET_SIDE / height, NET_SIDE / width)
    return _multiple(scale * height, NET_SIDE), _multiple(scale * width, NET_SIDE)


def depth_anything_input(image: np.ndarray) -> np.ndarray:
    """The 1×3×h×w float32 array Depth Anything is given for `image` (H×W×3 uint8)."""
    import cv2

    x = image[:, :, ::-1] / 255.0
    height, width = net_size(*x.shape[:2])
    x = cv2.resize(np.ascontiguousarray(x), (width, height), interpolation=cv2.INTER_CUBIC)
    x = (x - _MEAN) / _STD
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None]).astype(np.float32)


def _predict(model: Any, pixels: np.ndarray) -> Any:
    import torch

    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    tensor = torch.from_numpy(pixels).to(device, dtype)
    with torch.no_grad():
        if getattr(model, "dpt", None) is not None:
            return _dpt_depth(model, tensor).float()
        return model(pixel_values=tensor).predicted_depth.float()


def _dpt_depth(model: Any, pixels: Any) -> Any:
    """DPT's depth with the patch grid of a picture that is not square.

    ``DPTForDepthEstimation`` reshapes a ViT (or hybrid) backbone's tokens into a square grid; MiDaS runs on the
    padded picture as it is, so the same steps are taken here with the grid the picture has.
    """
    config = model.config
    height, width = pixels.shape[2:]
    if config.is_hybrid:  # its embeddings refuse any size but the config's; the position grid is resized anyway
        model.dpt.embeddings.image_size = (height, width)
    outputs = model.dpt(pixels, output_hidden_states=True)
    layers = outputs.hidden_states[1:]
    if config.is_hybrid:
        states = [
            *outputs.intermediate_activations,
            *(f for i, f in enumerate(layers) if i in config.backbone_out_indices[2:]),
        ]
    else:
        states = [f for i, f in enumerate(layers) if i in config.backbone_out_indices]
    return model.head(model.neck(states, height // config.patch_size, width // config.patch_size))


def depth_anything_map(model: Any, image: np.ndarray) -> np.ndarray:
    """Depth Anything's grey map of `image` at its own size: near is white."""
    import torch.nn.functional as F  # noqa: N812

    depth = _predict(model, depth_anything_input(image))
    depth = F.interpolate(depth[None], image.shape[:2], mode="bilinear", align_corners=False)[0, 0]
    depth = (depth - depth.min()) / (depth.max() - depth.min()) * 255.0
    return depth.cpu().numpy().astype(np.uint8)


def _midas_depth(model: Any, image: np.ndarray) -> Any:
    """MiDaS's (DPT's) raw depth of `image` in -1..1, at the picture's size (H×W)."""
    import torch.nn.functional as F  # noqa: N812

    pixels = np.ascontiguousarray((image.astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)[None])
    depth = _predict(model, pixels)
    if tuple(depth.shape[1:]) != image.shape[:2]:
        depth = F.interpolate(depth[None], image.shape[:2], mode="bilinear", align_corners=False)[0]
    return depth[0]


def midas_map(model: Any, image: np.ndarray) -> np.ndarray:
    """MiDaS (DPT) on the picture in -1..1 at its own size; the depth stretched to 0..255."""
    depth = _midas_depth(model, image)
    depth = depth - depth.min()
    depth = depth / depth.max()
    return (depth.cpu().numpy() * 255.0).clip(0, 255).astype(np.uint8)


def midas_normal_map(model: Any, image: np.ndarray, background: float, a: float = 2 * math.pi) -> np.ndarray:
    """``normal_midas``: normals from MiDaS's depth, as sd-webui-controlnet's ``apply_midas`` makes them.

    The raw depth's Sobel derivatives (3×3) along x and y, zeroed where the depth stretched to 0..1 is under
    `background` (Threshold A), with z = `a` (2π); the unit vector mapped to 0..255, channels in (z, y, x) order.
    """
    import cv2

    depth = _midas_depth(model, image).float().cpu().numpy()
    stretched = depth - depth.min()
    stretched = stretched / stretched.max()
    x = cv2.Sobel(depth, cv2.CV_32F, 1, 0, ksize=3)
    y = cv2.Sobel(depth, cv2.CV_32F, 0, 1, ksize=3)
    x[stretched < background] = 0
    y[stretched < background] = 0
    normal = np.stack([x, y, np.full_like(x, a)], axis=2)
    normal /= np.sum(normal**2.0, axis=2, keepdims=True) ** 0.5
    return np.ascontiguousarray((normal * 127.5 + 127.5).clip(0, 255).astype(np.uint8)[:, :, ::-1])


ZOE_NET = (384, 512)
"""ZoeD_N's input size (height, width); a picture is scaled by the factor of the two that changes it least."""


def zoe_size(height: int, width: int) -> tuple[int, int]:
    """ZoeDepth's input size for a `height`×`width` picture: aspect kept, the least scaling, multiples of 32."""
    scale_h, scale_w = ZOE_NET[0] / height, ZOE_NET[1] / width
    scale = scale_w if abs(1 - scale_w) < abs(1 - scale_h) else scale_h
    return int(np.round(scale * height / 32) * 32), int(np.round(scale * width / 32) * 32)


def _zoe_padded(model: Any, x: Any) -> Any:
    """ZoeDepth's metric depth of `x` (1×3×H×W, 0..1).

    Reflect-padded by ⌊√(side/2)·3⌋, scaled (bilinear, corners aligned), in -1..1; the output brought back
    (bicubic) to the padded size and the padding cropped off.
    """
    import torch.nn.functional as F  # noqa: N812

    pad_h, pad_w = int(np.sqrt(x.shape[2] / 2) * 3), int(np.sqrt(x.shape[3] / 2) * 3)
    padded = F.pad(x, [pad_w, pad_w, pad_h, pad_h], mode="reflect")
    scaled = F.interpolate(padded, zoe_size(*padded.shape[2:]), mode="bilinear", align_corners=True)
    depth = model(pixel_values=(scaled - 0.5) / 0.5).predicted_depth[:, None].float()
    if depth.shape[-2:] != padded.shape[-2:]:
        depth = F.interpolate(depth, padded.shape[-2:], mode="bicubic", align_corners=False)
    return depth[:, :, pad_h : depth.shape[2] - pad_h, pad_w : depth.shape[3] - pad_w]


def zoe_map(model: Any, image: np.ndarray) -> np.ndarray:
    """ZoeDepth's grey map of `image`, as sd-webui-controlnet's ``depth_zoe``.

    The mean of the picture's and its mirror's depth; the 2nd percentile white, the 85th black (near is white).
    """
    import torch

    parameter = next(model.parameters())
    x = torch.from_numpy(np.ascontiguousarray(image)).to(parameter.device, parameter.dtype).permute(2, 0, 1)[None] / 255
    with torch.no_grad():
        depth = (_zoe_padded(model, x) + torch.flip(_zoe_padded(model, torch.flip(x, [3])), [3])) / 2
    depth = depth[0, 0].cpu().numpy()
    low, high = np.percentile(depth, 2), np.percentile(depth, 85)
    return ((1.0 - (depth - low) / (high - low)) * 255.0).clip(0, 255).astype(np.uint8)
