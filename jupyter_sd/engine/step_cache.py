"""Step caching (``--cache``): skip work a denoising step does not need, by reusing what an earlier step computed.

UNet families (SD 1.x, SD 2.x, SDXL) get DeepCache (Ma et al., 2023): neighbouring steps' deep UNet features are
nearly equal, so after the first fifth of a pass (run in full: it sets the composition) every N-th model evaluation
runs the whole UNet and keeps what its second-to-last up block puts out; the evaluations between run only the
shallowest branch (``conv_in``, the first down block, the last up block) and feed it that kept output. Diffusers
hooks (``diffusers.hooks.ModelHook``) on the UNet and its blocks do the skipping, installed for one pipeline call
and removed after it, so the resident pipeline is untouched between pictures. Transformer families get diffusers'
own caches (``fbcache``, ``taylorseer``, ``magcache``: transformer_cache.py), enabled for one call the same way;
``auto`` picks each family's measured default (`AUTO`).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

from ..recipe.step_cache import read_cache
from . import transformer_cache

HOOK_NAME = "jupyter_sd_step_cache"
"""The name every hook of ours is registered under (one `remove_hook` takes them all off)."""

AUTO = {
    "unet": "deepcache:3",
    "FluxTransformer2DModel": "taylorseer:3",
    "SD3Transformer2DModel": "taylorseer:3",
    "ChromaTransformer2DModel": "taylorseer:3",
    "ZImageTransformer2DModel": "taylorseer:3",
    "QwenImageTransformer2DModel": "taylorseer:3",
    "Flux2Transformer2DModel": "taylorseer:3",
}
"""Family kind → what ``--cache auto`` runs (measured in benchmarks/bench_speed.py and bench_family_caches.py;
docs/speed.md). A model of another kind runs uncached under ``auto``."""

TRANSFORMER_MODES = transformer_cache.MODES
"""Modes that are diffusers' own transformer caches (``enable_cache``): first-block cache, TaylorSeer, MagCache."""


def family_kind(pipe: Any) -> str:
    """``unet`` for pipelines whose denoiser is a diffusers UNet2DConditionModel, else the denoiser's class name."""
    unet = getattr(pipe, "unet", None)
    if unet is not None and hasattr(unet, "down_blocks") and hasattr(unet, "up_blocks"):
        return "unet"
    denoiser = getattr(pipe, "transformer", None) or unet
    return type(denoiser).__name__


def resolved(value: str, pipe: Any) -> str:
    """The mode that `value` runs as on `pipe` (``auto`` → the family's default, a bare mode → its number).

    Raises
    ------
    ValueError
        When the family has no such mode (one line).
    """
    name, number = read_cache(value)
    kind = family_kind(pipe)
    if name == "off":
        return "off"
    if name == "auto":
        return AUTO.get(kind, "off")
    if name == "deepcache" and kind != "unet":
        msg = f"cache: deepcache needs a UNet model (SD 1.x, SD 2.x, SDXL); this one is a {kind} (try --cache auto)"
        raise ValueError(msg)
    if name in TRANSFORMER_MODES and (msg := transformer_cache.refusal(pipe, name, kind)):
        raise ValueError(msg)
    return f"{name}:{number:g}"


def resolved_for(request: Any, pipe: Any) -> str:
    """`resolved` for a request: with ControlNet units ``auto`` is off and DeepCache refused in one line.

    DeepCache reuses the deep blocks' features between steps, where the units' residuals are added: the cached steps
    would paint without control.
    """
    if request.controlnet:
        name, _ = read_cache(request.cache)
        if name == "deepcache":
            msg = "cache: deepcache skips the deep UNet blocks that ControlNet units feed; use --cache off with units"
            raise ValueError(msg)
        if name == "auto":
            return "off"
    return resolved(request.cache, pipe)


@contextlib.contextmanager
def applied(pipe: Any, value: str, steps: int | None = None) -> Iterator[None]:
    """Cache steps during one pipeline call (of `steps` evaluations) as `value` (resolved) says; no hook stays."""
    name, number = read_cache(value)
    if name in TRANSFORMER_MODES and name in transformer_cache.modes(pipe):
        with transformer_cache.applied(pipe, name, number, steps):  # type: ignore[arg-type]
            yield
        return
    if name in ("off", "auto") or family_kind(pipe) != "unet":
        yield
        return
    from diffusers.hooks import HookRegistry

    unet, scheduler = pipe.unet, pipe.scheduler
    state = DeepCacheState(int(number), pipe)
    original_step = scheduler.__dict__.get("step")
    _count_steps(scheduler, state)
    install_deepcache(unet, state)
    try:
        yield
    finally:
        HookRegistry.check_if_exists_or_initialize(unet).remove_hook(HOOK_NAME, recurse=True)
        if original_step is None:
            scheduler.__dict__.pop("step", None)
        else:
            scheduler.step = original_step


