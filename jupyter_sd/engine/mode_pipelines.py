"""The pipeline of each mode over the loaded components, and what a pass's call needs to know of it.

img2img and inpaint pipelines are made from the loaded one with diffusers' ``from_pipe`` (AutoPipelineForImage2Image
/ AutoPipelineForInpainting, a family's declared classes, or a ControlNet pipeline of the mode): they share its
modules, so switching modes loads nothing and takes no memory, and the engine's cache key stays the txt2img one.
"""

from __future__ import annotations

import inspect
from typing import Any

from .control.flow_units import controlnet_pipeline
from .control.union import is_union_model, union_pipeline
from .families import family_of
from .families.flow import takes_latents

__all__ = ["derived_pipeline", "execution_device", "sized"]


def derived_pipeline(pipe: Any, kind: str, controlnet: Any = None) -> Any:
    """The `kind` pipeline over `pipe`'s modules (``from_pipe``), made once and kept on `pipe`.

    With `controlnet` (a ``ControlNetModel``, a Multi model) it is the ControlNet pipeline of that mode, given them.
    """
    if kind == "txt2img" and controlnet is None:
        return pipe
    union = controlnet is not None and is_union_model(controlnet)
    flow = controlnet is not None and controlnet_pipeline(pipe, kind, controlnet)  # transformer families' (or None)
    key = kind if controlnet is None else f"{kind}+{'union' if union else getattr(flow, '__name__', 'controlnet')}"
    cache = pipe.__dict__.setdefault("_jupyter_sd_modes", {})
    if key not in cache:
        import diffusers

        family = family_of(pipe)
        own = controlnet is None and type(pipe).__name__ == family.pipelines.get("txt2img")
        declared = family.pipelines.get(kind) if own else None
        auto = {
            "txt2img": diffusers.AutoPipelineForText2Image,
            "img2img": diffusers.AutoPipelineForImage2Image,
            "inpaint": diffusers.AutoPipelineForInpainting,
        }[kind]
        if declared:
            derived = family.pipeline_type(declared).from_pipe(pipe)
        elif union or flow:  # diffusers' auto pipelines pick neither from a pipeline (control/union.py, flow_init.py)
            derived = union_pipeline(pipe, kind, controlnet) if union else flow.from_pipe(pipe, controlnet=controlnet)
        else:
            derived = auto.from_pipe(pipe, **({} if controlnet is None else {"controlnet": controlnet}))
        derived.set_progress_bar_config(disable=True)
        takes_latents(derived)
        cache[key] = derived
    derived = cache[key]
    if controlnet is not None and derived.controlnet is not controlnet:
        derived.controlnet = controlnet
    for name, module in pipe.components.items():  # a VAE swapped in since (--vae) must reach every mode
        if name != "scheduler" and name in derived.components and derived.components[name] is not module:
            setattr(derived, name, module)
    return derived


def execution_device(pipe: Any) -> Any:
    """The device the pipeline computes on (the GPU even while offloading keeps the weights elsewhere)."""
    device = getattr(pipe, "_execution_device", None)
    return device if device is not None else pipe.device


def sized(pipe: Any, call: dict[str, Any], size: tuple[int, int]) -> dict[str, Any]:
    """`call` with the size painted, for pipelines whose img2img takes one.

    The flow families' take it: without it their default (1024 px) would resize the init.
    """
    if "height" in inspect.signature(type(pipe).__call__).parameters:
        return {**call, "width": size[0], "height": size[1]}
    return call
