"""Stable Diffusion 3 and 3.5: an MMDiT rectified-flow transformer, 16-channel latents, CLIP-L, CLIP-G and T5."""

from __future__ import annotations

from .base import Family
from .flow import FLOW_SCHEDULES
from .flow_samplers import FLOW_MATCH_SAMPLERS

FAMILY = Family(
    name="SD3",
    title="Stable Diffusion 3",
    pipelines={
        "txt2img": "StableDiffusion3Pipeline",
        "img2img": "StableDiffusion3Img2ImgPipeline",
        "inpaint": "StableDiffusion3InpaintPipeline",
    },
    checkpoint_keys=("joint_blocks.", "model.diffusion_model.joint_blocks."),
    text_encoders=("clip_l", "clip_g", "t5"),
    latent_channels=16,
    native_size=1024,
    defaults={"sampler": "Euler", "schedule": "Automatic", "steps": 28},
    samplers=FLOW_MATCH_SAMPLERS,
    schedules=FLOW_SCHEDULES,
    flow=True,
    latent_rgb={
        "factors": [
            [-0.0922, -0.0175, 0.0749],
            [0.0311, 0.0633, 0.0954],
            [0.1994, 0.0927, 0.0458],
            [0.0856, 0.0339, 0.0902],
            [0.0587, 0.0272, -0.0496],
            [-0.0006, 0.1104, 0.0309],
            [0.0978, 0.0306, 0.0427],
            [-0.0042, 0.1038, 0.1358],
            [-0.0194, 0.0020, 0.0669],
            [-0.0488, 0.0130, -0.0268],
            [0.0922, 0.0988, 0.0951],
            [-0.0278, 0.0524, -0.0542],
            [0.0332, 0.0456, 0.0895],
            [-0.0069, -0.0030, -0.0810],
            [-0.0596, -0.0465, -0.0293],
            [-0.1448, -0.1463, -0.1189],
        ],
        "bias": [0.2394, 0.2135, 0.1925],
    },
    activations_gb=3.5,
    lacks=("embeddings", "refiner"),
    controlnet="SD3ControlNetModel",
    controlnet_tokens=True,  # (a unit's region mask weighs them: control/region_masks.py)
    controlnet_pipelines={  # (img2img and inpaint composed on it: control/flow_init.py)
        "txt2img": "StableDiffusion3ControlNetPipeline",
        "img2img": "StableDiffusion3ControlNetPipeline",
        "inpaint": "StableDiffusion3ControlNetPipeline",
    },
    controlnet_inpaint="StableDiffusion3ControlNetInpaintingPipeline",  # Alimama's inpaint ControlNet
)
