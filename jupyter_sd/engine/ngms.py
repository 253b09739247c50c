"""When A1111's CFG denoiser skips the negative half: NGMS late in the run, Skip Early CFG early in it.

A1111's CFG denoiser counts its calls (one per model evaluation, from 0). With Negative Guidance minimum sigma
(NGMS, its ``s_min_uncond``), on odd calls whose noise level is below the setting (on every such call with "all
steps") it runs only the positive half and uses that prediction alone — the negative prediction is replaced by the
positive one, so CFG gives the positive back. Late steps change the picture little, and each skipped half saves one
of two UNet batches. Skip Early CFG (its ``skip_early_cond``, as Forge has it too) does the same on every call
while ``call / total calls`` is at most the setting; it wins over NGMS on a call both would skip.
"""

from __future__ import annotations

from typing import Any


def skips_negative(call: int, sigma: float, minimum: float, all_steps: bool) -> bool:
    """Whether A1111 skips the negative half on denoiser call `call` (from 0) at noise level `sigma`."""
    return minimum > 0 and (call % 2 == 1 or all_steps) and sigma < minimum


def skips_early(call: int, total: int, fraction: float) -> bool:
    """Whether A1111's Skip Early CFG skips the negative half on call `call` (from 0) of `total` calls."""
    return fraction > 0 and total > 0 and call / total <= fraction


def sigma_of(scheduler: Any, timestep: Any) -> float:
    """The noise level σ a (possibly fractional) UNet timestep stands for, from the scheduler's training schedule.

    σ(t) = √((1 − ᾱ_t) / ᾱ_t) at the training timesteps, and between them interpolated in log σ, as k-diffusion's
    ``t_to_sigma`` does (A1111's denoiser is given that σ).
    """
    import math

    import torch

    alphas = scheduler.alphas_cumprod
    t = float(timestep.flatten()[0]) if torch.is_tensor(timestep) else float(timestep)
    t = min(max(t, 0.0), len(alphas) - 1.0)
    low = int(t)
    high = min(low + 1, len(alphas) - 1)
    logs = [0.5 * math.log((1 - float(alphas[i])) / float(alphas[i])) for i in (low, high)]
    return math.exp(logs[0] + (logs[1] - logs[0]) * (t - low))
