"""Z-Image (Z-Image-Turbo, Z-Image): a single-stream flow transformer over Flux's VAE latents; Qwen3 reads the prompt.

Its latents are Flux's 16 channels, not packed (the transformer patches 2×2 itself: multiples of 16 px), so
previews use Flux's latent→RGB factors. Its pipeline's ``guidance_scale`` g guides as pos + g·(pos − neg), which
is A1111's CFG scale minus 1: CFG 1 (Turbo's) runs no negative pass. Qwen3 is a language model: A1111 emphasis
does not apply. Defaults are Z-Image-Turbo's card: 9 steps (8 transformer passes), CFG 1, Euler.

Its single files are told by ``layers.N.adaLN_modulation.0`` (a one-Linear modulation); Lumina 2's, whose
ComfyUI names are otherwise alike, hold ``adaLN_modulation.1`` (SiLU then Linear), as diffusers tells them apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .base import PLAIN_TEXT, Family
from .flow import FLOW_SCHEDULES
from .flow_samplers import FLOW_MATCH_SAMPLERS
from .flux import FAMILY as FLUX


@dataclass(frozen=True)
class ZImageFamily(Family):
    """Z-Image's guidance offset and its float32 latents."""

    def guidance_kwargs(self, guidance: float, distilled: float) -> dict[str, Any]:
        """A1111's CFG s is pos + (s − 1)·(pos − neg): Z-Image's ``guidance_scale`` is s − 1 (0 = no CFG)."""
        return {"guidance_scale": max(0.0, guidance - 1.0)}

    def adapt_call(self, pipe: Any, call: dict[str, Any]) -> dict[str, Any]:
        """Its Inpaint pipeline VAE-encodes whatever init it gets: a latent masked content is refused in one line."""
        if "mask_image" in call and getattr(call.get("image"), "dim", None) is not None:
            msg = "masked content: 'latent noise' and 'latent nothing' cannot paint Z-Image models yet"
            msg += " (allowed: original, fill)"
            raise ValueError(msg)
        return call

    def to_pipeline_latents(self, pipe: Any, latents: Any) -> Any:
        """Its pipeline steps in float32 whatever the transformer's dtype (as diffusers draws its noise)."""
        return latents.float()


FAMILY = ZImageFamily(
    name="Z-Image",
    title="Z-Image",
    pipelines={
        "txt2img": "ZImagePipeline",
        "img2img": "ZImageImg2ImgPipeline",
        "inpaint": "ZImageInpaintPipeline",
    },
    checkpoint_keys=("layers.0.adaLN_modulation.0.", "model.diffusion_model.layers.0.adaLN_modulation.0."),
    text_encoders=("qwen3",),
    latent_channels=16,
    patch=2,
    native_size=1024,
    defaults={"sampler": "Euler", "schedule": "Automatic", "steps": 9, "guidance": 1.0, "emphasis": "None"},
    samplers=FLOW_MATCH_SAMPLERS,
    schedules=FLOW_SCHEDULES,
    flow=True,
    latent_rgb=FLUX.latent_rgb,
    half_dtype="bfloat16",
    prompt_note=f"prompt: Z-Image's Qwen3 text encoder reads the prompt as plain text {PLAIN_TEXT}",
    activations_gb=3.0,
    lacks=("embeddings", "refiner", "prompt syntax"),
    controlnet="ZImageControlNetModel",
    controlnet_tokens=True,  # (its image's tokens, then the caption's: control/region_masks.py)
    controlnet_pipelines=dict.fromkeys(("txt2img", "img2img", "inpaint"), "ZImageControlNetPipeline"),  # (composed)
    controlnet_inpaint="ZImageControlNetInpaintPipeline",  # Union 2.0's: its map, the mask and the masked init
    controlnet_units=1,
)
