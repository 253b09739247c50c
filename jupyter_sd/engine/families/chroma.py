"""Chroma (Chroma1-HD, Chroma1-Base): Flux.1-schnell pruned and de-distilled; T5 only, real CFG, 1024 px.

Its latents are Flux's (16 channels through the Flux VAE, packed 2×2), so previews use Flux's latent→RGB factors.
It takes true classifier-free guidance with a negative prompt (diffusers' ``guidance_scale``, A1111's CFG scale);
the prompt reaches its one T5-XXL encoder as plain text. Defaults from the Chroma1-HD card: 40 steps, CFG 3.
"""

from __future__ import annotations

from .base import Family
from .flow import FLOW_SAMPLERS, FLOW_SCHEDULES
from .flux import FAMILY as FLUX

PLAIN_TEXT = "(A1111 emphasis, editing, alternation, AND and BREAK are not applied)"

FAMILY = Family(
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
    defaults={"sampler": "Euler", "schedule": "Automatic", "steps": 40, "guidance": 3.0, "emphasis": "None"},
    samplers=FLOW_SAMPLERS,
    schedules=FLOW_SCHEDULES,
    flow=True,
    packed_latents=True,
    latent_rgb=FLUX.latent_rgb,
    half_dtype="bfloat16",
    prompt_note=f"prompt: Chroma's T5 encoder reads the prompt as plain text {PLAIN_TEXT}",
    activations_gb=4.0,
    lacks=("embeddings", "refiner", "inpaint", "prompt syntax", "single file"),
)
