"""What the flow-matching families share: their schedule types, x0 from velocity, and Flux's packed latents.

Their pipelines take the velocity v of a rectified flow, x_t = (1 − σ)·x0 + σ·noise, so the clean picture a step
predicts is x0 = x_t − σ·v. The samplers (flow_samplers.py) run on the model's scheduler config
(``Schedule type: Automatic``); ``Simple`` is the flow Euler's own levels (Forge's simple schedule takes every n-th
of the model's shifted levels from the top: diffusers' linspace), ``Beta`` and ``Karras`` diffusers' beta and
Karras spacing of them; ``--shift`` a static shift (Forge's ``Shift``).
"""

from __future__ import annotations

from typing import Any

FLOW_SCHEDULES = ("Automatic", "Simple", "Beta", "Karras")


def is_flow_config(config: dict[str, Any]) -> bool:
    """Whether a scheduler config (with the engine's ``_class_name``) is a flow-matching one."""
    return str(config.get("_class_name", "")).startswith("FlowMatch")


def with_shift(config: dict[str, Any], shift: float) -> dict[str, Any]:
    """A flow scheduler config with a static `shift` (σ → s·σ/(1+(s−1)·σ)) instead of its own; 0 keeps it.

    On Flux this replaces the shift that grows with the picture's size (diffusers' dynamic shifting, e^μ: about
    3.16 at 1024²); SD3's config holds a static one (3.0) already.
    """
    if not shift or not is_flow_config(config):
        return config
    return {**config, "shift": float(shift), "use_dynamic_shifting": False}


def flow_x0(scheduler: Any, model_output: Any, sample: Any) -> Any:
    """x0 = x_t − σ·v for the step `scheduler` just took (its step index has already moved on)."""
    index = max(0, int(scheduler.step_index) - 1)
    sigma = scheduler.sigmas[index].to(sample.device, sample.dtype)
    return sample - sigma * model_output


def pack(pipe: Any, latents: Any) -> Any:
    """(B, C, H, W) latents → Flux's sequence of 2×2 patches (B, H/2·W/2, 4C)."""
    batch, channels, height, width = latents.shape
    return type(pipe)._pack_latents(latents, batch, channels, height, width)


def unpack(pipe: Any, latents: Any, size: tuple[int, int]) -> Any:
    """Flux's packed latents of a `size` (width, height) picture → (B, C, H, W)."""
    width, height = size
    return type(pipe)._unpack_latents(latents, height, width, pipe.vae_scale_factor)


def takes_latents(pipe: Any) -> None:
    """Make `pipe`'s image processor (and VAE encode) take latents as latents (the hires pass hands its latents).

    diffusers' processor passes a tensor through unencoded only when its channels are ``vae_latent_channels``;
    Chroma's Img2Img builds its processor with the default 4, so its 16 channels would be resized as a picture.
    """
    processor = getattr(pipe, "image_processor", None)
    channels = getattr(getattr(getattr(pipe, "vae", None), "config", None), "latent_channels", None)
    if processor is not None and channels and processor.config.vae_latent_channels != channels:
        processor.register_to_config(vae_latent_channels=channels)
    encode = getattr(pipe, "_encode_vae_image", None)
    if channels and encode is not None and getattr(pipe, "transformer", None) is not None:
        pipe._encode_vae_image = _latents_through(encode, channels)


def _latents_through(encode: Any, channels: int) -> Any:
    """`encode` that hands latents (a tensor of the VAE's latent channels) back as they are, pictures it encodes.

    diffusers' Flux ControlNet img2img encodes whatever image it gets, where ``FluxImg2ImgPipeline`` takes a tensor
    of latent channels as the latents themselves: this gives the ControlNet pipeline the same rule, so the hires
    pass (which hands latents) paints with units exactly as without them.
    """

    def through(image: Any, generator: Any) -> Any:
        return image if image.shape[1] == channels else encode(image=image, generator=generator)

    return through
