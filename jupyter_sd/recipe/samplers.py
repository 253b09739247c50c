"""A1111 sampler and schedule names, mapped onto diffusers schedulers.

The table is data (STYLE P8): each name users know from AUTOMATIC1111 points at a diffusers scheduler class and
the config overrides that make it behave like that sampler. Classes are named as strings so that importing this
module (and validating a request) never imports torch or diffusers.
"""

from __future__ import annotations

import inspect
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

# Overrides the saved scheduler config may carry from a model's own choice; reset so our pick is the one in force.
_RESET_SIGMAS = {"use_karras_sigmas": False, "use_exponential_sigmas": False, "use_beta_sigmas": False}


def resolve_schedule(sampler: str, schedule: str) -> str:
    """Return the concrete schedule type, turning "Automatic" into the sampler's own default."""
    return SAMPLERS[sampler].automatic if schedule == "Automatic" else schedule


def scheduler_class(sampler: str) -> type:
    """Import and return the diffusers scheduler class for an A1111 sampler name."""
    import diffusers

    return getattr(diffusers, SAMPLERS[sampler].scheduler)


def supported_schedules(sampler: str) -> list[str]:
    """Return the schedule types that the sampler's scheduler class accepts."""
    params = inspect.signature(scheduler_class(sampler).__init__).parameters
    return [name for name, extra in SCHEDULES.items() if all(key in params for key in extra)]


def scheduler_overrides(sampler: str, schedule: str, option: str = "schedule") -> dict[str, Any]:
    """Return the config overrides for `sampler` with `schedule`, validated against the scheduler class.

    `option` names the option the refusal is about (``hires_schedule`` for the hires pass's pair).

    Raises
    ------
    ValueError
        If the scheduler class cannot use that schedule type (e.g. Karras sigmas with DDIM).
    """
    spec = SAMPLERS[sampler]
    concrete = resolve_schedule(sampler, schedule)
    params = inspect.signature(scheduler_class(sampler).__init__).parameters
    extra = SCHEDULES[concrete]
    if any(key not in params for key in extra):
        if schedule == "Automatic":  # the sampler's preferred schedule is not available: fall back quietly
            extra = {}
        else:
            allowed = ", ".join(supported_schedules(sampler))
            msg = f"{option}: '{schedule}' is not available with sampler '{sampler}' (allowed: {allowed})"
            raise ValueError(msg)
    overrides = {key: value for key, value in _RESET_SIGMAS.items() if key in params}
    overrides.update(spec.overrides)
    overrides.update(extra)
    return overrides


def make_scheduler(sampler: str, schedule: str, base_config: dict[str, Any]) -> Any:
    """Build the scheduler for an A1111 sampler/schedule pair from a pipeline's scheduler config."""
    cls = scheduler_class(sampler)
    return cls.from_config(base_config, **scheduler_overrides(sampler, schedule))
