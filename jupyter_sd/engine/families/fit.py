"""A request made to fit the loaded family: its defaults where the user kept ours, what it lacks refused in one line.

Called by the engine once the model is loaded (the family is known only then), before anything is painted.
"""

from __future__ import annotations

import re
from typing import Any

from .base import Family

_A1111_SYNTAX = re.compile(r"[()\[\]]|\bAND\b|\bBREAK\b")
"""Emphasis, prompt editing and alternation, ``AND``, ``BREAK``: what the plain-text families do not apply."""


def fit_request(family: Family, pipe: Any, request: Any) -> tuple[Any, list[str]]:
    """Return the request as `family` paints it and one line per change.

    The family's defaults (sampler, steps, CFG …) fill the options the user did not set (`PaintRequest.given`);
    the size is rounded down to what its latents allow (Flux's 2×2 patches: a multiple of 16 px).

    Raises
    ------
    ValueError
        For a feature the family lacks (hires fix, LoRA, img2img …) or a sampler it cannot run, in one line.
    """
    _refuse_what_it_lacks(family, request)
    wanted = family.defaults_for(pipe)
    changes = {name: value for name, value in wanted.items() if name not in request.given}
    notes = []
    patch = max(family.patch, 2 if family.packed_latents else 1)
    multiple = int(getattr(pipe, "vae_scale_factor", family.vae_scale)) * patch
    if request.width is not None and (request.width % multiple or request.height % multiple):
        width, height = (
            max(multiple, request.width // multiple * multiple),
            max(multiple, request.height // multiple * multiple),
        )
        changes.update(width=width, height=height)
        notes.append(
            f"size: {request.width}x{request.height} painted at {width}x{height} "
            f"({family.name} paints multiples of {multiple} px)"
        )
    request = request.replace(**changes) if changes else request
    request, refitted = family.refit(pipe, request)
    notes += refitted
    _refuse_too_large(family, pipe, request)
    for option, allowed in (("sampler", family.samplers), ("schedule", family.schedules)):
        value = getattr(request, option)
        if allowed and value not in allowed:
            msg = f"{option}: '{value}' cannot paint {family.name} models yet (allowed: {', '.join(allowed)})"
            raise ValueError(msg)
    texts = (request.prompt, request.negative_prompt)
    if "prompt syntax" in family.lacks and any(_A1111_SYNTAX.search(text or "") for text in texts):
        notes.append(
            family.prompt_note
            or f"prompt: {family.name} reads the prompt as plain text for now "
            "(A1111 emphasis, editing, alternation, AND and BREAK are not applied)"
        )
    if "prompt syntax" not in family.lacks:
        from .prompt_embeds import prompt_notes

        notes += prompt_notes(family.name, pipe, request)
    return request, notes


def _refuse_what_it_lacks(family: Family, request: Any) -> None:
    if getattr(request, "shift", 0.0) and not family.flow:
        msg = f"shift: --shift is for flow-matching models (Flux, SD3); {family.name} models have no shift"
        raise ValueError(msg)
    if request.init:
        family.pipeline_class(request.mode)
    if request.hires_enabled:
        family.refuse("hires", " fix")
    if request.refiner:
        family.refuse("refiner")
    if request.vae:
        family.refuse("vae", " (an external VAE)")
    if "<lora:" in f"{request.prompt} {request.negative_prompt} {request.hires_prompt or ''}".lower():
        family.refuse("lora")


def _refuse_too_large(family: Family, pipe: Any, request: Any) -> None:
    """SD3's position embeddings stop at ``pos_embed_max_size`` patches a side: refuse more, in one line."""
    config = getattr(getattr(pipe, "transformer", None), "config", None)
    patches = getattr(config, "pos_embed_max_size", None)
    if not patches or request.width is None:
        return
    largest = int(patches) * int(config.patch_size) * int(getattr(pipe, "vae_scale_factor", family.vae_scale))
    if max(request.width, request.height) > largest:
        msg = f"size: {family.name} paints at most {largest} px a side (got {request.width}x{request.height})"
        raise ValueError(msg)
    to_x, to_y = request.hires_target()[:2] if request.hires_enabled else (0, 0)
    if max(to_x, to_y) > largest:
        msg = f"hires: {family.name} paints at most {largest} px a side (the hires pass would paint {to_x}x{to_y})"
        raise ValueError(msg)
