"""Small live pictures of a generation in progress.

Each frame is made from the step's predicted clean latents (x0), never the noisy ones: that is what the finished
picture will look like. Modes, cheapest first: ``latent2rgb`` (one linear map per model family, no network),
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

MAX_PREVIEW_SIDE = 512


def load_latent_rgb(model_dir: str | Path | None, family: Any) -> dict[str, Any] | None:
    """Return the latent→RGB map for a model: its own ``latent_rgb.json`` if it ships one, else its family's."""
    if model_dir is not None:
        path = Path(model_dir) / LATENT_RGB_FILE
        if path.is_file():
            return json.loads(path.read_text())
    return family.latent_rgb


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

    from .families import FAMILIES

    owner = next((family for family in FAMILIES if family.owns_class(type(pipe).__name__)), None)
    custom = owner.decode(pipe, latents) if owner is not None else None  # Qwen-Image's, Flux.2's own VAEs
    if custom is not None:
        return custom
    vae = pipe.vae
    shift = getattr(vae.config, "shift_factor", None) or 0.0  # SD3's and Flux's latents are shifted as well
    needs_upcast = vae.dtype == torch.float16 and getattr(vae.config, "force_upcast", False)
    dtype = torch.float32 if needs_upcast else vae.dtype
    if needs_upcast:
        vae.to(dtype=torch.float32)
    try:
        with torch.no_grad():
            latents = latents.to(dtype) / vae.config.scaling_factor + shift
            return vae.decode(latents, return_dict=False)[0].float()
    finally:
        if needs_upcast:
            vae.to(dtype=torch.float16)


def to_pil(pipe: Any, images: Any) -> list[Image.Image]:
    """Turn decoded (B, 3, H, W) tensors into PIL images the way the pipeline's image processor does."""
    return pipe.image_processor.postprocess(images, output_type="pil", do_denormalize=[True] * images.shape[0])