def _count_steps(scheduler: Any, state: DeepCacheState) -> None:
    """One ``scheduler.step`` ends one model evaluation (however many UNet calls CFG or ``AND`` made in it)."""
    original = scheduler.step

    @functools.wraps(original)
    def step(*args: Any, **kwargs: Any) -> Any:
        state.evaluation += 1
        state.call = 0
        return original(*args, **kwargs)

    scheduler.step = step


FULL_SHARE = 0.2
"""The share of a pass's first evaluations run in full: they settle the composition, and caching them costs the most
(bundled model, 20 Euler steps, three captions: SSIM to the uncached picture 0.89–0.97 → 0.97–0.99 at deepcache 3)."""


def full_evaluations(evaluations: int) -> int:
    """How many first evaluations of a pass of `evaluations` run in full before the cache starts."""
    return int(evaluations * FULL_SHARE)


class DeepCacheState:
    """What the hooks of one pipeline call share: which evaluation this is, and the deep outputs kept."""

    def __init__(self, interval: int, pipe: Any = None) -> None:
        self.interval, self.pipe = interval, pipe
        self.first_cached = 0
        """Evaluations before this run in full (`full_evaluations` of the pass, known once the pass has started)."""
        self.evaluation = 0
        """Model evaluations finished (scheduler steps); `refreshes` says which run the whole UNet."""
        self.call = 0
        """UNet calls in this evaluation so far (CFG in one batch is one; ``AND`` or NGMS may make more)."""
        self.key: tuple = ()
        self.reuse = False
        self.kept: dict[tuple, Any] = {}
        """(call in its evaluation, input shape) → the second-to-last up block's output at the last refresh."""

    def start_call(self, sample: Any) -> None:
        """Decide, as a UNet call starts, whether it reuses the kept output (only with one of the same shape)."""
        if self.evaluation == 0 and self.call == 0:  # the pipeline has set its timesteps by its first UNet call
            self.first_cached = full_evaluations(int(getattr(self.pipe, "num_timesteps", 0) or 0))
        refresh = refreshes(self.evaluation, self.interval, self.first_cached)
        if refresh and self.call == 0:
            self.kept.clear()  # nothing older than the last refresh is reused (a call of a shape it lacked recomputes)
        self.key = (self.call, tuple(sample.shape))
        self.call += 1
        self.reuse = not refresh and self.key in self.kept


def refreshes(evaluation: int, interval: int, first_cached: int) -> bool:
    """Whether model evaluation `evaluation` (from 0) of a pass runs the whole UNet."""
    return evaluation < first_cached or (evaluation - first_cached) % interval == 0


def _hidden(args: tuple, kwargs: dict) -> Any:
    return args[0] if args else kwargs["hidden_states"]


def _hook_class() -> tuple[type, type]:
    """The hook classes, made on first use (diffusers is imported inside functions: `import jupyter_sd` stays light)."""
    from diffusers.hooks import ModelHook

    class CallStart(ModelHook):
        """On the UNet: each call decides to refresh or reuse before its blocks run."""

        def __init__(self, state: DeepCacheState) -> None:
            super().__init__()
            self.state = state

        def pre_forward(self, module: Any, *args: Any, **kwargs: Any) -> tuple[tuple, dict]:
            self.state.start_call(args[0] if args else kwargs["sample"])
            return args, kwargs

    class Skipped(ModelHook):
        """On a deep block: on reuse calls, hand its input through untouched (its result is never used)."""

        def __init__(self, state: DeepCacheState, outputs: int, keep: bool) -> None:
            super().__init__()
            self.state, self.outputs, self.keep = state, outputs, keep

        def new_forward(self, module: Any, *args: Any, **kwargs: Any) -> Any:
            state = self.state
            if state.reuse:
                if self.keep:
                    return state.kept[state.key]
                hidden = _hidden(args, kwargs)
                return (hidden, (hidden,) * self.outputs) if self.outputs else hidden
            output = self.fn_ref.original_forward(*args, **kwargs)
            if self.keep:
                state.kept[state.key] = output
            return output

    return CallStart, Skipped


def install_deepcache(unet: Any, state: DeepCacheState) -> None:
    """Hook the UNet: the call start on the UNet, a skip on every block deeper than the shallowest branch."""
    from diffusers.hooks import HookRegistry

    call_start, skipped = _hook_class()
    HookRegistry.check_if_exists_or_initialize(unet).register_hook(call_start(state), HOOK_NAME)
    for block in unet.down_blocks[1:]:
        outputs = len(block.resnets) + len(getattr(block, "downsamplers", None) or ())
        HookRegistry.check_if_exists_or_initialize(block).register_hook(skipped(state, outputs, False), HOOK_NAME)
    deep = [unet.mid_block] if unet.mid_block is not None else []
    for index, block in enumerate([*deep, *unet.up_blocks[:-1]]):
        keep = index == len(deep) + len(unet.up_blocks) - 2  # the last deep block's output is what is kept
        HookRegistry.check_if_exists_or_initialize(block).register_hook(skipped(state, 0, keep), HOOK_NAME)
