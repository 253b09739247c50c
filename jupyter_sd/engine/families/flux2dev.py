"""FLUX.2 [dev]: klein's latent format under a 32B guidance-distilled transformer; Mistral Small 3.x reads the prompt.

diffusers' `Flux2Pipeline` has klein's VAE (32 channels, 2×2-patchified to 128, batch-normalized, packed) and a
transformer with a guidance embedder: the guidance is distilled into it (``guidance_scale``, Forge's ``Distilled
CFG Scale``, 4 on BFL's card), and there is no negative pass, so CFG stays 1 and a negative prompt is not read
(both said in one line). Its ``image=`` takes reference pictures (an edit model's conditioning, not an init), and
diffusers has no Img2Img or Inpaint class for it: it paints txt2img only. Previews and decodes are klein's.

It is large: the transformer is 32B parameters (64 GB in bf16, about 34 GB in GGUF Q8_0, 19 GB in Q4_K) and Mistral
Small 24B (48 GB in bf16). ``--offload auto`` (`loading.plan`) says what fits: on an 80 GB card each takes the
GPU in turn (model offload); on a free 15 GB T4 even a Q4_K transformer streams layer by layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .base import PLAIN_TEXT
from .flux2klein import FAMILY as KLEIN
from .flux2klein import Flux2KleinFamily

DEFAULTS = {
    "sampler": "Euler",
    "schedule": "Automatic",
    "steps": 50,
    "guidance": 1.0,
    "distilled_cfg": 4.0,
    "emphasis": "None",
}


@dataclass(frozen=True)
class Flux2DevFamily(Flux2KleinFamily):
    """Klein's latents with distilled guidance only: no CFG, no negative prompt, no Img2Img/Inpaint class."""

    def defaults_for(self, pipe: Any) -> dict[str, Any]:
        """BFL's card: 50 steps, distilled guidance 4 (CFG 1: none runs)."""
        return self.defaults

    def refit(self, pipe: Any, request: Any) -> tuple[Any, list[str]]:
        """CFG and a negative prompt are not taken: the recipe says CFG 1 and no negative, one line each."""
        changes, lines = {}, []
        if request.guidance != 1:
            changes["guidance"] = 1.0
            lines.append(
                f"cfg: {self.name} is guidance-distilled and takes no CFG: painted at CFG 1 (not "
                f"{request.guidance:g}); its guidance is --distilled-cfg ({request.distilled_cfg:g})"
            )
        if request.negative_prompt:
            changes["negative_prompt"] = ""
            lines.append(f"negative prompt: {self.name} runs no negative pass (no CFG): not read")
        return (request.replace(**changes) if changes else request), lines

    def adapt_call(self, pipe: Any, call: dict[str, Any]) -> dict[str, Any]:
        """Its pipeline takes no negative prompt (an empty one may still be in the call)."""
        return {name: value for name, value in call.items() if name != "negative_prompt"}


FAMILY = Flux2DevFamily(
    name="Flux.2 [dev]",
    title="FLUX.2 [dev]",
    pipelines={"txt2img": "Flux2Pipeline"},
    checkpoint_keys=KLEIN.checkpoint_keys,
    checkpoint_also=("guidance_in.", "model.diffusion_model.guidance_in."),  # (klein's files embed no guidance)
    text_encoders=("mistral",),
    latent_channels=32,
    native_size=1024,
    defaults=DEFAULTS,
    guidance="distilled",
    samplers=KLEIN.samplers,
    schedules=KLEIN.schedules,
    flow=True,
    packed_latents=True,
    latent_rgb=KLEIN.latent_rgb,  # (the same VAE)
    half_dtype="bfloat16",
    prompt_note=f"prompt: Flux.2 [dev]'s Mistral text encoder reads the prompt as plain text {PLAIN_TEXT}",
    activations_gb=6.0,
    lacks=("embeddings", "refiner", "prompt syntax", "hires", "img2img", "inpaint"),
)
