"""A1111 sampler and schedule names, and the diffusers scheduler each one names (as data, no diffusers here).

The table is data (STYLE P8): each name users know from AUTOMATIC1111 points at a diffusers scheduler class and
the config overrides that make it behave like that sampler. Classes are named as strings so that importing this
module (and validating a request) never imports torch or diffusers; `engine.schedulers` builds them.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class SamplerSpec(NamedTuple):
    """One A1111 sampler: the diffusers class that implements it and its config overrides."""

    scheduler: str
    overrides: dict[str, Any]
    automatic: str = "Automatic"
    """The schedule type A1111 uses for this sampler when the user picks "Automatic"."""


SAMPLERS: dict[str, SamplerSpec] = {
    "DPM++ 2M": SamplerSpec(
        "DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}, "Karras"
    ),
    "DPM++ 2M SDE": SamplerSpec(
        "DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}, "Karras"
    ),
    "DPM++ SDE": SamplerSpec("DPMSolverSDEScheduler", {}, "Karras"),
    "Euler a": SamplerSpec("EulerAncestralDiscreteScheduler", {}),
    "Euler": SamplerSpec("EulerDiscreteScheduler", {}),
    "LMS": SamplerSpec("LMSDiscreteScheduler", {}),
    "Heun": SamplerSpec("HeunDiscreteScheduler", {}),
    "DPM2": SamplerSpec("KDPM2DiscreteScheduler", {}, "Karras"),
    "DPM2 a": SamplerSpec("KDPM2AncestralDiscreteScheduler", {}, "Karras"),
    "DDIM": SamplerSpec("DDIMScheduler", {"set_alpha_to_one": False}),
    "PLMS": SamplerSpec("PNDMScheduler", {"skip_prk_steps": True}),
    "UniPC": SamplerSpec("UniPCMultistepScheduler", {}),
    "LCM": SamplerSpec("LCMScheduler", {}),
    "TCD": SamplerSpec("TCDScheduler", {}),
    "DDPM": SamplerSpec("DDPMScheduler", {}),
}

ENSD_SAMPLERS = ("Euler a", "DPM2 a")
"""The samplers A1111's Eta noise seed delta acts on ("uses_ensd" in its sampler table): their step noise comes
from the image's generator. The SDE samplers take theirs from a Brownian tree seeded by the seed alone."""

SCHEDULES: dict[str, dict[str, Any]] = {
    "Automatic": {},
    "Karras": {"use_karras_sigmas": True},
    "Exponential": {"use_exponential_sigmas": True},
    "SGM Uniform": {"timestep_spacing": "trailing"},
}
"""Schedule types: each adds these overrides to the sampler's config."""


def resolve_schedule(sampler: str, schedule: str) -> str:
    """Return the concrete schedule type, turning "Automatic" into the sampler's own default."""
    return SAMPLERS[sampler].automatic if schedule == "Automatic" else schedule
