"""Build the diffusers scheduler an A1111 sampler and schedule type name (`recipe.samplers` holds the table).

A1111 runs k-diffusion's samplers over the model's discrete noise levels: its sigmas come from k-diffusion's
schedule functions (interpolated in log-sigma, from sigma_max = sigma(999) down), and the UNet sees fractional
timesteps ``t(sigma)``. Diffusers' schedulers start from their own timestep spacing and round timesteps in places,
so a picture drifts from A1111's by several levels. For the samplers k-diffusion implements we keep diffusers'
step maths and give the scheduler A1111's sigmas and timesteps (`_A1111Sigmas`), and the SDE samplers the
Brownian-tree noise A1111 seeds with the image's seed.
"""

from __future__ import annotations

import inspect
import math
from functools import cache
from typing import Any

from ..recipe.samplers import SAMPLERS, SCHEDULES, resolve_schedule

# Overrides the saved scheduler config may carry from a model's own choice; reset so our pick is the one in force.
_RESET_SIGMAS = {"use_karras_sigmas": False, "use_exponential_sigmas": False, "use_beta_sigmas": False}

A1111_SIGMAS = {
    "Automatic": "uniform",
    "Uniform": "uniform",
    "Normal": "uniform",
    "Karras": "karras",
    "Exponential": "exponential",
    "SGM Uniform": "sgm_uniform",
    "Simple": "simple",
}
"""Schedule types whose sigmas we compute as A1111's ``sd_schedulers`` does (Automatic: the k-diffusion
denoiser's own ``get_sigmas``, which Uniform and Normal equal for an eps model)."""

K_DIFFUSION_CLASSES = {
    "EulerDiscreteScheduler",
    "EulerAncestralDiscreteScheduler",
    "HeunDiscreteScheduler",
    "LMSDiscreteScheduler",
    "KDPM2DiscreteScheduler",
    "KDPM2AncestralDiscreteScheduler",
    "DPMSolverSDEScheduler",
    "DPMSolverMultistepScheduler",
}
"""The diffusers classes standing for k-diffusion samplers in A1111: they get A1111's sigmas and timesteps."""

DISCARD_PENULTIMATE = {"KDPM2DiscreteScheduler", "KDPM2AncestralDiscreteScheduler"}
"""A1111's ``discard_next_to_last_sigma`` samplers (DPM2, DPM2 a; DPM++ 3M SDE too, by its solver order): one
sigma more, the next-to-last dropped."""


def scheduler_class(sampler: str) -> type:
    """Import and return the diffusers scheduler class for an A1111 sampler name."""
    import diffusers

    return getattr(diffusers, SAMPLERS[sampler].scheduler)


def _a1111_kind(sampler: str, schedule: str) -> str | None:
    """The A1111 sigma schedule we compute for the pair, or None where diffusers' own schedule stays."""
    if SAMPLERS[sampler].scheduler not in K_DIFFUSION_CLASSES:
        return None
    return A1111_SIGMAS.get(resolve_schedule(sampler, schedule))


def supported_schedules(sampler: str) -> list[str]:
    """Return the schedule types that the sampler's scheduler class accepts (or that we compute for it)."""
    params = inspect.signature(scheduler_class(sampler).__init__).parameters
    return [
        name
        for name, extra in SCHEDULES.items()
        if all(key in params for key in extra) or _a1111_kind(sampler, name) is not None
    ]


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
        if _a1111_kind(sampler, schedule) is not None:  # we compute its sigmas ourselves (e.g. Karras for Euler a)
            extra = {key: value for key, value in extra.items() if key in params}
        elif schedule == "Automatic":  # the sampler's preferred schedule is not available: fall back quietly
            extra = {}
        else:
            allowed = ", ".join(supported_schedules(sampler))
            msg = f"{option}: '{schedule}' is not available with sampler '{sampler}' (allowed: {allowed})"
            raise ValueError(msg)
    overrides = {key: value for key, value in _RESET_SIGMAS.items() if key in params}
    overrides.update(spec.overrides)
    overrides.update(extra)
    return overrides


def make_scheduler(sampler: str, schedule: str, base_config: dict[str, Any], a1111: bool = True) -> Any:
    """Build the scheduler for an A1111 sampler/schedule pair from a pipeline's scheduler config.

    `a1111=False` gives diffusers' class as it is (the benchmark's "before"); by default a k-diffusion sampler
    runs on A1111's sigmas and timesteps. A flow-matching config (Flux, SD3) gets a flow sampler
    (families/flow_samplers.py).
    """
    from .families.flow import is_flow_config
    from .families.flow_samplers import flow_scheduler

    if is_flow_config(base_config):
        return flow_scheduler(sampler, schedule, base_config)
    overrides = scheduler_overrides(sampler, schedule)
    kind = _a1111_kind(sampler, schedule) if a1111 else None
    if kind is None:
        return scheduler_class(sampler).from_config(base_config, **overrides)
    cls = a1111_class(scheduler_class(sampler))
    params = inspect.signature(cls.__init__).parameters
    # the sigmas come from us, through diffusers' Karras branch where the class has one
    flags = {**_RESET_SIGMAS, "use_karras_sigmas": True}
    overrides.update({key: value for key, value in flags.items() if key in params})
    scheduler = cls.from_config(base_config, **overrides)
    scheduler.a1111_schedule = kind
    return scheduler


