"""The SDXL refiner: a second model that paints the last steps (A1111's ``Refiner`` and ``Refiner switch at``).

The base pipeline denoises up to the switch (``denoising_end``) and hands over its latents; the refiner, an
img2img pipeline, goes on from there (``denoising_start``) with the same sampler, seeds and prompt. It is loaded
beside the base and borrows the base's VAE and second text encoder when their configs match (as diffusers' SDXL
refiner example does), so it costs only its UNet (and its own text encoder where it differs).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

from PIL import Image

from ..recipe.request import PaintRequest
from ..recipe.result import PaintResult
from . import step_cache, token_merging
from .conditioning import a1111_steps, build_conditioning
from .control.apply import check_conditioning, control_for
from .mode_pipelines import derived_pipeline, execution_device
from .models import ModelSource, component_config, load_pipeline
from .passes import Stopped, X0Capture, step_noise
from .preview import Previewer, decode_latents, to_pil
from .progress import Progress
from .quiet import quiet
from .schedulers import make_scheduler
from .seeds import NoiseSource
from .step_noise import supply_step_noise

_SHARED = ("vae", "text_encoder_2", "tokenizer_2")


class Refiner:
    """A loaded refiner for one base pipeline."""

    def __init__(self, source: ModelSource, base: Any, device: str, dtype: Any) -> None:
        import diffusers

        self.source = source
        # what the saved configs already show to be the base's architecture is never loaded twice
        borrowed = {name: getattr(base, name) for name in _SHARED[:2] if _same_saved(source, name, base)}
        if "text_encoder_2" in borrowed and getattr(base, "tokenizer_2", None) is not None:
            borrowed["tokenizer_2"] = base.tokenizer_2
        plain = load_pipeline(source, None, dtype, components=borrowed)
        self.borrowed = sorted(borrowed)  # never loaded from the refiner at all
        shared = {
            name: getattr(base, name)
            for name in _SHARED
            if getattr(base, name, None) is not None and _same_config(getattr(plain, name, None), getattr(base, name))
        }
        components = {**plain.components, **shared}
        with quiet():
            self.pipe = diffusers.StableDiffusionXLImg2ImgPipeline.from_pipe(plain, **components)
            self.pipe.set_progress_bar_config(disable=True)
            self.pipe.to(device)
        self.shared = sorted(shared)
        self.base_config = dict(self.pipe.scheduler.config)

    @staticmethod
    def base_call(request: Any) -> dict[str, Any]:
        """What the base pass adds to its call: stop at the switch and hand over latents."""
        return {"denoising_end": request.refiner_switch, "output_type": "latent"}

    @staticmethod
    def base_steps(request: Any) -> int:
        """How many of the steps the base paints (diffusers counts the switch over the timesteps the same way)."""
        return min(request.steps, max(1, math.ceil(request.steps * request.refiner_switch)))

    def set_sampler(self, request: Any) -> None:
        """The base's sampler and schedule, on the refiner's own scheduler config."""
        self.pipe.scheduler = make_scheduler(request.sampler, request.schedule, self.base_config)

    def refine(
        self, latents: Any, call: dict[str, Any], request: Any, on_step_end: Callable[..., dict[str, Any]]
    ) -> list[Any]:
        """Paint the last steps from the base's latents (after `set_sampler`); returns the pictures."""
        refiner_call = {key: call[key] for key in ("num_inference_steps", "guidance_scale", "generator") if key in call}
        refiner_call.update(
            prompt=request.prompt,  # the refiner has its own text encoder: plain text, A1111 weights not applied
            negative_prompt=request.negative_prompt or None,
            image=latents,
            denoising_start=request.refiner_switch,
            num_images_per_prompt=1,  # the latents already hold the whole batch
            callback_on_step_end=on_step_end,
            callback_on_step_end_tensor_inputs=["latents"],
        )
        if refiner_call.get("prompt") is not None and request.n > 1:
            refiner_call["prompt"] = [refiner_call["prompt"]] * request.n
            if refiner_call.get("negative_prompt") is not None:
                refiner_call["negative_prompt"] = [refiner_call["negative_prompt"]] * request.n
        return self.pipe(**refiner_call).images


