"""Running one denoising pass: live x0 previews, step reports, the engine's stop, the last x0 kept.

`PassRunner` runs a pipeline call of whichever mode (modes.py decides the passes and what goes into each); the
scheduler wrapper keeps the predicted clean sample that SD pipelines throw away, for previews and for stops.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import threading
import time
from typing import Any

from ..recipe.request import PaintRequest
from ..recipe.result import PaintResult
from ..recipe.samplers import ENSD_SAMPLERS, SAMPLERS
from . import step_cache, token_merging
from .control.colorfix import dropped
from .families import family_of
from .families.flow import flow_x0, with_shift
from .families.flow_samplers import count_heun_steps
from .plan import Pass
from .preview import Previewer, decode_latents, to_pil
from .schedulers import make_scheduler
from .seeds import NoiseSource
from .step_noise import step_globals, supply_step_noise


class Stopped(Exception):
    """Raised from the step callback to leave the denoising loop at once (no noisy decode)."""

    def __init__(self, step: int) -> None:
        super().__init__(step)
        self.step = step


class X0Capture:
    """Wrap ``scheduler.step`` to keep the predicted clean sample (x0), which SD pipelines throw away.

    `functools.wraps` keeps ``step``'s signature visible: pipelines inspect it to decide whether to pass
    ``generator``, and a bare ``*args`` wrapper would make ancestral samplers ignore the seed.
    """

    def __init__(self, scheduler: Any) -> None:
        self.x0: Any = None
        self.latents: Any = None
        original = scheduler.step

        @functools.wraps(original)
        def step(*args: Any, **kwargs: Any) -> Any:
            output = original(*args, **kwargs)
            self.x0 = x0_from(scheduler, output, args, kwargs)
            return output

        scheduler.step = step


def x0_from(scheduler: Any, output: Any, args: tuple, kwargs: dict) -> Any:
    """Find x0 in a scheduler step's output, its state, or (epsilon and flow schedulers) compute it."""
    flow = getattr(scheduler.config, "prediction_type", "") == "flow_prediction"  # DPM++ 2M and UniPC on flow
    if flow or type(scheduler).__name__.startswith("FlowMatch"):  # x0 = x_t − σ·v (families/flow.py)
        model_output = kwargs.get("model_output", args[0] if args else None)
        sample = kwargs.get("sample", args[2] if len(args) > 2 else None)
        return flow_x0(scheduler, model_output, sample) if sample is not None else None
    if isinstance(output, tuple):
        if len(output) > 1 and output[1] is not None:
            return output[1]
    else:
        for name in ("pred_original_sample", "denoised"):
            value = getattr(output, name, None)
            if value is not None:
                return value
    model_outputs = getattr(scheduler, "model_outputs", None)
    if (
        model_outputs
        and model_outputs[-1] is not None
        and getattr(scheduler.config, "algorithm_type", "dpmsolver++") != "dpmsolver"
    ):
        return model_outputs[-1]
    # PNDM and friends: x0 = (x_t - sqrt(1 - a_t) * eps) / sqrt(a_t) for epsilon prediction.
    model_output = kwargs.get("model_output", args[0] if args else None)
    timestep = kwargs.get("timestep", args[1] if len(args) > 1 else None)
    sample = kwargs.get("sample", args[2] if len(args) > 2 else None)
    alphas = getattr(scheduler, "alphas_cumprod", None)
    if alphas is None or sample is None or getattr(scheduler.config, "prediction_type", "") != "epsilon":
        return None
    alpha = alphas[int(timestep)].to(sample.device, sample.dtype)
    return (sample - (1 - alpha).sqrt() * model_output) / alpha.sqrt()


