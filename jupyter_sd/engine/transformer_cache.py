"""diffusers' own step caches on transformer families: first-block cache, TaylorSeer and MagCache.

Each is a diffusers hook (``FirstBlockCacheConfig``, ``TaylorSeerCacheConfig``, ``MagCacheConfig``) installed for
one pipeline call (the transformer's ``enable_cache``, or diffusers' ``apply_*`` where the model lacks that mixin:
SD3, Z-Image) and taken off after it, so the resident pipeline paints uncached again at once. The hooks keep their
state per cache context. Flux, Qwen-Image and Flux.2 pipelines open ``cache_context("cond"/"uncond")`` around
each transformer call themselves; for the others (SD3, Chroma, Z-Image) a hook of ours on the transformer opens one
per call, named by which call of its step it is (``cond`` for the first, ``uncond`` for the second): SD3 and
Z-Image batch both CFG halves in one call (one context), Chroma calls twice per step (two), as diffusers' own
pipelines name them.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import re
from collections.abc import Iterator
from typing import Any

MODES = ("fbcache", "taylorseer", "magcache")
"""The ``--cache`` modes that are diffusers' transformer caches."""

TAYLORSEER_WARMUP = 3
"""Steps TaylorSeer runs in full before its first prediction (diffusers' default): its Taylor factors need them."""

RUNS = {
    "FluxTransformer2DModel": MODES,
    "SD3Transformer2DModel": ("taylorseer",),
    "QwenImageTransformer2DModel": ("fbcache", "taylorseer"),
    "ChromaTransformer2DModel": ("taylorseer",),
    "ZImageTransformer2DModel": ("taylorseer",),
    "Flux2Transformer2DModel": ("taylorseer",),
}
"""Transformer class → the modes diffusers' hooks run on it (tests/engine/test_family_caches.py paints each).

TaylorSeer needs only whole blocks to hook. The first-block cache reads the first and last block through diffusers'
``TransformerBlockRegistry`` and takes the last block's output minus the first's as the residual it reuses: that
fails where the last block returns another layout (SD3's last block returns no text stream; Flux.2's and Chroma's
single-stream blocks return text and image tokens in one; Chroma's blocks are not registered) or where the block's
input is not called ``hidden_states`` (Z-Image). MagCache needs the model's per-step magnitude ratios, which
diffusers publishes for Flux.1 only (`MAG_RATIOS`)."""

MAG_RATIOS = {"FluxTransformer2DModel": "FLUX_MAG_RATIOS"}
"""Transformer class → the name of its published magnitude ratios in ``diffusers.hooks.mag_cache``."""


def blocks(transformer: Any) -> list[str]:
    """The blocks TaylorSeer predicts (``transformer_blocks.0`` …): those of the lists diffusers' caches walk.

    A block that returns no text stream (SD3's last, ``context_pre_only``) is left to run: TaylorSeer's state takes
    tensors only. It is one block of 24 on SD3 Medium.
    """
    import torch
    from diffusers.hooks._common import _ALL_TRANSFORMER_BLOCK_IDENTIFIERS

    return [
        f"{name}.{index}"
        for name, child in transformer.named_children()
        if name in _ALL_TRANSFORMER_BLOCK_IDENTIFIERS and isinstance(child, torch.nn.ModuleList)
        for index, block in enumerate(child)
        if not getattr(block, "context_pre_only", False)
    ]


def modes(pipe: Any) -> tuple[str, ...]:
    """The transformer cache modes that run on `pipe` (none on UNet models and unknown transformers)."""
    transformer = getattr(pipe, "transformer", None)
    if transformer is None:
        return ()
    return RUNS.get(type(transformer).__name__, ())


def refusal(pipe: Any, name: str, kind: str) -> str | None:
    """Why mode `name` cannot run on `pipe` (one line naming what can), or None when it can."""
    allowed = modes(pipe)
    if name in allowed:
        return None
    if not allowed:
        families = "Flux, SD3, Chroma, Z-Image, Qwen-Image, Flux.2"
        return f"cache: {name} needs a transformer model whose pipeline diffusers caches ({families}); this is a {kind}"
    if name == "magcache":
        return f"cache: magcache needs magnitude ratios diffusers publishes for Flux.1 only; use {' or '.join(allowed)}"
    return f"cache: {name} cannot walk {kind}'s blocks (diffusers' hook); use {' or '.join(allowed)}"


def opens_contexts(pipe: Any) -> bool:
    """Whether the pipeline's ``__call__`` opens the transformer's cache contexts itself (Flux, Qwen-Image, Flux.2)."""
    return _opens_contexts(type(pipe))


@functools.cache
def _opens_contexts(pipeline_class: type) -> bool:
    try:
        return "cache_context" in inspect.getsource(pipeline_class.__call__)
    except (OSError, TypeError):
        return False


