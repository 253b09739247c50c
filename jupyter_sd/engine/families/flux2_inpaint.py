"""`Flux2InpaintPipeline`: FLUX.2 [dev]'s img2img and inpaint, which diffusers 0.42 lacks.

Its ``Flux2Pipeline`` takes ``image=`` as reference pictures for editing; it has no Img2Img or Inpaint class for [dev].

It is ``Flux2Pipeline`` (Mistral prompt encoding, the distilled guidance handed to the transformer as ``guidance``)
painting from an init the way diffusers' ``Flux2KleinInpaintPipeline`` does, whose helpers it borrows as they are:
the schedule's levels computed for all ``num_inference_steps`` (``mu`` from the picture's size), the tail that
``strength`` keeps (``get_timesteps``), the init's normalized patches noised at the first level kept
(``scale_noise``), and after each Euler step the mask blend ``(1 − m)·init noised to the next level + m·latents``
(the clean init after the last). img2img is a mask over the whole picture. Unlike klein's class it does not also
hand the init to the transformer as a reference picture: the init is where the steps start, as in A1111.

This module imports diffusers and torch: the family imports it only when an img2img or inpaint pipeline is made.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch
from diffusers import Flux2KleinInpaintPipeline, Flux2Pipeline
from diffusers.pipelines.flux2.image_processor import Flux2ImageProcessor
from diffusers.pipelines.flux2.pipeline_flux2 import compute_empirical_mu, retrieve_timesteps
from diffusers.pipelines.flux2.pipeline_output import Flux2PipelineOutput
from diffusers.utils.torch_utils import get_module_execution_device

__all__ = ["Flux2InpaintPipeline"]


class Flux2InpaintPipeline(Flux2Pipeline):
    """FLUX.2 [dev] from an init picture (or its raw 128-channel patches) and a mask: img2img and inpaint."""

    prepare_latents = Flux2KleinInpaintPipeline.prepare_latents
    """The init encoded and normalized (raw patches normalized), noised at the first level kept: its noise too."""
    prepare_mask_latents = Flux2KleinInpaintPipeline.prepare_mask_latents
    """The mask interpolated to the packed grid and packed (B, h·w, 1)."""
    get_timesteps = Flux2KleinInpaintPipeline.get_timesteps
    """The tail of the schedule that ``strength`` keeps: ``N − int(N − N·strength)`` steps."""

    @property
    def latent_channels(self) -> int:
        """The VAE's own channels (32): an init with four times as many is raw patches, not pixels."""
        return self.vae.config.latent_channels

    @functools.cached_property
    def mask_processor(self) -> Flux2ImageProcessor:
        """The mask processor of klein's Inpaint class: grayscale, not normalized, binarized at 0.5."""
        return Flux2ImageProcessor(
            vae_scale_factor=self.vae_scale_factor * 2,
            vae_latent_channels=self.latent_channels,
            do_normalize=False,
            do_binarize=True,
            do_convert_rgb=False,
            do_convert_grayscale=True,
        )

    @torch.no_grad()
    def __call__(  # noqa: D417 (the arguments are Flux2Pipeline's and Flux2KleinInpaintPipeline's)
        self,
        prompt: str | list[str] | None = None,
        image: Any = None,
        mask_image: Any = None,
        strength: float = 0.6,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 50,
        sigmas: list[float] | None = None,
        guidance_scale: float = 4.0,
        num_images_per_prompt: int = 1,
        generator: Any = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        attention_kwargs: dict[str, Any] | None = None,
        callback_on_step_end: Any = None,
        callback_on_step_end_tensor_inputs: tuple[str, ...] = ("latents",),
        max_sequence_length: int = 512,
        text_encoder_out_layers: tuple[int, ...] = (10, 20, 30),
    ) -> Any:
        """Paint `prompt` from `image` where `mask_image` is white, keeping the last ``strength`` of the steps.

        Returns
        -------
        Flux2PipelineOutput or tuple
            The pictures (``output_type="latent"``: the VAE's own 32 channels, as klein's Inpaint hands them).

        Raises
        ------
        ValueError
            No image or mask, a strength outside [0, 1], or one that keeps no step.
        """
        self._check(prompt, prompt_embeds, image, mask_image, strength, callback_on_step_end_tensor_inputs)
        self._guidance_scale = guidance_scale
        self._attention_kwargs = attention_kwargs
        self._current_timestep = None
        self._interrupt = False
        init, height, width = self._init_pixels(image, height, width)
        batch = (1 if isinstance(prompt, str) else len(prompt)) if prompt is not None else prompt_embeds.shape[0]
        total = batch * num_images_per_prompt
        device = self._execution_device
        prompt_embeds, text_ids = self.encode_prompt(
            prompt=prompt,
            prompt_embeds=prompt_embeds,
            device=device,
            num_images_per_prompt=num_images_per_prompt,
            max_sequence_length=max_sequence_length,
            text_encoder_out_layers=text_encoder_out_layers,
        )
        timesteps = self._tail(num_inference_steps, strength, sigmas, height, width, device)
        channels = self.transformer.config.in_channels // 4
        start = timesteps[:1].repeat(total)
        dtype = prompt_embeds.dtype
        latents, noise, init_latents, _, latent_ids = self.prepare_latents(
            init, start, total, channels, height, width, dtype, device, generator, latents
        )
        mask = self.mask_processor.preprocess(mask_image, height=height, width=width)
        mask = self.prepare_mask_latents(mask, batch, num_images_per_prompt, height, width, dtype, device)
        text = {"prompt_embeds": prompt_embeds, "text_ids": text_ids, "latent_ids": latent_ids}
        blend = {"init": init_latents, "noise": noise, "mask": mask}
        latents = self._denoise(
            latents, timesteps, text, blend, callback_on_step_end, callback_on_step_end_tensor_inputs
        )
        images = self._finish(latents, latent_ids, output_type)
        self.maybe_free_model_hooks()
        return Flux2PipelineOutput(images=images) if return_dict else (images,)

    def _check(self, prompt: Any, embeds: Any, image: Any, mask: Any, strength: float, inputs: Any) -> None:
        """The checks of diffusers' inpaint pipelines, in their words."""
        if image is None or mask is None:
            raise ValueError("`image` and `mask_image` have to be provided for img2img and inpainting.")
        if not 0 <= strength <= 1:
            raise ValueError(f"The value of strength should in [0.0, 1.0] but is {strength}")
        if (prompt is None) == (embeds is None):
            raise ValueError("Provide either `prompt` or `prompt_embeds`, not both and not neither.")
        unknown = [name for name in inputs if name not in self._callback_tensor_inputs]
        if unknown:
            raise ValueError(f"`callback_on_step_end_tensor_inputs` has to be in {self._callback_tensor_inputs}")

    def _init_pixels(self, image: Any, height: int | None, width: int | None) -> tuple[Any, int, int]:
        """The init as the pipeline's processor makes it (raw patches as they are), at the size painted.

        The size is `height` × `width` where given, else the init's, rounded down to whole patches.
        """
        multiple = self.vae_scale_factor * 2
        if isinstance(image, torch.Tensor) and image.ndim == 4 and image.shape[1] == self.latent_channels * 4:
            return image, image.shape[2] * multiple, image.shape[3] * multiple
        first = image[0] if isinstance(image, list) else image
        raw_height, raw_width = Flux2KleinInpaintPipeline._get_raw_image_size(first)
        height = (int(height or raw_height) // multiple) * multiple
        width = (int(width or raw_width) // multiple) * multiple
        return self.image_processor.preprocess(image, height, width), height, width

    def _tail(self, steps: int, strength: float, sigmas: Any, height: int, width: int, device: Any) -> Any:
        """Flux2Pipeline's levels for `steps` (its ``mu`` for the picture's size), of which the last ``strength``."""
        if sigmas is None:
            sigmas = np.linspace(1.0, 1 / steps, steps)
        if getattr(self.scheduler.config, "use_flow_sigmas", False):
            sigmas = None
        patches = (int(height) // self.vae_scale_factor // 2) * (int(width) // self.vae_scale_factor // 2)
        mu = compute_empirical_mu(image_seq_len=patches, num_steps=steps)
        _, steps = retrieve_timesteps(self.scheduler, steps, device, sigmas=sigmas, mu=mu)
        timesteps, kept = self.get_timesteps(steps, strength, device)
        if kept < 1:
            msg = f"strength {strength} keeps {kept} of the {steps} steps: at least one must run"
            raise ValueError(msg)
        return timesteps

    def _denoise(self, latents: Any, timesteps: Any, text: dict, blend: dict, callback: Any, inputs: Any) -> Any:
        """Euler (the scheduler's) steps with the distilled guidance, the init kept outside the mask after each."""
        guidance = torch.full([1], self._guidance_scale, device=latents.device, dtype=torch.float32)
        guidance = guidance.expand(latents.shape[0])
        prompt_embeds = text["prompt_embeds"]
        self._num_timesteps = len(timesteps)
        for index, timestep in enumerate(timesteps):
            if self.interrupt:
                continue
            self._current_timestep = timestep
            prediction = self.transformer(
                hidden_states=latents.to(self.transformer.dtype),
                timestep=timestep.expand(latents.shape[0]).to(latents.dtype) / 1000,
                guidance=guidance,
                encoder_hidden_states=prompt_embeds,
                txt_ids=text["text_ids"],
                img_ids=text["latent_ids"],
                joint_attention_kwargs=self.attention_kwargs,
                return_dict=False,
            )[0][:, : latents.size(1)]
            latents = self.scheduler.step(prediction, timestep, latents, return_dict=False)[0]
            kept = blend["init"]
            if index < len(timesteps) - 1:
                kept = self.scheduler.scale_noise(kept, torch.tensor([timesteps[index + 1]]), blend["noise"])
            latents = (1 - blend["mask"]) * kept + blend["mask"] * latents
            if callback is not None:
                tensors = {"latents": latents, "prompt_embeds": prompt_embeds}
                outputs = callback(self, index, timestep, {name: tensors[name] for name in inputs})
                latents = outputs.pop("latents", latents)
                prompt_embeds = outputs.pop("prompt_embeds", prompt_embeds)
        self._current_timestep = None
        return latents

    def _finish(self, latents: Any, latent_ids: Any, output_type: str) -> Any:
        """Packed latents → the VAE's own channels (un-normalized), decoded unless ``output_type="latent"``."""
        latents = self._unpack_latents_with_ids(latents, latent_ids)
        vae = self.vae
        mean = vae.bn.running_mean.view(1, -1, 1, 1).to(latents.device, latents.dtype)
        std = torch.sqrt(vae.bn.running_var.view(1, -1, 1, 1) + vae.config.batch_norm_eps).to(
            latents.device, latents.dtype
        )
        latents = self._unpatchify_latents(latents * std + mean)
        if output_type == "latent":
            return latents
        pixels = vae.decode(latents.to(get_module_execution_device(vae), vae.dtype), return_dict=False)[0]
        return self.image_processor.postprocess(pixels, output_type=output_type)