class PassRunner:
    """Run pipeline calls with live x0 previews, step reports and the engine's stop, for one request.

    Steps are reported per pass (``step(i, steps_of_this_pass)``) after a ``phase`` event naming the pass; a stop
    or kernel interrupt is recorded on `result` with the step counted over all passes, and the pass returns the
    pictures of its last x0 (never diffusers' decode of the noisy latent).
    """

    def __init__(
        self,
        request: PaintRequest,
        previewer: Previewer | None,
        progress: Any,
        stop: threading.Event,
        result: PaintResult,
        base_config: dict,
        plan: list[Pass],
    ) -> None:
        self.request, self.previewer, self.progress, self.stop, self.result = request, previewer, progress, stop, result
        self.base_config = base_config
        self.plan = plan
        self.steps_before = 0

    def scheduler(self, sampler: str, schedule: str | None = None) -> Any:
        """A fresh scheduler for a pass (from the model's own config, as the engine's sampler table says)."""
        config = with_shift(self.base_config, getattr(self.request, "shift", 0.0))  # --shift (flow models)
        return make_scheduler(sampler, schedule or self.request.schedule, config)

    def run(
        self,
        pipe: Any,
        call: dict[str, Any],
        index: int,
        size: tuple[int, int],
        conditioning: Any = None,
        source: NoiseSource | None = None,
    ) -> tuple[Any, bool]:
        """Run pass `index` of the plan; return (the pipeline's images or latents, False) or (x0 pictures, True).

        `conditioning` (conditioning.py's, for this pass) gives the prompt embeddings, swaps them at the steps the
        prompt's editing says, and wraps the UNet for the call when ``AND`` or unequal lengths need it. `source`
        (seeds.py's, its starting noise already drawn) gives the step noise unless diffusers draws it (``cpu``).
        """
        steps = self.plan[index].steps
        capture = self._set_up(pipe, call, index, size, source)
        family = family_of(pipe)
        done = 0
        last_frame = -math.inf
        request, previewer, progress, stop = self.request, self.previewer, self.progress, self.stop

        def on_step_end(pipe_: Any, i: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            nonlocal done, last_frame
            done = _steps_done(pipe_, i, steps)
            capture.latents = tensors["latents"]
            if conditioning is not None:
                tensors = conditioning.on_step(pipe_, i, timestep, tensors)
            if stop.is_set():
                raise Stopped(done)
            previews = None
            if previewer is not None and time.perf_counter() - last_frame >= request.preview_interval:
                latents = capture.x0 if capture.x0 is not None else tensors["latents"]
                previews = previewer(family.to_spatial(pipe_, latents, size))
                last_frame = time.perf_counter()
            progress.step(done, steps, previews)
            return tensors

        embeddings = conditioning.pipeline_kwargs() if conditioning is not None else {}
        call = {
            **embeddings,
            **call,
            "callback_on_step_end": on_step_end,
            "callback_on_step_end_tensor_inputs": ["latents"],
        }
        call = family.adapt_call(pipe, call)  # (Flux.2 klein takes its negative prompt as embeddings)
        try:
            if stop.is_set():
                raise Stopped(0)
            applied = conditioning.applied(pipe) if conditioning is not None else contextlib.nullcontext()
            # the cache's hooks outside the wrapper's; the colour fix set for this call dropped after it (colorfix.py)
            with dropped(pipe), step_cache.applied(pipe, request.cache, steps), applied:
                output = pipe(**call).images
            self.steps_before += steps
            return output, False
        except Stopped as stopped:
            self.result.interrupted_at, self.result.stopped_by = self.steps_before + stopped.step, "stop"
        except KeyboardInterrupt:
            self.result.interrupted_at, self.result.stopped_by = self.steps_before + done, "interrupt"
        latents = capture.x0 if capture.x0 is not None else capture.latents
        if latents is None:
            return [], True
        return to_pil(pipe, decode_latents(pipe, family.to_spatial(pipe, latents, size))), True

    def _set_up(
        self, pipe: Any, call: dict[str, Any], index: int, size: tuple[int, int], source: NoiseSource | None
    ) -> X0Capture:
        """Announce pass `index`; wrap its scheduler (x0 capture, ENSD, step noise); set its ToMe ratio."""
        current, request = self.plan[index], self.request
        self.progress_phase(current.label, index, len(self.plan), current.steps)
        capture = X0Capture(pipe.scheduler)  # the scheduler was just made for this pass
        count_heun_steps(pipe)  # (a pipeline handing its own sigmas counts Heun's two passes a step as steps)
        if self.previewer is not None:
            self.previewer.size = size
        hires = current.label == "hires"  # A1111's per-pass ratio (its get_token_merging_ratio)
        token_merging.set_ratio(pipe, (hires and request.token_merging_hr) or request.token_merging)
        step_noise(pipe.scheduler, request.eta_noise_seed_delta, call.get("generator"), source)
        return capture

    def progress_phase(self, label: str, index: int, count: int, steps: int) -> None:
        """Tell the listener a pass starts (listeners that predate passes may not have ``phase``)."""
        phase = getattr(self.progress, "phase", None)
        if phase is not None:
            phase(label, index, count, steps)


_ENSD_CLASSES = {SAMPLERS[name].scheduler for name in ENSD_SAMPLERS}


def _steps_done(pipe: Any, index: int, steps: int) -> int:
    """The steps a pass of `steps` has done at the pipeline's timestep `index`, counted as A1111 and Forge count.

    A Heun step (two timesteps, the last step one) is one step; scaled to `steps` where the pipeline counts others.
    """
    order = max(1, int(getattr(pipe.scheduler, "order", 1) or 1))
    total = getattr(pipe, "num_timesteps", steps) or steps
    return max(1, math.ceil((index // order + 1) * steps / ((total + order - 1) // order)))


def step_noise(scheduler: Any, delta: int, generators: list[Any] | None, source: NoiseSource | None) -> None:
    """Where a pass's step noise comes from, after its starting noise: ENSD, and the request's random source.

    ENSD acts (and is written) only for the samplers A1111 marks as using it. With a source that supplies the step
    noise (``gpu``/``nv``) its generators are reseeded and hand their draws to the scheduler (step_noise.py);
    otherwise diffusers draws from the CPU `generators` and those are reseeded at the first step.
    """
    ensd = bool(delta) and type(scheduler).__name__ in _ENSD_CLASSES
    if source is not None and source.supplies_steps:
        if ensd:
            source.reseed(delta)
        supply_step_noise(scheduler, source)
    elif ensd and generators:
        _reseed_at_first_step(scheduler, generators, delta)
    if generators and not (source is not None and source.supplies_steps):
        _step_generator(scheduler, generators)


def _step_generator(scheduler: Any, generators: list[Any]) -> None:
    """Hand a step that draws noise the pass's generators where the pipeline gives none (LCM on flow models).

    The flow pipelines call ``step`` without ``generator``, so the flow LCM would draw from torch's global random
    state: another picture on every run, even with ``--rng cpu``. diffusers' UNet pipelines hand it, as here.
    """
    original = scheduler.step
    if step_globals(scheduler) is None or "generator" not in inspect.signature(original).parameters:
        return

    @functools.wraps(original)
    def step(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("generator", generators)
        return original(*args, **kwargs)

    scheduler.step = step


def _reseed_at_first_step(scheduler: Any, generators: list[Any], delta: int) -> None:
    """A1111's ENSD: once the starting noise is drawn, each image's generator restarts from its seed + `delta`.

    The pipeline draws the starting noise (or the img2img noise) before its first ``scheduler.step``, and an
    ancestral sampler draws its step noise inside it, so restarting the generators there is the point A1111 picks
    (its ``ImageRNG.first``).
    """
    original = scheduler.step

    @functools.wraps(original)
    def step(*args: Any, **kwargs: Any) -> Any:
        scheduler.step = original  # once
        for generator in generators:
            generator.manual_seed(generator.initial_seed() + delta)
        return original(*args, **kwargs)

    scheduler.step = step
