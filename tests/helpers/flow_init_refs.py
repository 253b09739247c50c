"""References for ControlNet units on the transformer families: diffusers' own ControlNet pipelines, loaded here.

For a pass from an init on a family whose ControlNet pipeline paints from noise (SD3, Qwen-Image, Z-Image), the
reference gives diffusers' pipeline what its img2img and inpaint pipelines would start from, made by formula: the
tail of the schedule (its unshifted levels as ``sigmas``: the pipeline shifts them itself), the start latents
x = σ₀·noise + (1 − σ₀)·x0, and for inpaint a step callback putting x0, noised to the next level, back outside the
mask (1 = repaint). The tests make x0 and the noise, in the order the generator draws them.
"""

from __future__ import annotations

import copy
import inspect
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from helpers.paint_modes import outline_map

BASES = {"sd3": "StableDiffusion3Pipeline", "qwen": "QwenImagePipeline", "zimage": "ZImagePipeline"}
"""Each family's txt2img pipeline, whose folder the references load their components from."""


def raw(folder: Path, family: str, cls_name: str, controlnet: Any) -> Any:
    """diffusers' ControlNet pipeline `cls_name` over the components of a `family` folder, loaded on their own."""
    import diffusers

    base = getattr(diffusers, BASES.get(family, "FluxPipeline"))
    cls = getattr(diffusers, cls_name)
    takes = inspect.signature(cls.__init__).parameters
    components = {k: v for k, v in base.from_pretrained(folder).components.items() if k in takes}
    pipe = cls(**components, controlnet=controlnet)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def edges(size: int = 32) -> Image.Image:
    """A ready control map (module none): a white square outline and a diagonal on black."""
    return outline_map(size)


def block_map(size: int) -> Image.Image:
    """2×2 blocks at 32 px: the map at a first pass's 16 px is the picture drawn at 16 px, at 32 px the picture."""
    image = Image.new("RGB", (16, 16))
    draw = ImageDraw.Draw(image)
    draw.rectangle([2, 2, 9, 9], fill=(255, 255, 255))
    draw.rectangle([11, 4, 13, 14], fill=(255, 255, 255))
    return image.resize((size, size), Image.NEAREST)


def first_level(pipe: Any, sigmas: Any, mu: float | None = None) -> float:
    """The first noise level of the pipeline's scheduler given these (unshifted) `sigmas` (and Flux-like `mu`)."""
    scheduler = copy.deepcopy(pipe.scheduler)
    scheduler.set_timesteps(sigmas=list(sigmas), **({"mu": mu} if mu is not None else {}))
    return float(scheduler.sigmas[0])


def noised(x0: Any, noise: Any, sigma: float) -> Any:
    """Flow matching's forward process: x = σ·noise + (1 − σ)·x0."""
    return sigma * noise + (1 - sigma) * x0


def latent_mask(mask: Image.Image, height: int, width: int) -> Any:
    """The mask binarized (≥ half) and brought to the latents' size by nearest neighbours, (1, 1, h, w)."""
    import numpy as np
    import torch

    full = torch.from_numpy((np.asarray(mask.convert("L")) >= 128).astype(np.float32))[None, None]
    return torch.nn.functional.interpolate(full, size=(height, width))


def blending(x0: Any, noise: Any, mask: Any) -> Any:
    """diffusers' inpaint step, as a step callback: outside `mask`, x0 noised to the next level (the last: x0)."""

    def callback(pipe: Any, index: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        sigmas = pipe.scheduler.sigmas
        last = index == len(pipe.scheduler.timesteps) - 1
        kept = x0 if last else noised(x0, noise, float(sigmas[index + 1]))
        tensors["latents"] = (1 - mask) * kept + mask * tensors["latents"]
        return tensors

    return callback


def encoded(pipe: Any, picture: Image.Image, generator: Any, size: int = 32) -> Any:
    """x0 through an SD3-like VAE (SD3's, Z-Image's): the picture sampled with `generator`, shifted, scaled."""
    config = pipe.vae.config
    sample = pipe.vae.encode(pipe.image_processor.preprocess(picture, size, size)).latent_dist.sample(generator)
    return (sample - config.shift_factor) * config.scaling_factor
