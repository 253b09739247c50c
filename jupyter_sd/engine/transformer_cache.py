"""diffusers' own step caches on transformer families (Flux): first-block cache, TaylorSeer and MagCache.

Each is a diffusers hook (``FirstBlockCacheConfig``, ``TaylorSeerCacheConfig``, ``MagCacheConfig``) that the
transformer's ``enable_cache`` installs; we install it for one pipeline call and ``disable_cache`` takes it off
after, so the resident pipeline paints uncached again at once. The hooks keep their state per cache context
(``cond``/``uncond``), which only pipelines that open those contexts give them: elsewhere (SD3) they are refused.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from typing import Any

MODES = ("fbcache", "taylorseer", "magcache")
"""The ``--cache`` modes that are diffusers' transformer caches."""

TAYLORSEER_WARMUP = 3
"""Steps TaylorSeer runs in full before its first prediction (diffusers' default): its Taylor factors need them."""

TAYLORSEER_BLOCKS = [r"transformer_blocks\.\d+", r"single_transformer_blocks\.\d+"]
"""What TaylorSeer predicts: each whole block's output (diffusers' default, the attention modules alone, leaves the
feed-forward layers running: 1.25–1.43× at taylorseer 2–4 against 1.7–2.6× for whole blocks, Flux-shaped model,
benchmarks/bench_speed.py)."""


def fits(pipe: Any) -> bool:
    """Whether diffusers' transformer caches run here: a model with ``enable_cache`` called in cache contexts."""
    transformer = getattr(pipe, "transformer", None)
    if transformer is None or not hasattr(transformer, "enable_cache"):
        return False
    try:
        return "cache_context" in inspect.getsource(type(pipe).__call__)
    except (OSError, TypeError):
        return False


def config(pipe: Any, name: str, number: float, steps: int | None) -> Any:
    """The diffusers config of mode `name` with its number, for a pass of `steps` model evaluations.

    ``taylorseer:N`` runs the whole transformer on every N-th step after its warm-up and predicts each block's output
    in between (first-order Taylor; diffusers' defaults otherwise); ``magcache:T`` skips the blocks while the
    accumulated magnitude error stays under T, by the published Flux.1 magnitude ratios (diffusers'
    ``FLUX_MAG_RATIOS``, fitted to Flux.1-dev/schnell: not calibrated per checkpoint).
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
            cache_identifiers=TAYLORSEER_BLOCKS,
        )
    from diffusers.hooks.mag_cache import FLUX_MAG_RATIOS

    count = int(steps or getattr(pipe, "num_timesteps", 0) or len(FLUX_MAG_RATIOS))
    return MagCacheConfig(threshold=float(number), num_inference_steps=count, mag_ratios=FLUX_MAG_RATIOS.clone())


@contextlib.contextmanager
def applied(pipe: Any, name: str, number: float, steps: int | None = None) -> Iterator[None]:
    """Mode `name` on ``pipe.transformer`` for one call; disabled afterwards (even when the call fails or stops)."""
    pipe.transformer.enable_cache(config(pipe, name, number, steps))
    try:
        yield
    finally:
        pipe.transformer.disable_cache()
