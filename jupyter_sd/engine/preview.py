"""Small live pictures of a generation in progress.

Each frame is made from the step's predicted clean latents (x0), never the noisy ones: that is what the finished
picture will look like. Modes, cheapest first: ``latent2rgb`` (one 4×3 linear map per latent family, no network),
``taesd`` (the tiny autoencoder, `AutoencoderTiny`), ``full`` (the model's own VAE). ``auto`` takes TAESD when
one is configured, else the linear map. Throttling by wall time is the engine's job: a previewer is only called
on the steps that show a frame.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

LATENT_RGB_FILE = "latent_rgb.json"

# Linear maps from sampler-space latents to RGB in [-1, 1], per latent family (as used by ComfyUI's previews).
LATENT_RGB: dict[str, dict[str, Any]] = {
    "sd1": {
        "factors": [
            [0.3512, 0.2297, 0.3227],
            [0.3250, 0.4974, 0.2350],
            [-0.2829, 0.1762, 0.2721],
            [-0.2120, -0.2616, -0.7177],
        ],
        "bias": [0.0, 0.0, 0.0],
    },
    "sdxl": {
        "factors": [
            [0.3651, 0.4232, 0.4341],
            [-0.2533, -0.0042, 0.1068],
            [0.1076, 0.1111, -0.0362],
            [-0.3165, -0.2492, -0.2188],
        ],
        "bias": [0.1084, -0.0175, -0.0011],
    },
}
_SDXL_SCALING = 0.13025
MAX_PREVIEW_SIDE = 512


def latent_family(vae_config: Any) -> str | None:
    """Name the latent family of a VAE from its config (``sd1`` covers SD 1.x and 2.x)."""
    if getattr(vae_config, "latent_channels", 4) != 4:
        return None
    scaling = getattr(vae_config, "scaling_factor", 0.18215)
    return "sdxl" if abs(scaling - _SDXL_SCALING) < 1e-4 else "sd1"


def load_latent_rgb(model_dir: str | Path | None, vae_config: Any) -> dict[str, Any] | None:
    """Return the latent→RGB map for a model: its own ``latent_rgb.json`` if it ships one, else its family's."""
    if model_dir is not None:
        path = Path(model_dir) / LATENT_RGB_FILE
        if path.is_file():
            return json.loads(path.read_text())
    family = latent_family(vae_config)
    return LATENT_RGB.get(family) if family else None


def _to_image(rgb: Any, size: tuple[int, int] | None) -> Image.Image:
    """Turn a (3, h, w) tensor in [-1, 1] into a PIL image, enlarged to `size` (capped) for visibility."""
    array = ((rgb.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
    image = Image.fromarray(np.ascontiguousarray(array))
    if size is not None:
        width, height = size
        scale = min(1.0, MAX_PREVIEW_SIDE / max(width, height))
        target = (max(1, round(width * scale)), max(1, round(height * scale)))
        if target != image.size:
            image = image.resize(target, Image.BILINEAR)
    return image


class Previewer:
    """Make preview pictures from x0 latents in one of the modes, for one pipeline.

    Parameters
    ----------
    mode
        ``latent2rgb``, ``taesd``, ``full`` or ``auto`` (``none`` is handled by not making a previewer).
    pipe
        The diffusers pipeline (for its VAE and image processor).
    latent_rgb
        The linear map for ``latent2rgb`` (see `load_latent_rgb`).
    taesd
        A loaded `AutoencoderTiny`, used by ``taesd`` and by ``auto`` when present.
    size
        The size of the picture being painted; previews are shown at that size, capped at 512 px.
    """

    def __init__(
        self,
        mode: str,
        pipe: Any,
        latent_rgb: dict[str, Any] | None = None,
        taesd: Any = None,
        size: tuple[int, int] | None = None,
    ) -> None:
        if mode == "auto":
            mode = "taesd" if taesd is not None else "latent2rgb" if latent_rgb is not None else "full"
        if mode == "taesd" and taesd is None:
            msg = "preview: 'taesd' needs a TAESD model: %paint config taesd=madebyollin/taesd (or a local folder)"
            raise ValueError(msg)
        if mode == "latent2rgb" and latent_rgb is None:
            msg = "preview: this model's latents have no known latent→RGB map; use --preview full or taesd"
            raise ValueError(msg)
        self.mode = mode
        self.pipe = pipe
        self.taesd = taesd
        self.size = size
        self._factors = None
        if mode == "latent2rgb":
            import torch

            self._factors = torch.tensor(latent_rgb["factors"], dtype=torch.float32)
            self._bias = torch.tensor(latent_rgb.get("bias") or [0.0, 0.0, 0.0], dtype=torch.float32)

    def __call__(self, latents: Any) -> list[Image.Image]:
        """Return one preview picture per image of the batch."""
        import torch

        with torch.no_grad():
            if self.mode == "latent2rgb":
                factors = self._factors.to(latents.device)
                bias = self._bias.to(latents.device)
                rgb = torch.einsum("bchw,cr->brhw", latents.float(), factors) + bias[None, :, None, None]
            elif self.mode == "taesd":
                rgb = self.taesd.decode(latents.to(self.taesd.dtype)).sample.float()
            else:
                rgb = decode_latents(self.pipe, latents)
        return [_to_image(item, self.size) for item in rgb]


def decode_latents(pipe: Any, latents: Any) -> Any:
    """Decode sampler-space latents with the pipeline's VAE into a (B, 3, H, W) tensor in [-1, 1].

    Mirrors what SD pipelines do after the loop (including fp16 VAEs that must run in float32).
    """
    import torch

    vae = pipe.vae
    needs_upcast = vae.dtype == torch.float16 and getattr(vae.config, "force_upcast", False)
    dtype = torch.float32 if needs_upcast else vae.dtype
    if needs_upcast:
        vae.to(dtype=torch.float32)
    try:
        with torch.no_grad():
            return vae.decode(latents.to(dtype) / vae.config.scaling_factor, return_dict=False)[0].float()
    finally:
        if needs_upcast:
            vae.to(dtype=torch.float16)


def to_pil(pipe: Any, images: Any) -> list[Image.Image]:
    """Turn decoded (B, 3, H, W) tensors into PIL images the way the pipeline's image processor does."""
    return pipe.image_processor.postprocess(images, output_type="pil", do_denormalize=[True] * images.shape[0])
