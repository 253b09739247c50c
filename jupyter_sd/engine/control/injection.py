"""sd-webui-controlnet's control modes, as a forward hook on each ControlNet's outputs (weights.py's arithmetic).

Balanced is diffusers' own conditioning scale (the unit's weight times every residual). For the other two modes
diffusers is given a scale of 1 (0 outside the guidance window) and the hook applies soft injection (residual i times
``weight × 0.825^(12−i)``) and, for "ControlNet is more important", the negative prompt's half of the batch without
control. A unit's effective region mask then multiplies every residual (region_masks.py), as the extension applies it
after the scales. A hook is installed once per model and reads the units of the current call; the same model in two
units takes their settings in turn, as ``MultiControlNetModel`` calls its nets in order.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from .region_masks import masked_image_rows, masked_residual, masked_tokens
from .weights import SOFT_BASE, conditional_only, residual_scales


@dataclass(frozen=True)
class Injection:
    """How one unit's residuals are reshaped after diffusers scaled them (by `scale`)."""

    scale: float
    """The conditioning scale diffusers is given: the weight (Balanced), or 1 (the hook applies the weight)."""
    ratios: tuple[float, ...] | None
    """Soft injection's ``weight × 0.825^(12−i)`` or the unit's per-block weights, one per residual (None: Balanced,
    as diffusers scaled it)."""
    cond_only: bool
    pipe: Any = None
    """The pipeline of the call, whose ``do_classifier_free_guidance`` says whether the batch has a negative half."""
    mask: Any = None
    """The unit's effective region mask, (1, 1, h, w) in 0..1 (region_masks.py), or None: control everywhere."""
    size: tuple[int, int] | None = None
    """A transformer ControlNet's picture (width, height): its residuals are tokens (None: a UNet ControlNet's)."""

    @property
    def reshapes(self) -> bool:
        """Whether the hook changes the residuals diffusers scaled."""
        return self.ratios is not None or self.cond_only or self.mask is not None


def injection_for(unit: Any, count: int, pipe: Any, hires: bool = False, mask: Any = None) -> Injection:
    """The `unit`'s injection for a ControlNet with `count` residuals, in the call of `pipe` (`mask`: its region).

    Per-block weights (``advanced_weighting``) are applied by the hook, as soft injection's scales are.
    """
    advanced = getattr(unit, "advanced_weighting", None)
    scales = residual_scales(unit.weight, unit.control_mode, count, hires=hires, module=unit.module, advanced=advanced)
    soft = len(set(scales)) > 1 or advanced is not None
    scale = 1.0 if soft else float(unit.weight)
    return Injection(scale, tuple(scales) if soft else None, conditional_only(unit.control_mode), pipe, mask)


def residual_count(model: Any) -> int:
    """How many residuals a ControlNet returns: one per down-block output, then the middle block's."""
    return len(model.controlnet_down_blocks) + 1


_HOOK = "_jupyter_sd_injection"
"""The attribute holding a ControlNet's hook (union.py reads it by this name too)."""


class _Hook:
    """The forward hook of one ControlNet: the injections of the current call, taken in turn."""

    def __init__(self) -> None:
        self.injections: list[Injection] = []
        self.calls = 0
        self.negative_rows: int | None = None
        """A replayed call's negative rows (replay.py: AND); None: the pipeline's call, whose first half under CFG."""

    def __call__(self, module: Any, args: tuple, kwargs: dict, output: Any) -> Any:
        if not self.injections:
            return output
        injection = self.injections[self.calls % len(self.injections)]
        self.calls += 1
        if not injection.reshapes:
            return output
        if injection.size is not None:
            return _masked_token_output(output, injection.mask, injection.size, (args, kwargs))
        tuple_output = isinstance(output, tuple)
        if tuple_output:
            down, mid = output[0], output[1]
        else:
            down, mid = output.down_block_res_samples, output.mid_block_res_sample
        residuals = [*down, mid]
        if injection.ratios is not None:
            residuals = [r * ratio for r, ratio in zip(residuals, injection.ratios)]
        negative = self.negative_rows
        if negative is None and bool(getattr(injection.pipe, "do_classifier_free_guidance", False)):
            negative = residuals[0].shape[0] // 2  # diffusers batches [negative, positive]
        if injection.cond_only and negative:
            residuals = [_zero_first(r, negative) for r in residuals]
        if injection.mask is not None:
            residuals = [masked_residual(r, injection.mask) for r in residuals]
        down, mid = tuple(residuals[:-1]), residuals[-1]
        if tuple_output:
            return (down, mid)
        return type(output)(down_block_res_samples=down, mid_block_res_sample=mid)


