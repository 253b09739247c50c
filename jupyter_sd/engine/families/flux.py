"""Flux.1 (dev, schnell): a rectified-flow transformer over packed 16-channel latents; CLIP-L and T5; 1024 px.

It takes CFG (``true_cfg_scale``, 1 = off, as Forge paints it) and the guidance distilled into dev
(``Distilled CFG Scale``, diffusers' ``guidance_scale``). Emphasis weights its T5 (``prompt_embeds.py``).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from .base import Family
from .flow import FLOW_SCHEDULES
from .flow_samplers import FLOW_MATCH_SAMPLERS


@dataclass(frozen=True)
class FluxFamily(Family):
    """Flux's ControlNet img2img and inpaint pipelines, which take no negative prompt and no CFG."""

    def adapt_call(self, pipe: Any, call: dict[str, Any]) -> dict[str, Any]:
        """Drop the negative prompt and CFG a pipeline does not take (units refuse CFG above 1 there)."""
        takes = inspect.signature(type(pipe).__call__).parameters
        if "true_cfg_scale" in takes:
            return call
        return {k: v for k, v in call.items() if k not in ("negative_prompt", "true_cfg_scale")}


FAMILY = FluxFamily(
    name="Flux",
    title="FLUX.1",
    pipelines={
        "txt2img": "FluxPipeline",
        "img2img": "FluxImg2ImgPipeline",
        "inpaint": "FluxInpaintPipeline",
    },
    checkpoint_keys=("double_blocks.", "model.diffusion_model.double_blocks."),
    text_encoders=("clip_l", "t5"),
    latent_channels=16,
    native_size=1024,
    defaults={"sampler": "Euler", "schedule": "Automatic", "guidance": 1.0},
    guidance="cfg+distilled",
    samplers=FLOW_MATCH_SAMPLERS,
    schedules=FLOW_SCHEDULES,
    flow=True,
    packed_latents=True,
    latent_rgb={
        "factors": [
            [-0.0346, 0.0244, 0.0681],
            [0.0034, 0.0210, 0.0687],
            [0.0275, -0.0668, -0.0433],
            [-0.0174, 0.0160, 0.0617],
            [0.0859, 0.0721, 0.0329],
            [0.0004, 0.0383, 0.0115],
            [0.0405, 0.0861, 0.0915],
            [-0.0236, -0.0185, -0.0259],
            [-0.0245, 0.0250, 0.1180],
            [0.1008, 0.0755, -0.0421],
            [-0.0515, 0.0201, 0.0011],
            [0.0428, -0.0012, -0.0036],
            [0.0817, 0.0765, 0.0749],
            [-0.1264, -0.0522, -0.1103],
            [-0.0280, -0.0881, -0.0499],
            [-0.1262, -0.0982, -0.0778],
        ],
        "bias": [-0.0329, -0.0718, -0.0851],
    },
    half_dtype="bfloat16",
    activations_gb=4.0,
    lacks=("embeddings", "refiner"),
    controlnet="FluxControlNetModel",
    controlnet_tokens=True,  # (a unit's region mask weighs them: control/region_masks.py)
    controlnet_pipelines={
        "txt2img": "FluxControlNetPipeline",
        "img2img": "FluxControlNetImg2ImgPipeline",
        "inpaint": "FluxControlNetInpaintPipeline",
    },
)
