"""The samplers of flow-matching models under A1111/Forge names, each on one of diffusers' schedulers.

``Euler`` is diffusers' flow-matching Euler, ``Heun`` its flow-matching Heun (two transformer passes a step, the
last step Euler's), ``DPM++ 2M`` and ``UniPC`` the multistep solvers on flow sigmas (``use_flow_sigmas``,
``prediction_type="flow_prediction"``, ``flow_shift`` = the model's shift), ``LCM`` the flow-matching LCM.

Schedule types mean the same for every sampler, as in Forge, where a schedule is a list of noise levels any sampler
walks: ``Automatic`` is the scheduler's own spacing of the model's shifted levels (raw diffusers' pixels with that
scheduler in the pipeline); ``Simple``, ``Beta`` and ``Karras`` are the levels diffusers' flow-matching Euler
computes for the request (the pipeline's sigmas, its shift or Flux's size-dependent ``mu``), which Heun, DPM++ 2M
and UniPC cannot compute themselves: we compute them and hand them to the scheduler. Flux's size-dependent shift
(e^μ) reaches a scheduler that takes no ``mu`` (Heun) as the equal static shift: shifting by ``exp(mu)`` is Flux's
exponential time shift.

Heun where a pipeline hands its own levels (``sigmas``: Chroma, Z-Image, Qwen-Image, and Flux's img2img, inpaint
and hires pass), which diffusers' flow Heun cannot take: it walks the levels the flow Euler computes from that call
(the pipeline's sigmas, shift, ``mu``) with each level after the first twice, as Heun keeps them, whatever the
schedule type. Those pipelines then count Heun's 2n − 1 timesteps as steps; `count_heun_steps` gives their
``get_timesteps`` (the img2img cut at the strength) the n steps A1111 counts, so the cut starts at the right level.
"""

from __future__ import annotations

import inspect
import math
from functools import cache
from typing import Any

from .flow import FLOW_SCHEDULES

FLOW_PREDICTION = {"use_flow_sigmas": True, "prediction_type": "flow_prediction"}
NO_SIGMA_SPACING = {"use_karras_sigmas": False, "use_beta_sigmas": False, "use_exponential_sigmas": False}
"""The multistep solvers' VP spacings, which would replace the flow levels: off, our sigmas stand for them."""

FLOW_SAMPLER_TABLE: dict[str, tuple[str, dict[str, Any]]] = {
    "Euler": ("FlowMatchEulerDiscreteScheduler", {}),
    "Heun": ("FlowMatchHeunDiscreteScheduler", {}),
    "DPM++ 2M": (
        "DPMSolverMultistepScheduler",
        {**FLOW_PREDICTION, **NO_SIGMA_SPACING, "algorithm_type": "dpmsolver++", "solver_order": 2},
    ),
    "UniPC": ("UniPCMultistepScheduler", {**FLOW_PREDICTION, **NO_SIGMA_SPACING}),
    "LCM": ("FlowMatchLCMScheduler", {}),
}
"""A1111/Forge sampler name → diffusers class and the config it changes on the model's scheduler config."""

FLOW_MATCH_SAMPLERS = tuple(FLOW_SAMPLER_TABLE)
"""Every flow sampler: every flow family runs them all (`_FamilySigmas` takes the pipeline's call as it comes)."""

SCHEDULE_FLAGS = {"Beta": {"use_beta_sigmas": True}, "Karras": {"use_karras_sigmas": True}}
"""What each schedule type changes in a flow-matching Euler (or LCM) config (Simple: nothing)."""

NATIVE_SCHEDULES = {"FlowMatchEulerDiscreteScheduler", "FlowMatchLCMScheduler"}
"""The classes that compute every schedule type themselves (the others get our sigmas for all but Automatic)."""


