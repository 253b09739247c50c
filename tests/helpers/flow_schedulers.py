"""diffusers' flow schedulers set up by hand, as a user would put them into a flow pipeline (test references)."""

from __future__ import annotations

import inspect

import numpy as np


def as_the_class_takes_it(scheduler, dynamic):
    """`scheduler` called with what of the pipeline's ``set_timesteps`` arguments its class takes.

    Chroma's, Z-Image's and Qwen-Image's pipelines always hand their own ``sigmas`` (1 → 1/n, the flow Euler's
    unshifted levels) and ``mu`` (Z-Image's whatever its static shift): diffusers' DPM solver takes no ``sigmas`` and
    asserts on a ``mu`` without dynamic shifting, so a user putting it in by hand drops what it cannot take.
    """
    own = scheduler.set_timesteps
    takes = inspect.signature(own).parameters

    def set_timesteps(num_inference_steps=None, device=None, sigmas=None, mu=None):
        sigmas = np.array(sigmas) if isinstance(sigmas, list) else sigmas  # (Z-Image's list: UniPC cannot shift it)
        kwargs = {"sigmas": sigmas} if "sigmas" in takes and sigmas is not None else {}
        if "mu" in takes and dynamic:
            kwargs["mu"] = mu
        return own(None if "sigmas" in kwargs else num_inference_steps or len(sigmas), device, **kwargs)

    scheduler.set_timesteps = set_timesteps
    return scheduler
