"""What the flow-matching families (Flux, SD3) share: their sampler, x0 from velocity, and Flux's packed latents.

Their pipelines take the velocity v of a rectified flow, x_t = (1 − σ)·x0 + σ·noise, so the clean picture a step
predicts is x0 = x_t − σ·v. Only diffusers' own flow-matching Euler runs on them for now, on the model's scheduler
config (``Schedule type: Automatic``): other A1111 samplers are refused in one line naming what is allowed.
"""

from __future__ import annotations

from typing import Any

FLOW_SAMPLERS = ("Euler",)
FLOW_SCHEDULES = ("Automatic",)


def is_flow_config(config: dict[str, Any]) -> bool:
    """Whether a scheduler config (with the engine's ``_class_name``) is a flow-matching one."""
    return str(config.get("_class_name", "")).startswith("FlowMatch")


def flow_scheduler(sampler: str, schedule: str, config: dict[str, Any]) -> Any:
    """Flow-matching Euler on the model's own scheduler config.

    Raises
    ------
    ValueError
        For a sampler or schedule type flow models cannot run here yet (one line naming the allowed ones).
    """
    if sampler not in FLOW_SAMPLERS:
        allowed = ", ".join(FLOW_SAMPLERS)
        msg = f"sampler: '{sampler}' cannot run flow-matching models (Flux, SD3) yet (allowed: {allowed})"
        raise ValueError(msg)
    if schedule not in FLOW_SCHEDULES:
        allowed = ", ".join(FLOW_SCHEDULES)
        msg = f"schedule: '{schedule}' is not available for flow-matching models (Flux, SD3) yet (allowed: {allowed})"
        raise ValueError(msg)
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler.from_config(config)


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
