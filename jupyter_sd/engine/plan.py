"""The passes a request takes and how many steps each runs, by A1111's arithmetic (no torch).

Computed once per request by the engine and handed to the `PassRunner`, which labels progress by it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..recipe.request import SAME_SAMPLER, SAME_SCHEDULE, PaintRequest
from ..recipe.samplers import runs_as


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


def pipeline_strength(strength: float, steps: int, flow: bool) -> float:
    """The strength of `img2img_steps` / `hires_steps` as a flow-matching pipeline (Flux, SD3 …) takes it.

    Those keep ``N − int(N − N·s)`` steps, rounding up where the UNet pipelines' ``int(N·s)`` rounds down: the
    ``(run + 0.5) / N`` that runs ``run`` steps there runs one more here, and ``(run − 0.5) / N`` runs ``run``.
    """
    if not flow or strength >= 1.0:
        return strength
    return (round(strength * steps - 0.5) - 0.5) / steps


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


def what_runs(request: PaintRequest) -> tuple[PaintRequest, list[str]]:
    """The request as it really paints, and one line for each thing that changed from what was asked.

    A size that is not a multiple of 8 paints rounded down, as A1111 paints it (the latents are 1/8 of the
    picture); A1111 names diffusers has no scheduler for (``DPM fast``, ``Restart``, ``Polyexponential`` …)
    become the closest we run. The picture's infotext then names what ran.
    """
    notes = []
    changes: dict = {}
    if request.width is not None and (request.width % 8 or request.height % 8):
        changes["width"], changes["height"] = max(8, request.width // 8 * 8), max(8, request.height // 8 * 8)
        notes.append(
            f"size: {request.width}x{request.height} painted at {changes['width']}x{changes['height']} "
            "(a multiple of 8, as A1111 paints it)"
        )
    sampler, schedule, note = runs_as(request.sampler, request.schedule)
    changes.update(sampler=sampler, schedule=schedule)
    hires = runs_as(*hires_sampler(request))
    if request.hires_sampler != SAME_SAMPLER:
        changes["hires_sampler"] = hires[0]
    if request.hires_schedule != SAME_SCHEDULE:
        changes["hires_schedule"] = hires[1]
    if not note and request.hires_enabled and hires[2]:
        note = f"hires {hires[2]}"
    notes += [note] if note else []
    changed = {name: value for name, value in changes.items() if getattr(request, name) != value}
    return (request.replace(**changed) if changed else request), notes  # what stayed is not marked as given
