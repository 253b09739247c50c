"""FLUX.2 [klein] (4B, 9B; distilled and base): a Flux.2 transformer over 2×2-patchified 32-channel latents; Qwen3.

Its VAE's 32 channels are patchified to 128 and batch-normalized (the VAE's running mean and variance) before the
transformer sees them, then packed into a sequence. Previews unpack to the 32 normalized channels at 1/8 size and
use ComfyUI's Flux.2 latent→RGB factors; decodes un-normalize as its pipeline does (this family's `decode`).
The step-distilled models ignore CFG (4 steps, CFG 1, their card); the base models take real CFG (50 steps, CFG 4).
Its pipeline takes no negative prompt text: ours reaches it encoded, as ``negative_prompt_embeds``.

The hires fix enlarges the VAE's own (un-normalized) 32 channels, as its txt2img pipeline hands them out with
``output_type="latent"``, and repaints them on its Inpaint pipeline (the img2img class) with a whole-picture mask,
handed as the raw 128-channel patches that pipeline takes as latents and normalizes itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .base import PLAIN_TEXT, Family
from .flow import FLOW_SCHEDULES
from .flow_samplers import FLOW_MATCH_SAMPLERS

BASE_DEFAULTS = {"sampler": "Euler", "schedule": "Automatic", "steps": 50, "guidance": 4.0, "emphasis": "None"}
DISTILLED_DEFAULTS = {**BASE_DEFAULTS, "steps": 4, "guidance": 1.0}


@dataclass(frozen=True)
class Flux2KleinFamily(Family):
    """Flux.2 klein's distilled/base defaults, negative prompt embeddings and patchified, normalized latents."""

    def defaults_for(self, pipe: Any) -> dict[str, Any]:
        """The distilled models' 4 steps and CFG 1, or the base models' 50 steps and CFG 4."""
        return DISTILLED_DEFAULTS if getattr(pipe.config, "is_distilled", False) else BASE_DEFAULTS

    def refit(self, pipe: Any, request: Any) -> tuple[Any, list[str]]:
        """A distilled model paints without CFG whatever the scale: its recipe says CFG 1, and one line says why."""
        if not getattr(pipe.config, "is_distilled", False) or request.guidance == 1:
            return request, []
        scale = f"{request.guidance:g}"
        line = f"cfg: this {self.name} model is step-distilled and ignores CFG: painted at CFG 1 (not {scale})"
        return request.replace(guidance=1.0), [line]

    def adapt_call(self, pipe: Any, call: dict[str, Any]) -> dict[str, Any]:
        """Its pipeline has no ``negative_prompt``: a negative prompt reaches real CFG as its Qwen3 embeddings.

        img2img runs on its Inpaint pipeline with a mask over the whole picture (diffusers has no klein Img2Img
        class): every step keeps the transformer's latents, so it is A1111's img2img from the noised init. The
        hires pass's latents reach it as raw patches; latents with a mask (latent masked content) are refused.

        Raises
        ------
        ValueError
            ``masked content: 'latent noise' and 'latent nothing' cannot paint Flux.2 klein models yet (…)``.
        """
        call = self.init_call(pipe, call)
        negative = call.pop("negative_prompt", None)
        guided = call.get("guidance_scale", 1.0) > 1 and not getattr(pipe.config, "is_distilled", False)
        if negative and guided and "prompt" in call:
            call["negative_prompt_embeds"] = pipe.encode_prompt(prompt=negative)[0]
        return call

    def init_call(self, pipe: Any, call: dict[str, Any]) -> dict[str, Any]:
        """img2img's whole-picture mask; the hires pass's latents as the raw patches its Inpaint class normalizes.

        Raises
        ------
        ValueError
            Latents with a mask (``latent noise``, ``latent nothing``): its pipeline would normalize them again.
        """
        from PIL import Image

        call = dict(call)
        image = call.get("image")
        latents = getattr(image, "dim", None) is not None
        if latents and "mask_image" in call:  # its pipeline would normalize them again
            msg = f"masked content: 'latent noise' and 'latent nothing' cannot paint {self.name} models yet"
            raise ValueError(msg + " (allowed: original, fill)")
        if latents:  # the hires pass: sampler-space latents → the raw patches the pipeline normalizes
            mean, std = self._statistics(pipe, image)
            call["image"] = type(pipe)._patchify_latents(image) * std + mean
            call["mask_image"] = Image.new("L", (call["width"], call["height"]), 255)
        elif "mask_image" not in call and image is not None:  # img2img: the whole picture
            call["mask_image"] = Image.new("L", image.size, 255)
        return call

    def encode(self, pipe: Any, pixels: Any, generator: Any) -> Any:
        """Pixels → its normalized 32 channels, encoded as its pipeline encodes an init (the VAE's mode)."""
        from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img import retrieve_latents

        patches = type(pipe)._patchify_latents(retrieve_latents(pipe.vae.encode(pixels), sample_mode="argmax"))
        mean, std = self._statistics(pipe, patches)
        return type(pipe)._unpatchify_latents((patches - mean) / std)

    def enlarge(self, pipe: Any, latents: Any, size: tuple[int, int], mode: str, antialias: bool) -> Any:
        """The VAE's own channels enlarged (un-normalized first, normalized again): its txt2img output's latents."""
        patchify, unpatchify = type(pipe)._patchify_latents, type(pipe)._unpatchify_latents
        mean, std = self._statistics(pipe, latents)
        raw = unpatchify(patchify(latents) * std + mean)
        larger = super().enlarge(pipe, raw, size, mode, antialias)
        return unpatchify((patchify(larger) - mean) / std)

    @staticmethod
    def _statistics(pipe: Any, like: Any) -> tuple[Any, Any]:
        """Its VAE's batch-norm mean and std of the 128 patch channels, shaped (1, 128, 1, 1) like `like`."""
        import torch

        vae = pipe.vae
        mean = vae.bn.running_mean.view(1, -1, 1, 1).to(like.device, like.dtype)
        std = torch.sqrt(vae.bn.running_var.view(1, -1, 1, 1) + vae.config.batch_norm_eps).to(like.device, like.dtype)
        return mean, std

    def to_pipeline_latents(self, pipe: Any, latents: Any) -> Any:
        """(B, 32, H/8, W/8) noise → the (B, 128, H/16, W/16) patches its pipeline packs itself."""
        return type(pipe)._patchify_latents(latents)

    def to_spatial(self, pipe: Any, latents: Any, size: tuple[int, int]) -> Any:
        """Packed (B, H/16·W/16, 128) → the 32 normalized channels at (H/8, W/8), where the preview factors apply.

        Its pipelines hand ``output_type="latent"`` out as the VAE's own (B, 32, H/8, W/8): normalized here.
        """
        if latents.dim() == 4:
            patches = type(pipe)._patchify_latents(latents)
            mean, std = self._statistics(pipe, patches)
            return type(pipe)._unpatchify_latents((patches - mean) / std)
        side = int(pipe.vae_scale_factor) * 2
        batch, _, channels = latents.shape
        patches = latents.permute(0, 2, 1).reshape(batch, channels, size[1] // side, size[0] // side)
        return type(pipe)._unpatchify_latents(patches)

    def decode(self, pipe: Any, latents: Any) -> Any:
        """Un-normalize with the VAE's batch-norm statistics on the 128 patch channels, then decode."""
        import torch

        vae = pipe.vae
        patches = type(pipe)._patchify_latents(latents.to(vae.dtype))
        mean, std = self._statistics(pipe, patches)
        with torch.no_grad():
            plain = type(pipe)._unpatchify_latents(patches * std + mean)
            return vae.decode(plain, return_dict=False)[0].float()


FAMILY = Flux2KleinFamily(
    name="Flux.2 klein",
    title="FLUX.2 [klein]",
    pipelines={
        "txt2img": "Flux2KleinPipeline",
        "img2img": "Flux2KleinInpaintPipeline",  # (with a whole-picture mask: diffusers has no klein Img2Img class)
        "inpaint": "Flux2KleinInpaintPipeline",
    },
    checkpoint_keys=("single_stream_modulation.", "model.diffusion_model.single_stream_modulation."),
    text_encoders=("qwen3",),
    latent_channels=32,
    native_size=1024,
    defaults=DISTILLED_DEFAULTS,
    samplers=FLOW_MATCH_SAMPLERS,
    schedules=FLOW_SCHEDULES,
    flow=True,
    packed_latents=True,
    latent_rgb={
        "factors": [
            [0.0058, 0.0113, 0.0073],
            [0.0495, 0.0443, 0.0836],
            [-0.0099, 0.0096, 0.0644],
            [0.2144, 0.3009, 0.3652],
            [0.0166, -0.0039, -0.0054],
            [0.0157, 0.0103, -0.0160],
            [-0.0398, 0.0902, -0.0235],
            [-0.0052, 0.0095, 0.0109],
            [-0.3527, -0.2712, -0.1666],
            [-0.0301, -0.0356, -0.0180],
            [-0.0107, 0.0078, 0.0013],
            [0.0746, 0.0090, -0.0941],
            [0.0156, 0.0169, 0.0070],
            [-0.0034, -0.0040, -0.0114],
            [0.0032, 0.0181, 0.0080],
            [-0.0939, -0.0008, 0.0186],
            [0.0018, 0.0043, 0.0104],
            [0.0284, 0.0056, -0.0127],
            [-0.0024, -0.0022, -0.0030],
            [0.1207, -0.0026, 0.0065],
            [0.0128, 0.0101, 0.0142],
            [0.0137, -0.0072, -0.0007],
            [0.0095, 0.0092, -0.0059],
            [0.0000, -0.0077, -0.0049],
            [-0.0465, -0.0204, -0.0312],
            [0.0095, 0.0012, -0.0066],
            [0.0290, -0.0034, 0.0025],
            [0.0220, 0.0169, -0.0048],
            [-0.0332, -0.0457, -0.0468],
            [-0.0085, 0.0389, 0.0609],
            [-0.0076, 0.0003, -0.0043],
            [-0.0111, -0.0460, -0.0614],
        ],
        "bias": [-0.0329, -0.0718, -0.0851],
    },
    half_dtype="bfloat16",
    prompt_note=f"prompt: Flux.2 klein's Qwen3 text encoder reads the prompt as plain text {PLAIN_TEXT}",
    activations_gb=4.0,
    lacks=("embeddings", "refiner", "prompt syntax"),
)