def paint_with_refiner(
    pipe: Any,
    refiner: Refiner,
    request: PaintRequest,
    seeds: list[int],
    previewer: Previewer | None,
    progress: Progress,
    stop: threading.Event,
    result: PaintResult,
    networks_key: Any,
    pictures: Any = None,
) -> list[Image.Image]:
    """One batch of a txt2img request with ``--refiner``: the base up to the switch, then the refiner.

    Steps count over both passes; stop and interrupt keep the last predicted clean picture, as every pass does.
    ControlNet units (`pictures` holds theirs) control the base's steps.
    """
    token_merging.set_ratio(pipe, request.token_merging)  # the base pass (the refiner keeps its own UNet as it is)
    capture = X0Capture(pipe.scheduler)  # re-wrapped for every batch: the scheduler was just swapped
    conditioning = _conditioning(pipe, request, networks_key)
    base_steps = refiner.base_steps(request) if refiner is not None else 0
    done = 0
    last_frame = -math.inf

    def on_step_end(pipe_: Any, index: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        nonlocal done, last_frame
        total = getattr(pipe_, "num_timesteps", request.steps) or request.steps
        done = max(1, math.ceil((index + 1) * request.steps / total))
        if refiner is not None:  # base then refiner: one count over both passes
            done = min(request.steps, index + 1 + (base_steps if pipe_ is refiner.pipe else 0))
        capture.latents = tensors["latents"]
        if refiner is None or pipe_ is not refiner.pipe:  # the refiner encodes its own prompt
            tensors = conditioning.on_step(pipe_, index, timestep, tensors)
        if stop.is_set():
            raise Stopped(done)
        previews = None
        if previewer is not None and time.perf_counter() - last_frame >= request.preview_interval:
            previews = previewer(capture.x0 if capture.x0 is not None else tensors["latents"])
            last_frame = time.perf_counter()
        progress.step(done, request.steps, previews)
        return tensors

    source = _noise(pipe, request, seeds, call := _base_call(request, conditioning, on_step_end, refiner))
    base, control = _with_units(pipe, request, pictures, call, seeds, result, progress)
    check_conditioning(control, conditioning)
    try:
        if stop.is_set():
            raise Stopped(0)
        with step_cache.applied(pipe, request.cache), conditioning.applied(pipe):  # the base pass's steps only
            images = base(**call).images
        if refiner is not None:  # 4b. the refiner paints the last steps from the base's latents (refiner.py)
            refiner.set_sampler(request)
            capture = X0Capture(refiner.pipe.scheduler)
            supply_step_noise(refiner.pipe.scheduler, source)  # the same per-image generators go on
            images = refiner.refine(images, call, request, on_step_end)
        return images
    except Stopped as stopped:
        result.interrupted_at, result.stopped_by = stopped.step, "stop"
    except KeyboardInterrupt:
        result.interrupted_at, result.stopped_by = done, "interrupt"
    # Stopped: keep the last predicted clean picture, never diffusers' decode of the noisy latent.
    latents = capture.x0 if capture.x0 is not None else capture.latents
    return [] if latents is None else to_pil(pipe, decode_latents(pipe, latents))


def _with_units(
    pipe: Any, request: Any, pictures: Any, call: dict[str, Any], seeds: list[int], result: Any, progress: Any
) -> tuple[Any, Any]:
    """The base pass's pipeline: with ControlNet units diffusers' ControlNet pipeline over the base (``from_pipe``).

    The units stop at the switch with the base; the refiner paints its steps without them (a ControlNet is shaped
    like the base's UNet, not the refiner's).
    """
    control = control_for(pipe, request, pictures, progress.notice)
    if control is None:
        return pipe, None
    controlled = derived_pipeline(pipe, "txt2img", control.model)
    controlled.scheduler = pipe.scheduler  # the request's sampler, its step noise and the x0 capture
    call.update(control.kwargs(controlled, "txt2img", request.width, request.height, seeds[0]))
    result.params.update(control.infotext())
    control.report(result, progress)
    return controlled, control


def _conditioning(pipe: Any, request: PaintRequest, networks_key: Any) -> Any:
    """The base pass's embeddings of the prompt (A1111 syntax and weights; conditioning.py)."""
    return build_conditioning(
        pipe,
        request.prompt,
        request.negative_prompt,
        a1111_steps(pipe, request.steps),
        request.clip_skip,
        networks_key=networks_key,
        pad_to_same_length=request.pad_conds,
        emphasis=request.emphasis,
    )


def _noise(pipe: Any, request: PaintRequest, seeds: list[int], call: dict[str, Any]) -> NoiseSource:
    """Give the base call its generators and starting noise (diffusers draws it for ``cpu``); set up the step noise.

    Returns the batch's per-image source: the refiner's steps go on drawing from it, as A1111's one ImageRNG does.
    """
    import torch

    generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
    call["generator"] = generators
    if request.rng == "cpu":
        source = NoiseSource("cpu", seeds, "cpu", generators)
    else:
        source = NoiseSource(request.rng, seeds, execution_device(pipe))
        factor = int(getattr(pipe, "vae_scale_factor", 8))
        shape = (pipe.vae.config.latent_channels, request.height // factor, request.width // factor)
        call["latents"] = source.first(shape).to(pipe.device, pipe.unet.dtype)
    step_noise(pipe.scheduler, request.eta_noise_seed_delta, generators, source)
    return source


def _base_call(request: PaintRequest, conditioning: Any, on_step_end: Any, refiner: Refiner | None) -> dict[str, Any]:
    """The base pipeline's call: the whole schedule, or up to the switch when a refiner takes over."""
    call = {
        **conditioning.pipeline_kwargs(),
        "num_inference_steps": request.steps,
        "guidance_scale": request.guidance,
        "width": request.width,
        "height": request.height,
        "num_images_per_prompt": request.n,
        "callback_on_step_end": on_step_end,
        "callback_on_step_end_tensor_inputs": ["latents"],
    }
    if refiner is not None:
        call.update(refiner.base_call(request))
    return call


_IGNORED = {"_name_or_path", "_commit_hash", "transformers_version", "_diffusers_version", "torch_dtype", "dtype"}


def _same_saved(source: ModelSource, name: str, base: Any) -> bool:
    """Whether the refiner's saved config for `name` matches the loaded base component's (so it can borrow it)."""
    mine, theirs = component_config(source, name), getattr(base, name, None)
    if mine is None or theirs is None or not hasattr(theirs, "config"):
        return False
    config = theirs.config  # transformers saves only what differs from the defaults: compare like with like
    loaded = config.to_diff_dict() if hasattr(config, "to_diff_dict") else dict(config)
    keys = (set(mine) | set(loaded)) - _IGNORED - {"architectures", "_class_name"}
    return all(mine.get(key) == loaded.get(key) for key in keys if not key.startswith("_"))


def _same_config(mine: Any, base: Any) -> bool:
    """Whether two components are the same architecture (configs, or a tokenizer's vocabulary, match)."""
    if mine is None or type(mine) is not type(base):
        return False
    if not hasattr(base, "config"):
        return hasattr(base, "get_vocab") and mine.get_vocab() == base.get_vocab()
    ignore = {"_name_or_path", "_commit_hash", "transformers_version", "_diffusers_version", "torch_dtype", "dtype"}

    def plain(component: Any) -> dict[str, Any]:
        config = component.config
        data = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        return {key: value for key, value in data.items() if key not in ignore}

    return plain(mine) == plain(base)
