"""The passes a request takes and how many steps each runs, by A1111's arithmetic (no torch).

Computed once per request by the engine and handed to the `PassRunner`, which labels progress by it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..recipe.request import SAME_SAMPLER, SAME_SCHEDULE, PaintRequest


@dataclass
class Pass:
    """One denoising pass of a request: its label for the progress line and the steps it runs."""

    label: str
    steps: int


def hires_steps(request: PaintRequest) -> tuple[int, float]:
    """A1111's hires schedule: ``int(steps / min(denoise, 0.999))`` steps scheduled, the last `steps` run.

    Returns the scheduled step count and the diffusers strength that runs exactly the hires steps (A1111's
    ``t_enc + 1``; ``strength = denoise`` alone would run one fewer whenever ``int(N·denoise)`` rounds down).
    """
    run = request.hires_steps or request.steps
    scheduled = int(run / min(request.hires_denoise, 0.999))
    return scheduled, min(1.0, (run + 0.5) / scheduled)


def img2img_steps(request: PaintRequest) -> tuple[int, float]:
    """A1111's img2img schedule: ``t_enc = int(min(strength, 0.999) · steps)``, and ``t_enc + 1`` steps run.

    They run the tail of the ``steps``-step schedule, from noise level ``steps - t_enc - 1`` on. Returns the steps
    run and the diffusers strength that runs exactly those: ``strength`` alone runs ``int(steps · strength)``, one
    fewer, from one level lower (diffusers' own img2img).
    """
    run = min(request.steps, int(min(request.strength, 0.999) * request.steps) + 1)
    return run, 1.0 if run >= request.steps else (run + 0.5) / request.steps


def hires_sampler(request: PaintRequest) -> tuple[str, str]:
    """The hires pass's sampler and schedule type (A1111's "Use same sampler" / "Use same scheduler")."""
    sampler = request.sampler if request.hires_sampler == SAME_SAMPLER else request.hires_sampler
    return sampler, request.schedule if request.hires_schedule == SAME_SCHEDULE else request.hires_schedule


def pass_plan(request: PaintRequest) -> list[Pass]:
    """The passes a (resolved) request takes, in order."""
    if request.init:
        return [Pass(request.mode, img2img_steps(request)[0])]
    plan = [Pass("txt2img", request.steps)]
    if request.hires_enabled:
        plan.append(Pass("hires", request.hires_steps or request.steps))
    return plan
