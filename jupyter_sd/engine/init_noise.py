"""Our noise (A1111's random sources, variation seeds) put into the img2img and inpaint pipelines' own noising.

Those pipelines draw their noise from the generators and hand it to the scheduler: ``add_noise`` on the UNet
families' schedulers, ``scale_noise`` (x_t = σ·noise + (1 − σ)·x0) on the flow-matching ones. Replacing the noise
there keeps everything else the pipeline does, and the generators' state (ancestral samplers' step noise), exactly
as without our noise. Flux's inpaint pipeline noises packed latents inside its loop: the packed form is given too.
"""

from __future__ import annotations

import functools
from typing import Any


def override_noise(scheduler: Any, noise: Any, packed: Any = None) -> None:
    """Make the scheduler noise an init with `noise` (B, C, H, W) instead of what diffusers drew.

    `packed` is the same noise as the pipeline's packed latents (Flux), used where the sample is packed.
    """

    def ours(sample: Any) -> Any:
        chosen = packed if packed is not None and sample.shape == packed.shape else noise
        if chosen.shape != sample.shape and patches_in_sequence(packed, sample):
            chosen = packed.flatten(2).transpose(1, 2)  # Flux.2 klein's loop noises its patches as a sequence
        elif chosen.shape != sample.shape and chosen.numel() == sample.numel():  # Qwen-Image's one-frame axis
            chosen = chosen.reshape(sample.shape)
        return chosen.to(sample.device, sample.dtype)

    add_noise = getattr(scheduler, "add_noise", None)  # add_noise(sample, noise, timesteps)
    if add_noise is not None:

        def added(original_samples: Any, noise: Any, timesteps: Any) -> Any:  # (diffusers' names: keywords work)
            return add_noise(original_samples, ours(original_samples), timesteps)

        scheduler.add_noise = functools.wraps(add_noise)(added)
    scale_noise = getattr(scheduler, "scale_noise", None)  # scale_noise(sample, timestep, noise)
    if scale_noise is not None:

        def scaled(sample: Any, timestep: Any, noise: Any = None) -> Any:
            return scale_noise(sample, timestep, ours(sample))

        scheduler.scale_noise = functools.wraps(scale_noise)(scaled)


def patches_in_sequence(patches: Any, sample: Any) -> bool:
    """Whether `sample` is (B, h·w, C) and `patches` the same latents as (B, C, h, w) (Flux.2 klein's two forms)."""
    if patches is None or patches.dim() != 4 or sample.dim() != 3:
        return False
    batch, channels, height, width = patches.shape
    return tuple(sample.shape) == (batch, height * width, channels)


def noise_init(scheduler: Any, call: dict[str, Any], inpaint: bool, noise: Any, packed: Any = None) -> None:
    """Noise the init with our `noise`: through the scheduler, or as ``latents`` for inpaint at strength 1.

    Inpaint at strength 1 starts from the noise alone and may never call the scheduler's noising; given latents
    (unpacked in every family, but Flux.2 klein's 2×2 patches: its `packed` form is 4-D), diffusers takes them as
    that noise.
    """
    if inpaint and call["strength"] == 1.0:
        call["latents"] = packed if packed is not None and packed.dim() == 4 else noise
    else:
        override_noise(scheduler, noise, packed)
