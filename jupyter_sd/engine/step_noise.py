"""The step noise of ancestral samplers (Euler a, DPM2 a, DDPM, LCM, TCD …) from a request's own random source.

diffusers' schedulers draw it inside ``step`` with ``randn_tensor(..., generator=...)``, imported into each
scheduler's module, and a ``torch.Generator`` cannot be faked (torch checks its type). So while our wrapped
``step`` runs, the name ``randn_tensor`` in the module that defines that ``step`` is bound to a function that
returns the next draw of each image's `NoiseSource` (seeds.py), as A1111's ``ImageRNG.next()`` does; the original
is put back when ``step`` returns. The wrapper keeps ``functools.wraps``: the pipeline inspects ``step``'s signature
to decide whether to pass ``generator``, and the other wrappers (x0 capture) compose with it.

Painting runs one request at a time, so rebinding a module's name for the length of one step is safe.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from .seeds import NoiseSource


def step_globals(scheduler: Any) -> dict[str, Any] | None:
    """The module namespace whose ``randn_tensor`` the scheduler's ``step`` calls, or None when it draws none."""
    function = inspect.unwrap(getattr(type(scheduler), "step", None) or (lambda: None))
    namespace = getattr(function, "__globals__", None)
    if namespace is None or "randn_tensor" not in namespace:
        return None
    return namespace


def draws_own_noise(scheduler: Any) -> bool:
    """SDE solvers keep their noise (a Brownian tree, or diffusers' generator for DPM++ 2M SDE) seeded by the seed."""
    algorithm = str(getattr(scheduler.config, "algorithm_type", "") or "")
    return algorithm.startswith("sde-") or type(scheduler).__name__ == "DPMSolverSDEScheduler"


def supply_step_noise(scheduler: Any, source: NoiseSource) -> bool:
    """Make the scheduler's step noise come from `source`; returns whether it was installed.

    Nothing changes when the source leaves the step noise to diffusers (``rng="cpu"``), for SDE solvers, and for
    schedulers whose ``step`` draws no noise.
    """
    namespace = step_globals(scheduler)
    if not source.supplies_steps or namespace is None or draws_own_noise(scheduler):
        return False
    original = scheduler.step

    @functools.wraps(original)
    def step(*args: Any, **kwargs: Any) -> Any:
        drawn = namespace["randn_tensor"]
        namespace["randn_tensor"] = _from_source(source, drawn)
        try:
            return original(*args, **kwargs)
        finally:
            namespace["randn_tensor"] = drawn

    scheduler.step = step
    return True


def _from_source(source: NoiseSource, fallback: Any) -> Any:
    """A ``randn_tensor`` stand-in: one draw per image from `source`; other batch sizes go to diffusers' own."""

    def randn_tensor(
        shape: Any, generator: Any = None, device: Any = None, dtype: Any = None, layout: Any = None
    ) -> Any:
        shape = tuple(shape)
        if not shape or shape[0] != len(source.generators):
            return fallback(shape, generator=generator, device=device, dtype=dtype, layout=layout)
        return source.next(shape[1:]).to(device=device or "cpu", dtype=dtype)

    return randn_tensor