@cache
def a1111_class(base: type) -> type:
    """`base` with A1111's sigmas, fractional timesteps and seeded SDE noise.

    The class keeps its name, so code that looks schedulers up by name (ENSD's) still knows it.
    """
    extras: tuple[type, ...] = (_A1111Sigmas,)
    if base.__name__ == "DPMSolverMultistepScheduler":
        extras = (_MultistepBrownian, _A1111Sigmas)
    elif base.__name__ == "DPMSolverSDEScheduler":
        extras = (_SeededBrownian, _A1111Sigmas)
    return type(base.__name__, (*extras, base), {"__module__": __name__, "__doc__": base.__doc__})


# -- A1111's sigmas ---------------------------------------------------------------------------------------------


def a1111_sigmas(kind: str, steps: int, alphas_cumprod: Any, discard_penultimate: bool = False) -> Any:
    """The `steps` nonzero sigmas A1111 samples over (float32, high to low; the closing 0 not included).

    DPM2's ``discard_next_to_last_sigma`` asks for one step more and drops the last nonzero sigma, so its last
    step lands on 0 from higher up.
    """
    import torch

    train = ((1 - alphas_cumprod) / alphas_cumprod).to(torch.float32) ** 0.5
    n = steps + 1 if discard_penultimate else steps
    sigma_min, sigma_max = train[0].item(), train[-1].item()
    last = len(train) - 1
    if kind == "uniform":
        sigmas = _t_to_sigma(train, torch.linspace(last, 0, n))
    elif kind == "sgm_uniform":
        sigmas = _t_to_sigma(train, torch.linspace(last, 0, n + 1)[:-1])
    elif kind == "karras":  # Karras et al. (2022), rho 7
        ramp = torch.linspace(0, 1, n)
        low, high = sigma_min ** (1 / 7.0), sigma_max ** (1 / 7.0)
        sigmas = (high + ramp * (low - high)) ** 7.0
    elif kind == "exponential":
        sigmas = torch.linspace(math.log(sigma_max), math.log(sigma_min), n).exp()
    elif kind == "simple":
        stride = len(train) / n
        sigmas = torch.stack([train[-(1 + int(i * stride))] for i in range(n)])
    else:
        raise ValueError(f"unknown A1111 schedule {kind!r}")
    return sigmas[:-1] if discard_penultimate else sigmas


def _t_to_sigma(train: Any, t: Any) -> Any:
    """k-diffusion's ``t_to_sigma``: fractional timesteps, interpolated in log-sigma."""
    log_sigmas = train.log()
    low, high, w = t.floor().long(), t.ceil().long(), t.frac()
    return ((1 - w) * log_sigmas[low] + w * log_sigmas[high]).exp()


def sigma_to_t(sigmas: Any, alphas_cumprod: Any) -> Any:
    """k-diffusion's ``sigma_to_t``: the fractional timestep of each sigma, interpolated in log-sigma."""
    import torch

    log_sigmas = (((1 - alphas_cumprod) / alphas_cumprod).to(torch.float32) ** 0.5).log()
    log_sigma = torch.as_tensor(sigmas, dtype=torch.float32).log()
    dists = log_sigma - log_sigmas[:, None]
    low = dists.ge(0).cumsum(dim=0).argmax(dim=0).clamp(max=log_sigmas.shape[0] - 2)
    w = ((log_sigmas[low] - log_sigma) / (log_sigmas[low] - log_sigmas[low + 1])).clamp(0, 1)
    return (1 - w) * low + w * (low + 1)


