"""Chroma (Chroma1-HD, Chroma1-Base): Flux.1-schnell pruned and de-distilled; T5 only, real CFG, 1024 px.

Its latents are Flux's (16 channels through the Flux VAE, packed 2×2), so previews use Flux's latent→RGB factors.
It takes true classifier-free guidance with a negative prompt (diffusers' ``guidance_scale``, A1111's CFG scale).
The prompt reaches its one T5-XXL encoder as on Flux, A1111's syntax read as Forge reads it (emphasis weights T5,
``BREAK``, prompt editing and alternation: ``prompt_embeds.py``, ``prompt_steps.py``), with the attention mask its
pipeline builds. Defaults from the Chroma1-HD card: 40 steps, CFG 3.

diffusers 0.42's ``ChromaInpaintPipeline`` reads ``transformer.config.guidance_embeds`` (copied from Flux's inpaint
pipeline) to build a distilled-guidance tensor it never passes on; Chroma's transformer has no such key, so the
pipeline raises AttributeError before its first step. Chroma has no guidance embedding: the key is registered as
False on its transformer before a call, and the pipeline paints as written.
"""

from __future__ import annotations

from typing import Any

from .base import Family
from .flow import FLOW_SCHEDULES
from .flow_samplers import FLOW_MATCH_SAMPLERS
from .flux import FAMILY as FLUX


class ChromaFamily(Family):
    """Chroma: Flux's latents; its inpaint pipeline given the transformer config key it reads."""

    def adapt_call(self, pipe: Any, call: dict[str, Any]) -> dict[str, Any]:
        """Register ``guidance_embeds=False`` on the transformer for diffusers' ChromaInpaintPipeline to read."""
        config = getattr(getattr(pipe, "transformer", None), "config", None)
        if config is not None and "guidance_embeds" not in config:
            pipe.transformer.register_to_config(guidance_embeds=False)  # (true: Chroma has no guidance embedding)
        return call


FAMILY = ChromaFamily(
    name="Chroma",
    title="Chroma",
    pipelines={
        "txt2img": "ChromaPipeline",
        "img2img": "ChromaImg2ImgPipeline",
        "inpaint": "ChromaInpaintPipeline",
    },
    checkpoint_keys=("distilled_guidance_layer.", "model.diffusion_model.distilled_guidance_layer."),
    text_encoders=("t5",),
    latent_channels=16,
    native_size=1024,
    defaults={"sampler": "Euler", "schedule": "Automatic", "steps": 40, "guidance": 3.0},
    samplers=FLOW_MATCH_SAMPLERS,
    schedules=FLOW_SCHEDULES,
    flow=True,
    packed_latents=True,
    latent_rgb=FLUX.latent_rgb,
    half_dtype="bfloat16",
    activations_gb=4.0,
    lacks=("embeddings", "refiner"),
)
