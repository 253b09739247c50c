"""Qwen-Image: a 20B MMDiT over the Wan 2.1 VAE's 16 normalized channels, packed 2×2; Qwen2.5-VL reads the prompt.

Its VAE is a causal video autoencoder (one frame here) whose latents are normalized by per-channel mean and std,
not scaled and shifted: previews use ComfyUI's Wan 2.1 latent→RGB factors, decodes this family's own `decode`.
CFG is diffusers' ``true_cfg_scale`` (A1111's CFG scale, with the norm of the conditional prediction kept); its
pipeline guides only when given a negative prompt, so an empty one becomes the card's ``" "``. Defaults from the
Qwen-Image card: 50 steps, CFG 4. Qwen2.5-VL is a language model: A1111 emphasis does not apply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .base import PLAIN_TEXT, Family
from .flow import FLOW_SCHEDULES
from .flow_samplers import FLOW_MATCH_SAMPLERS


@dataclass(frozen=True)
class QwenImageFamily(Family):
    """Qwen-Image's true CFG, its empty negative prompt, one-frame latents and normalized VAE."""

    def guidance_kwargs(self, guidance: float, distilled: float) -> dict[str, Any]:
        """A1111's CFG scale is its ``true_cfg_scale`` (there is no distilled guidance)."""
        return {"true_cfg_scale": guidance}

    def adapt_call(self, pipe: Any, call: dict[str, Any]) -> dict[str, Any]:
        """CFG above 1 with no negative prompt guides against the card's empty one (diffusers would skip CFG)."""
        if call.get("true_cfg_scale", 1.0) > 1 and not call.get("negative_prompt") and "prompt" in call:
            return {**call, "negative_prompt": " "}
        return call

    def to_spatial(self, pipe: Any, latents: Any, size: tuple[int, int]) -> Any:
        """Unpacked latents lose their one-frame axis: (B, C, 1, H, W) → (B, C, H, W)."""
        spatial = super().to_spatial(pipe, latents, size)
        return spatial[:, :, 0] if spatial.dim() == 5 else spatial  # (B, C, frame, H, W) → (B, C, H, W)

    def encode(self, pipe: Any, pixels: Any, generator: Any) -> Any:
        """One frame through its VAE, normalized ((z − mean) / std) as its Img2Img pipeline encodes."""
        from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img import retrieve_latents

        frames = retrieve_latents(pipe.vae.encode(pixels.unsqueeze(2)), generator=generator)
        mean, std = self._statistics(pipe, frames)
        return ((frames - mean) / std)[:, :, 0]

    @staticmethod
    def _statistics(pipe: Any, like: Any) -> tuple[Any, Any]:
        """Its VAE's per-channel latent mean and std, shaped (1, C, 1, 1, 1) on `like`'s device and dtype."""
        import torch

        config = pipe.vae.config
        shape = (1, config.z_dim, 1, 1, 1)
        mean = torch.tensor(config.latents_mean).view(shape).to(like.device, like.dtype)
        return mean, torch.tensor(config.latents_std).view(shape).to(like.device, like.dtype)

    def decode(self, pipe: Any, latents: Any) -> Any:
        """Un-normalize (z = x·std + mean) and decode one frame, as its pipeline does after the loop."""
        import torch

        vae = pipe.vae
        frames = latents.to(vae.dtype).unsqueeze(2)
        mean, std = self._statistics(pipe, frames)
        with torch.no_grad():
            frames = frames * std + mean
            return vae.decode(frames, return_dict=False)[0][:, :, 0].float()


FAMILY = QwenImageFamily(
    name="Qwen-Image",
    title="Qwen-Image",
    pipelines={
        "txt2img": "QwenImagePipeline",
        "img2img": "QwenImageImg2ImgPipeline",
        "inpaint": "QwenImageInpaintPipeline",
    },
    checkpoint_keys=("txt_norm.", "model.diffusion_model.txt_norm."),
    text_encoders=("qwen2.5-vl",),
    latent_channels=16,
    native_size=1328,
    defaults={"sampler": "Euler", "schedule": "Automatic", "steps": 50, "guidance": 4.0, "emphasis": "None"},
    samplers=FLOW_MATCH_SAMPLERS,
    schedules=FLOW_SCHEDULES,
    flow=True,
    packed_latents=True,
    latent_rgb={
        "factors": [
            [-0.1299, -0.1692, 0.2932],
            [0.0671, 0.0406, 0.0442],
            [0.3568, 0.2548, 0.1747],
            [0.0372, 0.2344, 0.1420],
            [0.0313, 0.0189, -0.0328],
            [0.0296, -0.0956, -0.0665],
            [-0.3477, -0.4059, -0.2925],
            [0.0166, 0.1902, 0.1975],
            [-0.0412, 0.0267, -0.1364],
            [-0.1293, 0.0740, 0.1636],
            [0.0680, 0.3019, 0.1128],
            [0.0032, 0.0581, 0.0639],
            [-0.1251, 0.0927, 0.1699],
            [0.0060, -0.0633, 0.0005],
            [0.3477, 0.2275, 0.2950],
            [0.1984, 0.0913, 0.1861],
        ],
        "bias": [-0.1835, -0.0868, -0.3360],
    },
    half_dtype="bfloat16",
    prompt_note=f"prompt: Qwen-Image's Qwen2.5-VL text encoder reads the prompt as plain text {PLAIN_TEXT}",
    activations_gb=5.0,
    lacks=("embeddings", "refiner", "prompt syntax"),
    controlnet="QwenImageControlNetModel",
    controlnet_tokens=True,  # (a unit's region mask weighs them: control/region_masks.py)
    controlnet_pipelines=dict.fromkeys(("txt2img", "img2img", "inpaint"), "QwenImageControlNetPipeline"),  # (composed)
    controlnet_inpaint="QwenImageControlNetInpaintPipeline",  # InstantX's Qwen-Image-ControlNet-Inpainting
    controlnet_shared=True,  # (diffusers' Multi model holds one Union ControlNet, for several maps)
)
