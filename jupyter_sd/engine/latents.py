"""What a pass starts from, as latents: its starting noise, pictures encoded, the hires enlargement, inpaint's fill.

The starting noise comes from the pass's `NoiseSource` (seeds.py: A1111's random sources, variation seeds, seed
resize, and the mix an ``inpaint_only+lama`` unit adds, control/wiring.py); the init's latents are sampled per seed as
diffusers' img2img samples them.
"""

from __future__ import annotations

from typing import Any

from PIL import Image

from ..recipe.fields import IMAGE_UPSCALERS, LATENT_UPSCALERS
from ..recipe.request import PaintRequest
from ..recipe.values import parse_size
from . import pictures as pics
from .families import family_of
from .mode_pipelines import execution_device
from .preview import decode_latents, to_pil
from .seeds import NoiseSource, image_noise

__all__ = ["encode", "enlarged", "masked_content", "own_noise", "start_noise"]


def start_noise(
    pipe: Any, request: PaintRequest, subseeds: list, size: tuple, source: NoiseSource, packed: bool = True
) -> Any:
    """The starting noise of a pass at `size` (pixels) from `source`, on the pipeline's device and dtype.

    As the txt2img pipeline's ``latents=`` takes it (Flux: packed), or (B, C, H, W) when not `packed`.
    """
    channels = getattr(pipe.vae.config, "latent_channels", None) or pipe.vae.config.z_dim  # (Qwen-Image's: z_dim)
    factor = int(getattr(pipe, "vae_scale_factor", 8))
    resize_from = parse_size(request.seed_resize_from) if request.seed_resize_from else None
    shape = (channels, size[1] // factor, size[0] // factor)
    noise = source.first(shape, subseeds, request.variation_strength, resize_from)
    denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
    noise = noise.to(pipe.device, denoiser.dtype)
    return family_of(pipe).to_pipeline_latents(pipe, noise) if packed else noise


def own_noise(pipe: Any, request: PaintRequest, subseeds: list, size: tuple, source: NoiseSource) -> tuple:
    """An init pass's noise (B, C, H, W) and, for packed families, the same as the pipeline's packed latents."""
    noise = start_noise(pipe, request, subseeds, size, source, packed=False)
    family = family_of(pipe)
    return noise, (family.to_pipeline_latents(pipe, noise) if family.packed_latents else None)


def enlarged(pipe: Any, request: PaintRequest, latents: Any, seeds: list[int], runner: Any) -> Any:
    """The first pass's (B, C, H, W) latents enlarged to the hires size (in latent space or as pictures), cropped."""
    to_x, to_y, excess_x, excess_y = request.hires_target()
    factor = int(getattr(pipe, "vae_scale_factor", 8))
    truncate_x, truncate_y = excess_x // factor, excess_y // factor
    if request.hires_upscaler in LATENT_UPSCALERS:
        mode, antialias = LATENT_UPSCALERS[request.hires_upscaler]
        latents = family_of(pipe).enlarge(pipe, latents, (to_y // factor, to_x // factor), mode, antialias)
    else:
        images = to_pil(pipe, decode_latents(pipe, latents))
        if request.hires_upscaler in IMAGE_UPSCALERS:
            resample = Image.LANCZOS if request.hires_upscaler == "Lanczos" else Image.NEAREST
            images = [image.resize((to_x, to_y), resample) for image in images]
        else:  # an upscaler model from the models folder (upscalers.py)
            from .upscalers import upscaler_for

            model = upscaler_for(pipe, request.hires_upscaler, request.allow_pickle, runner.progress.notice)
            images = [model.upscale(image, to_x, to_y) for image in images]
        latents = encode(pipe, images, seeds)
    height, width = latents.shape[2], latents.shape[3]
    latents = latents[
        :, :, truncate_y // 2 : height - (truncate_y + 1) // 2, truncate_x // 2 : width - (truncate_x + 1) // 2
    ]
    if family_of(pipe).packed_latents:  # whole 2×2 patches (Flux): an odd latent row or column is cropped off
        latents = latents[:, :, : latents.shape[2] // 2 * 2, : latents.shape[3] // 2 * 2]
    return latents


def encode(pipe: Any, images: list[Image.Image], seeds: list[int]) -> Any:
    """Encode pictures to sampler-space latents (each sampled with its own seed, as diffusers' img2img does)."""
    import torch

    family = family_of(pipe)
    tensor = pipe.image_processor.preprocess(images).to(pipe.device, pipe.vae.dtype)
    with torch.no_grad():
        latents = [
            family.encode(pipe, tensor[i : i + 1], torch.Generator("cpu").manual_seed(seed))
            for i, seed in enumerate(seeds)
        ]
    return torch.cat(latents)


def masked_content(
    pipe: Any, request: PaintRequest, init: Image.Image, mask: Image.Image, blurred: Image.Image, seeds: list[int]
) -> dict[str, Any]:
    """What the masked area starts from: the init (``original``), its surroundings (``fill``), or latents."""
    if request.masked_content == "original":
        return {"image": init}
    if request.masked_content == "fill":
        return {"image": pics.fill_masked(init, blurred)}
    import numpy as np
    import torch

    latents = encode(pipe, [init] * len(seeds), seeds)
    small = mask.resize((latents.shape[3], latents.shape[2]))
    keep = torch.from_numpy(1.0 - np.around(np.asarray(small, dtype=np.float32) / 255.0))[None, None]
    keep = keep.to(latents.device, latents.dtype)
    if request.masked_content == "latent noise":
        noise = image_noise(tuple(latents.shape[1:]), seeds, rng=request.rng, device=execution_device(pipe))
        noise = noise.to(latents.device, latents.dtype)
        latents = latents * keep + noise * (1 - keep)
    else:
        latents = latents * keep
    masked = latents
    if getattr(getattr(pipe, "unet", None), "config", None) is not None and pipe.unet.config.in_channels == 9:
        grey = Image.new("RGB", init.size, (128, 128, 128))  # 0 in the VAE's [-1, 1], as diffusers masks it
        hidden = Image.composite(grey, init, mask.point(lambda x: 255 if x >= 128 else 0))
        masked = encode(pipe, [hidden] * len(seeds), seeds)
    return {"image": latents, "masked_image_latents": masked}
