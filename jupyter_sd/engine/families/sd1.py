"""Stable Diffusion 1.x: a UNet over 4-channel latents, one CLIP ViT-L text encoder (width 768), 512 px."""

from __future__ import annotations

from .base import Family

FAMILY = Family(
    name="SD1",
    title="Stable Diffusion 1.x",
    pipelines={
        "txt2img": "StableDiffusionPipeline",
        "img2img": "StableDiffusionImg2ImgPipeline",
        "inpaint": "StableDiffusionInpaintPipeline",
    },
    checkpoint_keys=("cond_stage_model.transformer.",),
    native_size=512,
    latent_rgb={
        "factors": [
            [0.3512, 0.2297, 0.3227],
            [0.3250, 0.4974, 0.2350],
            [-0.2829, 0.1762, 0.2721],
            [-0.2120, -0.2616, -0.7177],
        ],
        "bias": [0.0, 0.0, 0.0],
    },
    taesd="taesd",
    activations_gb=1.5,
)