def _masked_token_output(output: Any, mask: Any, size: tuple[int, int], call: tuple[tuple, dict]) -> Any:
    """A Flux/SD3/Qwen-Image/Z-Image ControlNet's output, masked (`call`: the args and kwargs it was called with).

    Its residuals come in tuples and lists (Flux's pair of lists, SD3's one-list tuple, Qwen-Image's bare list), in
    its output class, or keyed by the layer they join (Z-Image's: image then caption tokens, the image's grid read
    from the latents it was given).
    """
    if isinstance(output, dict) and not hasattr(output, "to_tuple"):
        grid = _image_grid(*call)
        return {layer: masked_image_rows(value, mask, grid) for layer, value in output.items()}

    def masked(value: Any) -> Any:
        if value is None or hasattr(value, "shape"):
            return None if value is None else masked_tokens(value, mask, size)
        return type(value)(masked(item) for item in value)

    if isinstance(output, (tuple, list)):
        return masked(output)
    return type(output)(**{name: masked(value) for name, value in output.items()})


def _image_grid(args: tuple, kwargs: dict) -> tuple[int, int]:
    """Z-Image's image token grid (rows, cols): its latents (C, F, H, W) over the patch size it was called with.

    diffusers' ``ZImageControlNetModel.forward(x, t, cap_feats, control_context, conditioning_scale, patch_size=2)``.
    """
    latents = args[0] if args else kwargs["x"]
    patch = kwargs.get("patch_size", args[5] if len(args) > 5 else 2)
    height, width = latents[0].shape[-2:]
    return height // patch, width // patch


def _zero_first(tensor: Any, rows: int) -> Any:
    import torch

    return torch.cat([torch.zeros_like(tensor[:rows]), tensor[rows:]])


@contextmanager
def negative_rows(model: Any, rows: int) -> Iterator[None]:
    """While a replay calls `model` (one ControlNet or a Multi model's nets): its first `rows` rows are the negative's.

    "ControlNet is more important" then leaves those rows without control, whatever the batch's halves.
    """
    hooks = [net.__dict__.get(_HOOK) for net in getattr(model, "nets", [model])]
    hooks = [hook for hook in hooks if hook is not None]
    for hook in hooks:
        hook.negative_rows = rows
    try:
        yield
    finally:
        for hook in hooks:
            hook.negative_rows = None


def hooked(models: list[Any]) -> bool:
    """Whether any of `models` carries the injection hook (a former call's units may still be on it)."""
    return any(_HOOK in model.__dict__ for model in models)


def set_injections(models: list[Any], injections: list[Injection]) -> None:
    """Give each ControlNet of a call its units' injections (in the order the units use them); others none."""
    hooks: dict[int, _Hook] = {}
    for model in models:
        hook = model.__dict__.get(_HOOK)
        if hook is None:
            hook = _Hook()
            model.register_forward_hook(hook, with_kwargs=True)
            model.__dict__[_HOOK] = hook
        hooks[id(model)] = hook
        hook.injections, hook.calls = [], 0
    for model, injection in zip(models, injections):
        hooks[id(model)].injections.append(injection)


__all__ = ["SOFT_BASE", "Injection", "hooked", "injection_for", "negative_rows", "residual_count", "set_injections"]