def flow_scheduler(sampler: str, schedule: str, config: dict[str, Any]) -> Any:
    """The scheduler painting `sampler` with `schedule` on a flow model's own scheduler `config`.

    Raises
    ------
    ValueError
        For a sampler or schedule type flow models cannot run (one line naming the allowed ones).
    """
    if sampler not in FLOW_SAMPLER_TABLE:
        allowed = ", ".join(FLOW_SAMPLER_TABLE)
        msg = f"sampler: '{sampler}' cannot paint flow-matching models (Flux, SD3 …) (allowed: {allowed})"
        raise ValueError(msg)
    if schedule not in FLOW_SCHEDULES:
        allowed = ", ".join(FLOW_SCHEDULES)
        msg = f"schedule: '{schedule}' is not available for flow-matching models (allowed: {allowed})"
        raise ValueError(msg)
    import diffusers

    name, overrides = FLOW_SAMPLER_TABLE[sampler]
    if name in NATIVE_SCHEDULES:
        return getattr(diffusers, name).from_config(config, **overrides, **SCHEDULE_FLAGS.get(schedule, {}))
    params = inspect.signature(getattr(diffusers, name).__init__).parameters
    if "flow_shift" in params:
        overrides = {**overrides, "flow_shift": float(config.get("shift", 1.0))}
    own = {key: value for key, value in config.items() if key in params}  # (the flow Euler's keys it lacks: quiet)
    scheduler = family_sigmas_class(getattr(diffusers, name)).from_config(own, **overrides)
    scheduler.flow_schedule, scheduler.flow_config = schedule, dict(config)
    scheduler.register_to_config(use_flow_sigmas=True)  # Flux's pipeline then leaves the levels to it (Heun too)
    return scheduler


@cache
def family_sigmas_class(base: type) -> type:
    """`base` taking what flow pipelines hand ``set_timesteps`` (``sigmas``, ``mu``), and our sigmas where it cannot.

    The class keeps its name (messages, ENSD and the step-noise lookup read it).
    """
    return type(base.__name__, (_FamilySigmas, base), {"__module__": __name__, "__doc__": base.__doc__})