def config(pipe: Any, name: str, number: float, steps: int | None) -> Any:
    """The diffusers config of mode `name` with its number, for a pass of `steps` model evaluations.

    ``taylorseer:N`` runs the whole transformer on every N-th step after its warm-up and predicts each block's output
    in between (first-order Taylor; diffusers' defaults otherwise; whole blocks rather than diffusers' default of the
    attention modules, which leaves the feed-forward layers running: 1.25–1.43× at taylorseer 2–4 against 1.7–2.6×
    for whole blocks, Flux-shaped model); ``magcache:T`` skips the blocks while the accumulated magnitude error stays
    under T, by the model's published magnitude ratios (`MAG_RATIOS`: not calibrated per checkpoint).
    """
    from diffusers.hooks import FirstBlockCacheConfig, MagCacheConfig, TaylorSeerCacheConfig

    if name == "fbcache":
        return FirstBlockCacheConfig(threshold=float(number))
    if name == "taylorseer":
        dtype = next(pipe.transformer.parameters()).dtype
        return TaylorSeerCacheConfig(
            cache_interval=int(number),
            disable_cache_before_step=TAYLORSEER_WARMUP,
            taylor_factors_dtype=dtype,
            cache_identifiers=[re.escape(name) for name in blocks(pipe.transformer)],
        )
    from diffusers.hooks import mag_cache

    ratios = getattr(mag_cache, MAG_RATIOS[type(pipe.transformer).__name__])
    count = int(steps or getattr(pipe, "num_timesteps", 0) or len(ratios))
    return MagCacheConfig(threshold=float(number), num_inference_steps=count, mag_ratios=ratios.clone())


@contextlib.contextmanager
def applied(pipe: Any, name: str, number: float, steps: int | None = None) -> Iterator[None]:
    """Mode `name` on ``pipe.transformer`` for one call; every hook off afterwards (even when it fails or stops)."""
    transformer = pipe.transformer
    cache = config(pipe, name, number, steps)
    with contextlib.ExitStack() as stack:
        if hasattr(transformer, "enable_cache"):
            transformer.enable_cache(cache)
            stack.callback(transformer.disable_cache)
        else:
            stack.enter_context(_hooks_removed_after(transformer))
            _apply(transformer, cache)
        if not opens_contexts(pipe):
            stack.enter_context(_contexts_per_call(transformer, pipe.scheduler))
        yield


def _apply(transformer: Any, cache: Any) -> None:
    """Install `cache` with diffusers' ``apply_*`` on a transformer without ``enable_cache`` (what it would do)."""
    from diffusers import hooks

    apply = {
        hooks.FirstBlockCacheConfig: hooks.apply_first_block_cache,
        hooks.TaylorSeerCacheConfig: hooks.apply_taylorseer_cache,
        hooks.MagCacheConfig: hooks.apply_mag_cache,
    }[type(cache)]
    apply(transformer, cache)
    hooks.HookRegistry.check_if_exists_or_initialize(transformer).invalidate_child_registries_cache()


def _hook_names(module: Any) -> set[tuple[str, str]]:
    """(submodule, hook name) of every diffusers hook under `module`."""
    return {
        (path, hook)
        for path, child in module.named_modules()
        for hook in getattr(getattr(child, "_diffusers_hook", None), "hooks", {})
    }


@contextlib.contextmanager
def _hooks_removed_after(transformer: Any) -> Iterator[None]:
    """Remove, on the way out, every diffusers hook that appeared under `transformer` inside the block."""
    from diffusers.hooks import HookRegistry

    before = _hook_names(transformer)
    try:
        yield
    finally:
        for path, hook in sorted(_hook_names(transformer) - before):
            HookRegistry.check_if_exists_or_initialize(transformer.get_submodule(path)).remove_hook(hook, recurse=False)
        HookRegistry.check_if_exists_or_initialize(transformer).invalidate_child_registries_cache()


CONTEXT_HOOK = "jupyter_sd_cache_context"
"""The name of our hook that opens a cache context around each transformer call."""


@contextlib.contextmanager
def _contexts_per_call(transformer: Any, scheduler: Any) -> Iterator[None]:
    """Open a cache context around each transformer call: ``cond`` for a step's first, ``uncond`` for its second.

    A step ends at ``scheduler.step``; a call of another batch size gets a context of its own (its cached tensors
    could not serve the other's).
    """
    from diffusers.hooks import HookRegistry, ModelHook
    from diffusers.hooks.hooks import CacheContext, _set_cache_context

    calls = [0]
    original_step = scheduler.__dict__.get("step")
    step = scheduler.step

    @functools.wraps(step)
    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] = 0
        return step(*args, **kwargs)

    class OpenContext(ModelHook):
        def new_forward(self, module: Any, *args: Any, **kwargs: Any) -> Any:
            half = ("cond", "uncond")[calls[0]] if calls[0] < 2 else f"call {calls[0]}"
            calls[0] += 1
            _set_cache_context(module, CacheContext(f"{half} ×{_batch(args, kwargs)}"))
            try:
                return self.fn_ref.original_forward(*args, **kwargs)
            finally:
                _set_cache_context(module, None)

    registry = HookRegistry.check_if_exists_or_initialize(transformer)
    registry.register_hook(OpenContext(), CONTEXT_HOOK)
    scheduler.step = counted
    try:
        yield
    finally:
        registry.remove_hook(CONTEXT_HOOK, recurse=False)
        if original_step is None:
            scheduler.__dict__.pop("step", None)
        else:
            scheduler.step = original_step


def _batch(args: tuple, kwargs: dict) -> int:
    """The batch size of a transformer call (Z-Image takes a list of latents, the others a tensor)."""
    hidden = args[0] if args else kwargs.get("hidden_states", kwargs.get("x"))
    return len(hidden) if isinstance(hidden, (list, tuple)) else int(hidden.shape[0])
