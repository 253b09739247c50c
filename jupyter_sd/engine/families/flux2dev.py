"""FLUX.2 [dev]: klein's latent format under a 32B guidance-distilled transformer; Mistral Small 3.x reads the prompt.

diffusers' `Flux2Pipeline` has klein's VAE (32 channels, 2×2-patchified to 128, batch-normalized, packed) and a
transformer with a guidance embedder: the guidance is distilled into it (``guidance_scale``, Forge's ``Distilled
CFG Scale``, 4 on BFL's card), and there is no negative pass, so CFG stays 1 and a negative prompt is not read
(both said in one line). Its ``image=`` takes reference pictures (an edit model's conditioning, not an init), and
diffusers has no Img2Img or Inpaint class for it: img2img, inpaint and the hires pass run on ours
(`flux2_inpaint.Flux2InpaintPipeline`, klein's Inpaint steps over [dev]'s encoding and guidance), fed as klein's
Inpaint pipeline is (img2img a whole-picture mask, the hires latents raw patches). Previews and decodes are klein's.

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
    """Klein's latents with distilled guidance only: no CFG, no negative prompt; img2img and inpaint on our class."""

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
        """No negative prompt (an empty one may still be in the call); an init's mask and latents as klein's.

        Raises
        ------
        ValueError
            ``masked content: 'latent noise' and 'latent nothing' cannot paint Flux.2 [dev] models yet (…)``.
        """
        call = {name: value for name, value in call.items() if name != "negative_prompt"}
        return self.init_call(pipe, call) if "image" in call else call

    def pipeline_type(self, class_name: str) -> type:
        """Our `Flux2InpaintPipeline` for img2img and inpaint (imported here: it imports torch), else diffusers'."""
        if class_name == "Flux2InpaintPipeline":
            from .flux2_inpaint import Flux2InpaintPipeline

            return Flux2InpaintPipeline
        return super().pipeline_type(class_name)


FAMILY = Flux2DevFamily(
    name="Flux.2 [dev]",
    title="FLUX.2 [dev]",
    pipelines={
        "txt2img": "Flux2Pipeline",
        "img2img": "Flux2InpaintPipeline",  # (ours, with a whole-picture mask: diffusers has no [dev] Img2Img class)
        "inpaint": "Flux2InpaintPipeline",
    },
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
    lacks=("embeddings", "refiner", "prompt syntax"),
)
