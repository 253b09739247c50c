"""Upscaler models for the hires fix: A1111's ``ESRGAN/`` folder (ESRGAN, Real-ESRGAN, the compact Real-ESRGAN).

Civitai recipes name them in ``Hires upscaler: 4x-UltraSharp`` or ``R-ESRGAN 4x+``. Two network families cover the
upscalers those recipes use: RRDBNet (ESRGAN's residual-in-residual dense blocks, in the original ``model.N.``
layout of 4x-UltraSharp, Remacri, NMKD and friends, or BasicSR's ``conv_first``/``body`` layout of
RealESRGAN_x4plus, x2plus and Anime6B) and SRVGGNetCompact (realesr-general-x4v3, realesr-animevideov3). The
layout and sizes are read from the weights, never from the file name.

As A1111 does, a picture is upscaled by the model (up to three times) until it covers the target, then resized
to it with Lanczos, and large pictures go through the network in overlapping tiles so memory stays bounded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image

from .network_state import file_stamp

TILE = 192
"""Tile side in input pixels (A1111's default ``ESRGAN_tile``)."""
OVERLAP = 16
"""Input pixels of context around each tile, cropped away after the network (no seams in flat areas)."""


def read_upscaler(path: Path, allow_pickle: bool, option: str = "hires_upscaler") -> dict[str, Any]:
    """The state dict of an upscaler file; a pickle (``.pth``) only with ``allow_pickle`` (weights-only load).

    Raises
    ------
    ValueError
        One line: a pickle without ``allow_pickle``, or a file that does not read.
    """
    if path.suffix.lower() != ".safetensors" and not allow_pickle:
        msg = (
            f"{option}: {path.name} is a pickle file, which can run code when loaded "
            "(pass --allow-pickle if you trust it, or use a .safetensors copy)"
        )
        raise ValueError(msg)
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            weights = load_file(str(path))
        else:
            import torch

            weights = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:  # a damaged or foreign file: safetensors and torch raise their own kinds
        msg = f"{option}: could not read {path.name} ({str(error).strip().splitlines()[0][:160]})"
        raise ValueError(msg) from error
    for wrapper in ("params_ema", "params", "state_dict"):  # BasicSR and Lightning wrap the weights
        if isinstance(weights, dict) and isinstance(weights.get(wrapper), dict):
            weights = weights[wrapper]
    if not isinstance(weights, dict):
        msg = f"{option}: {path.name} holds no weights (got {type(weights).__name__})"
        raise ValueError(msg)
    return weights


def build_upscaler(weights: dict[str, Any], name: str, option: str = "hires_upscaler") -> tuple[Any, int]:
    """The network for these weights and its scale (2, 4, 8, …), weights loaded, in eval mode.

    Raises
    ------
    ValueError
        For weights of another architecture (SwinIR, DAT, HAT, … are not supported) or that do not fit.
    """
    from . import upscaler_nets as nets

    if "model.0.weight" in weights:
        weights = nets.esrgan_to_rrdbnet(weights)
    if "conv_first.weight" in weights and "body.0.rdb1.conv1.weight" in weights:
        net = nets.rrdbnet_for(weights)
    elif "body.0.weight" in weights and all(key.startswith("body.") for key in weights):
        net = nets.srvgg_for(weights)
    else:
        keys = ", ".join(list(weights)[:3])
        msg = (
            f"{option}: {name} is not an ESRGAN or Real-ESRGAN network (it holds {keys}, …); "
            "those two families are supported"
        )
        raise ValueError(msg)
    try:
        net.load_state_dict(weights, strict=True)
    except RuntimeError as error:
        msg = f"{option}: {name}'s weights do not fit its network ({str(error).splitlines()[0][:160]})"
        raise ValueError(msg) from error
    return net.eval().requires_grad_(False), net.scale


class Upscaler:
    """One loaded upscaler model, kept between cells (the engine holds at most one)."""

    def __init__(self, path: Path, allow_pickle: bool, device: Any, dtype: Any, option: str = "hires_upscaler") -> None:
        self.path = path
        self.stamp = (str(path), *file_stamp(path))
        self.net, self.scale = build_upscaler(read_upscaler(path, allow_pickle, option), path.stem, option)
        self.net.to(device, dtype)
        self.device, self.dtype = device, dtype

    def upscale_once(self, image: Image.Image, tile: int = TILE, overlap: int = OVERLAP) -> Image.Image:
        """The picture through the network once (``scale`` times larger), tile by tile."""
        import numpy as np
        import torch

        array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
        source = torch.from_numpy(array).permute(2, 0, 1)[None].to(self.device, self.dtype)
        height, width = source.shape[2:]
        scale = self.scale
        out = torch.empty((1, 3, height * scale, width * scale), dtype=torch.float32)
        with torch.inference_mode():
            for top in range(0, height, tile):
                for left in range(0, width, tile):
                    bottom, right = min(top + tile, height), min(left + tile, width)
                    y0, x0 = max(0, top - overlap), max(0, left - overlap)
                    y1, x1 = min(height, bottom + overlap), min(width, right + overlap)
                    result = self.net(source[:, :, y0:y1, x0:x1]).float().cpu()
                    crop = result[
                        :, :, (top - y0) * scale : (bottom - y0) * scale, (left - x0) * scale : (right - x0) * scale
                    ]
                    out[:, :, top * scale : bottom * scale, left * scale : right * scale] = crop
        pixels = (out[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
        return Image.fromarray(pixels)

    def upscale(self, image: Image.Image, width: int, height: int) -> Image.Image:
        """Enlarge the picture A1111's way.

        Through the network until it covers ``width`` × ``height`` (three times at most), then Lanczos to exactly
        that size.
        """
        for _ in range(3):
            if image.width >= width and image.height >= height:
                break
            image = self.upscale_once(image)
        if image.size != (width, height):
            image = image.resize((width, height), Image.LANCZOS)
        return image


def upscaler_for(pipe: Any, name: str, allow_pickle: bool, notice: Any) -> Upscaler:
    """The upscaler model `name` on the pipeline's device, loaded once and kept on the pipeline.

    Raises
    ------
    ValueError
        One line: not in the models folder any more, a pickle without ``allow_pickle``, a network we cannot run.
    """
    import torch

    from .. import library
    from ..recipe.fields import BUILT_IN_UPSCALERS

    found = library.find_upscaler(name)
    if found is None:
        raise ValueError(library.upscaler_missing_message(name, BUILT_IN_UPSCALERS))
    device = getattr(pipe, "_execution_device", None) or pipe.device
    dtype = torch.float16 if torch.device(device).type == "cuda" else torch.float32
    held = pipe.__dict__.get("_jupyter_sd_upscaler")
    if held is None or held.stamp != (str(found.path), *file_stamp(found.path)) or held.device != device:
        notice(f"loading upscaler {found.name}…")
        pipe.__dict__["_jupyter_sd_upscaler"] = None  # the old one goes first
        held = Upscaler(found.path, allow_pickle, device, dtype)
        pipe.__dict__["_jupyter_sd_upscaler"] = held
        notice(f"loaded upscaler {found.name} (×{held.scale})")
    return held