class _FamilySigmas:
    """``set_timesteps`` as flow pipelines call it, on a scheduler that takes part of it (Heun, DPM++ 2M, UniPC).

    ``Automatic`` runs the class's own spacing; the other schedule types, and Heun handed a pipeline's own
    ``sigmas`` (it takes none), run the levels diffusers' flow-matching Euler computes from the same arguments.
    """

    flow_schedule = "Automatic"
    flow_config: dict[str, Any] = {}  # noqa: RUF012 (set per instance by flow_scheduler)

    def set_timesteps(
        self, num_inference_steps: int | None = None, device: Any = None, sigmas: Any = None, mu: float | None = None
    ) -> None:
        """Set the noise levels of a pass: the class's own for Automatic, else the flow Euler's of the schedule.

        Heun handed a pipeline's own levels (which it takes none of) walks the flow Euler's levels of that call.
        """
        own = inspect.signature(super().set_timesteps).parameters  # type: ignore[misc]
        heun_given_levels = sigmas is not None and "sigmas" not in own and self.order > 1  # type: ignore[attr-defined]
        if isinstance(sigmas, list):  # Z-Image's pipeline hands a list, which UniPC's flow shift cannot multiply
            import numpy as np

            sigmas = np.array(sigmas)
        steps = num_inference_steps or len(sigmas)
        mu = mu if self.flow_config.get("use_dynamic_shifting") else None  # (Flux's pipelines pass it regardless)
        if self.flow_schedule == "Automatic" and not heun_given_levels:
            self._own_spacing(steps, device, sigmas if "sigmas" in own else None, mu, "mu" in own)
        else:
            self._levels(steps, device, sigmas, mu)

    def _own_spacing(self, steps: int, device: Any, sigmas: Any, mu: float | None, takes_mu: bool) -> None:
        """The class's own spacing; a ``mu`` it cannot take becomes the equal static shift e^μ (Heun on Flux)."""
        kwargs: dict[str, Any] = {"sigmas": sigmas} if sigmas is not None else {}
        if mu is not None and takes_mu:
            kwargs["mu"] = mu
        elif mu is not None:
            self.register_to_config(shift=math.exp(mu))  # type: ignore[attr-defined]
            fresh = type(self)(num_train_timesteps=self.config.num_train_timesteps, shift=math.exp(mu))  # type: ignore
            self.sigma_min, self.sigma_max = fresh.sigma_min, fresh.sigma_max  # (its __init__ shifts them)
        super().set_timesteps(steps, device=device, **kwargs)  # type: ignore[misc]

    def _levels(self, steps: int, device: Any, sigmas: Any, mu: float | None) -> None:
        """The flow Euler's levels of the schedule type, installed as the class keeps them."""
        import torch
        from diffusers import FlowMatchEulerDiscreteScheduler

        flags = SCHEDULE_FLAGS.get(self.flow_schedule, {})
        euler = FlowMatchEulerDiscreteScheduler.from_config(self.flow_config, **flags)
        euler.set_timesteps(None if sigmas is not None else steps, device=device, sigmas=sigmas, mu=mu)
        levels, timesteps = euler.sigmas.float().cpu(), euler.timesteps.float()
        if self.order > 1:  # type: ignore[attr-defined] # Heun: each level after the first twice, as it keeps them
            super().set_timesteps(len(timesteps), device=device)  # type: ignore[misc] # (resets its state)
            self.timesteps = _twice_after_first(timesteps).to(device)
            self.sigmas = torch.cat([_twice_after_first(levels[:-1]), levels[-1:]])
            return
        dynamic = getattr(self.config, "use_dynamic_shifting", False)  # type: ignore[attr-defined]
        super().set_timesteps(len(timesteps), device=device, **({"mu": 0.0} if dynamic else {}))  # type: ignore[misc]
        self.sigmas, self.timesteps = levels, timesteps.to(device)

    def scale_noise(self, sample: Any, timestep: Any, noise: Any) -> Any:
        """Flow matching's forward process x_t = σ·noise + (1 − σ)·x0 (img2img and inpaint), as the flow Euler's."""
        if self.begin_index is None:
            index = self.index_for_timestep(timestep.flatten()[0].to(self.timesteps.device))
        elif self.step_index is not None:  # inpaint: the init noised to the next level, after a step
            index = self.step_index
        else:
            index = self.begin_index
        sigma = self.sigmas[index].to(sample.device, sample.dtype)
        return sigma * noise + (1.0 - sigma) * sample


def count_heun_steps(pipe: Any) -> None:
    """Make `pipe`'s img2img cut (``get_timesteps``) count a step of a two-pass scheduler (Heun) as one step.

    A pipeline that hands its own ``sigmas`` takes the number of Heun's timesteps (2n − 1) for its step count, so
    ``get_timesteps`` would cut the schedule at the wrong level; the scheduler's own count (n levels, as A1111 and
    Forge count Heun's steps) goes in instead, and the cut keeps the last ``strength`` of them, two timesteps each.
    A pipeline that passes no ``sigmas`` counts n already: the same number goes in.
    """
    cut = getattr(type(pipe), "get_timesteps", None)
    if cut is None or "get_timesteps" in vars(pipe):
        return

    def get_timesteps(num_inference_steps: int, *args: Any, **kwargs: Any) -> Any:
        scheduler = pipe.scheduler
        if getattr(scheduler, "order", 1) > 1 and getattr(scheduler, "num_inference_steps", None):
            num_inference_steps = scheduler.num_inference_steps
        return cut(pipe, num_inference_steps, *args, **kwargs)

    pipe.get_timesteps = get_timesteps


def _twice_after_first(values: Any) -> Any:
    import torch

    return torch.cat([values[:1], values[1:].repeat_interleave(2)])