class _A1111Sigmas:
    """Diffusers' step maths on A1111's sigmas, and ``t(sigma)`` unrounded for every UNet call.

    The sigma list comes in through the class's Karras branch, or is set after it where the class has none.
    """

    a1111_schedule: str | None = None
    sigmas: Any
    timesteps: Any
    alphas_cumprod: Any
    config: Any

    def _a1111(self, steps: int) -> Any:
        discard = type(self).__name__ in DISCARD_PENULTIMATE or getattr(self.config, "solver_order", 2) == 3
        return a1111_sigmas(self.a1111_schedule, steps, self.alphas_cumprod, discard)

    def _convert_to_karras(self, in_sigmas: Any, num_inference_steps: int | None = None) -> Any:
        if self.a1111_schedule is None:
            more = () if num_inference_steps is None else (num_inference_steps,)  # LMS's and SDE's take no count
            return super()._convert_to_karras(in_sigmas, *more)  # type: ignore[misc]
        steps = num_inference_steps or self.num_inference_steps
        return self._a1111(steps).double().numpy()

    def set_timesteps(self, num_inference_steps: int, *args: Any, **kwargs: Any) -> None:
        super().set_timesteps(num_inference_steps, *args, **kwargs)  # type: ignore[misc]
        if self.a1111_schedule is None:
            return
        import torch

        if not getattr(self.config, "use_karras_sigmas", False):  # Euler a: no Karras branch, a plain layout
            sigmas = self._a1111(num_inference_steps)
            self.sigmas = torch.cat([sigmas, sigmas.new_zeros(1)])
        main = sigma_to_t(self.sigmas[self.sigmas > 0].unique_consecutive(), self.alphas_cumprod)
        device = self.timesteps.device
        if type(self).__name__ in DISCARD_PENULTIMATE:  # first-order timesteps at even places, midpoints between
            timesteps = self.timesteps.to(torch.float32)
            timesteps[0::2] = main.to(timesteps)
            self.timesteps = timesteps.to(device)
        elif len(self.timesteps) == len(main):
            self.timesteps = main.to(device)
        # the others (Heun, DPM++ SDE) already hold unrounded t(sigma) from their Karras branch

    @property
    def init_noise_sigma(self) -> Any:
        """A1111 starts from ``noise * sigmas[0]`` (diffusers' leading spacing would take sqrt(sigma² + 1))."""
        return self.sigmas.max()


class _MultistepBrownian:
    """DPM++ 2M/3M (SDE) on A1111's sigmas: VP latents start at sigma_max's, and SDE noise from a Brownian tree."""

    sigmas: Any
    config: Any
    step_index: Any
    _brownian: Any = None

    @property
    def init_noise_sigma(self) -> Any:
        """A1111's ``noise * sigma_max`` in diffusers' VP latents: ``sigma_max / sqrt(sigma_max² + 1)``."""
        sigma = self.sigmas.max()
        return sigma / (sigma**2 + 1) ** 0.5

    @init_noise_sigma.setter
    def init_noise_sigma(self, value: Any) -> None:  # diffusers' __init__ assigns 1.0: ours is computed
        pass

    def set_timesteps(self, *args: Any, **kwargs: Any) -> None:
        super().set_timesteps(*args, **kwargs)  # type: ignore[misc]
        self._brownian = None

    def step(
        self,
        model_output: Any,
        timestep: Any,
        sample: Any,
        generator: Any = None,
        variance_noise: Any = None,
        return_dict: bool = True,
    ) -> Any:
        """Diffusers' step; an SDE step's noise comes from A1111's seeded Brownian tree, not the generator."""
        if variance_noise is None and self.config.algorithm_type == "sde-dpmsolver++" and _seeds(generator):
            if self.step_index is None:
                self._init_step_index(timestep)  # type: ignore[attr-defined]
            variance_noise = self._tree_noise(sample, generator)
        return super().step(model_output, timestep, sample, generator, variance_noise, return_dict)  # type: ignore[misc]

    def _tree_noise(self, sample: Any, generator: Any) -> Any:
        import torch

        sigma, sigma_next = self.sigmas[self.step_index], self.sigmas[self.step_index + 1]
        if sigma_next == 0:  # the last step adds no noise (and the tree ends at sigma_min)
            return torch.zeros_like(sample)
        if self._brownian is None:
            self._brownian = _brownian_sampler(sample, self.sigmas, _seeds(generator))
        return self._brownian(sigma, sigma_next).to(sample)


class _SeededBrownian:
    """DPM++ SDE with A1111's Brownian tree: one tree per image, seeded by its seed (not a random seed)."""

    sigmas: Any
    noise_sampler: Any

    def step(
        self,
        model_output: Any,
        timestep: Any,
        sample: Any,
        return_dict: bool = True,
        s_noise: float = 1.0,
        generator: Any = None,
    ) -> Any:
        """Diffusers' step; `generator` (the pipeline passes the images' own) only seeds the tree."""
        if self.noise_sampler is None and _seeds(generator):
            self.noise_sampler = _brownian_sampler(sample, self.sigmas, _seeds(generator))
        return super().step(model_output, timestep, sample, return_dict, s_noise)  # type: ignore[misc]


def _seeds(generator: Any) -> list[int]:
    """The images' seeds, read from their generators (one per image, as the engine passes them)."""
    generators = generator if isinstance(generator, list | tuple) else [generator] if generator is not None else []
    return [int(g.initial_seed()) for g in generators]


def _brownian_sampler(sample: Any, sigmas: Any, seeds: list[int]) -> Any:
    """A1111's ``create_noise_sampler``: a Brownian tree over [sigma_min, sigma_max], one per image's seed."""
    from diffusers.schedulers.scheduling_dpmsolver_sde import BrownianTreeNoiseSampler

    positive = sigmas[sigmas > 0]
    seed: Any = seeds if len(seeds) == sample.shape[0] else seeds[0]
    return BrownianTreeNoiseSampler(sample, positive.min(), positive.max(), seed)
