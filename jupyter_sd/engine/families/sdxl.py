"""Stable Diffusion XL: a UNet over 4-channel latents (scale 0.13025), two CLIP text encoders, 1024 px."""

from __future__ import annotations

from .base import Family

FAMILY = Family(
    name="SDXL",
    title="Stable Diffusion XL",
    pipelines={
        "txt2img": "StableDiffusionXLPipeline",
        "img2img": "StableDiffusionXLImg2ImgPipeline",
        "inpaint": "StableDiffusionXLInpaintPipeline",
    },
    text_encoders=("clip_l", "clip_g"),
    checkpoint_keys=("conditioner.embedders.1.",),
    native_size=1024,
    latent_rgb={
        "factors": [
            [0.3651, 0.4232, 0.4341],
            [-0.2533, -0.0042, 0.1068],
            [0.1076, 0.1111, -0.0362],
            [-0.3165, -0.2492, -0.2188],
        ],
        "bias": [0.1084, -0.0175, -0.0011],
    },
    taesd="taesdxl",
    activations_gb=3.5,
)
