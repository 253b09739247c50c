"""Build the diffusers scheduler an A1111 sampler and schedule type name (`recipe.samplers` holds the table)."""

from __future__ import annotations

import inspect
from typing import Any

from ..recipe.samplers import SAMPLERS, SCHEDULES, resolve_schedule

# Overrides the saved scheduler config may carry from a model's own choice; reset so our pick is the one in force.
_RESET_SIGMAS = {"use_karras_sigmas": False, "use_exponential_sigmas": False, "use_beta_sigmas": False}


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
