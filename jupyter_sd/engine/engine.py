"""The kernel-resident engine: one cached pipeline, one generation at a time, previews, stop and recovery.

`Engine.generate` is a numbered recipe (validate, pipeline, sampler, denoise, decode). It reports progress to a
`Progress` object and knows nothing of widgets, displays or files: views and the image store listen to it.
"""

from __future__ import annotations

import gc
import secrets
import threading
import time
from typing import Any

from ..recipe.fields import BUILT_IN_UPSCALERS, MAX_SEED
from ..recipe.request import PaintRequest
from ..recipe.result import PaintResult
from . import fast_load, memory, modes, step_cache, token_merging, warmup
from .about import describe
from .conditioning import a1111_steps, build_conditioning
from .families import Family, family_of
from .families.fit import fit_request
from .models import (
    ModelSource,
    check_available,
    choose_preset,
    load_pipeline,
    native_size,
    pick_device,
    pick_dtype,
    resolve_model,
    source_family,
)
from .networks import apply_networks
from .outpaint import outpainted
from .passes import PassRunner
from .pictures import Pictures
from .plan import hires_sampler, pass_plan, what_runs
from .preview import Previewer, load_latent_rgb
from .progress import Progress, Recorded
from .quiet import ignore_harmless_warnings
from .refiner import Refiner, paint_with_refiner
from .schedulers import make_scheduler, scheduler_overrides
from .seeds import batch_seeds
from .upscalers import upscaler_for

BUNDLED_NOTICE = "using the bundled demo model; pass --model for Stable Diffusion"


class Engine:
    """The pipeline cache and the generation loop, shared by every front end in the kernel.

    One pipeline stays loaded, keyed by (model, device, dtype); asking for another frees the old one first. One
    generation runs at a time (a lock), so the magic, the panel's worker and ``paint()`` can share a GPU.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pipe: Any = None
        self._key: tuple | None = None
        self._source: ModelSource | None = None
        self._latent_rgb: dict | None = None
        self._taesd: Any = None
        self._taesd_key: tuple | None = None
        self._stop: threading.Event | None = None
        self._told_bundled = False
        self._family: Family | None = None
        self._memory: memory.MemoryPlan | None = None
        self._refiner: Any = None
        self._told_presets: set[tuple[str, str]] = set()
        self._preloading = False
        self._waiting_notices: list[str] = []
        """What a load in the warm-up thread said, told by the next picture (its cell is the one watching)."""
        self.taesd = ""
        """A TAESD model (hub id or local folder) for ``--preview taesd``/``auto``; empty for none."""
        self.taesdxl = ""
        """The same for SDXL models (e.g. ``madebyollin/taesdxl``)."""
        self.load_count = 0
        self.load_seconds = 0.0
        self.last_result: PaintResult | None = None
        self.networks_key: Any = ()
        """What the text encoders carry besides the model (LoRA, embeddings): part of the embedding cache key."""

    # -- state ------------------------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """Whether a generation is running."""
        return self._lock.locked()

    def stop(self) -> None:
        """Ask the running generation to stop at its next step, keeping what it made."""
        if self._stop is not None:
            self._stop.set()

    def info(self) -> dict[str, Any]:
        """Describe what is loaded: model, device, dtype, memory (``%paint info``)."""
        return describe(self)

    def preload(self, request: PaintRequest) -> bool:
        """Load the request's model ahead of the first picture when it is already on this disk (never downloads).

        Runs in the warm-up thread; the first ``generate`` waits for it on the engine's lock instead of loading.
        """
        source = resolve_model(request.model, request.allow_pickle)
        if source.kind not in ("folder", "single-file") or not self._lock.acquire(blocking=False):
            return False
        said = Recorded()
        try:
            self._preloading = True
            fast_load.first_call(self.pipeline(request, said))  # the bundled model's first-call costs, paid here
            self._told_bundled = False  # the first picture says it, in its own cell
            self._waiting_notices = [line for line in said.lines if line != BUNDLED_NOTICE]
            return True
        finally:
            self._preloading = False
            self._lock.release()

    def unload(self) -> None:
        """Free the pipeline and its GPU memory; the next generation loads again."""
        with self._lock:
            self._release()

    def _release(self) -> None:
        device = self._key[1] if self._key else ""
        held = self._pipe is not None or self._taesd is not None or self._refiner is not None
        self._pipe = self._key = self._source = self._latent_rgb = self._memory = self._refiner = None
        self._taesd = self._taesd_key = None
        if not held:  # the first load: nothing to free, and a full collection costs 0.3 s on a fresh kernel
            return
        gc.collect()
        if str(device).startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    # -- 2. cached pipeline -----------------------------------------------------------------------------------

    def pipeline(self, request: PaintRequest, progress: Progress | None = None) -> Any:
        """Return the pipeline for the request's model, device and dtype, loading it only if it changed."""
        progress = progress or Progress()
        source = resolve_model(request.model, request.allow_pickle)
        local_only = None
        if self._source is None or source.location != self._source.location:
            local_only = check_available(source)  # a missing hub model fails here, in a second, before torch
        warmup.wait()  # the background imports of %load_ext, if still running: never import twice
        device = pick_device(request.device)
        dtype = pick_dtype(request.dtype, device, source_family(source) if request.dtype == "auto" else None)
        key = (source.location, device, dtype, request.model_config, request.offload, request.fast, request.quant,
               request.text_encoder)  # fmt: skip
        memory.check_offload(request.offload, device)
        if source.is_bundled and not self._told_bundled:
            progress.notice(BUNDLED_NOTICE)
            self._told_bundled = True
        if key != self._key:
            self._release()  # free the old model before loading the new one
            progress.notice(f"loading {source.name} on {device} ({str(dtype).replace('torch.', '')})…")
            started = time.perf_counter()
            pipe = load_pipeline(source, None, dtype, request.model_config, local_only, request=request)
            family = family_of(pipe)  # one line for a model of no family we paint, before it takes the GPU
            pipe, self._memory = memory.setup(pipe, device, family, request.offload, request.fast)
            self.load_seconds = time.perf_counter() - started
            self.load_count += 1
            self._pipe, self._key, self._source = pipe, key, source
            model_dir = source.location if source.kind == "folder" else None
            self._latent_rgb = load_latent_rgb(model_dir, family)
            native = native_size(pipe)
            self._family = family
            about = ", ".join(filter(None, [family.name, f"{native}x{native}", self._memory.describe()]))
            progress.notice(f"loaded {source.name} ({about}) in {self.load_seconds:.1f} s")
            if self._memory.fast is not None:
                progress.notice(self._memory.fast.describe())
        return self._pipe

    def _taesd_name(self) -> str:
        """TAESDXL for SDXL latents, TAESD for SD 1/2 (each decodes only its own family's latents)."""
        return getattr(self, self._family.taesd) if self._family is not None and self._family.taesd else ""

    def _taesd_model(self, device: str, dtype: Any) -> Any:
        name = self._taesd_name()
        if not name:
            return None
        key = (name, device, dtype)
        if key != self._taesd_key:
            from diffusers import AutoencoderTiny

            self._taesd = AutoencoderTiny.from_pretrained(name).to(device, dtype)
            self._taesd_key = key
        return self._taesd

    # -- the recipe -------------------------------------------------------------------------------------------

    def generate(
        self,
        request: PaintRequest,
        progress: Progress | None = None,
        stop: threading.Event | None = None,
        pictures: Pictures | None = None,
    ) -> PaintResult:
        """Paint `request`, reporting to `progress`; `stop` (or `Engine.stop`) ends it early, keeping the last x0.

        `pictures` holds the loaded init and mask of an img2img or inpaint request (the front end resolves the
        request's ``init`` / ``mask`` text into pictures; the engine never reads files or notebook variables).

        A kernel interrupt (``KeyboardInterrupt``) inside the loop is caught too: the result is then marked
        ``stopped_by == "interrupt"`` and the caller decides whether to re-raise.

        Returns
        -------
        PaintResult
            The resolved request, images, seeds and where it stopped.

        Raises
        ------
        ValueError
            For an invalid request or a model that cannot be loaded (nothing is loaded or painted then).
        MemoryError
            When the device runs out of memory; the engine stays usable.
        """
        progress = progress or Progress()
        stop = stop or threading.Event()
        request.validate()  # 1. validated by the front end already: this returns at once then
        if request.sd_upscale:  # tiled SD upscale: a painting per tile, each through here (sd_upscale.py)
            from .sd_upscale import run

            return run(self, request, progress, stop, pictures)
        pictures = outpainted(request, pictures)  # --outpaint: the grown init and its mask
        ignore_harmless_warnings()
        if self.busy and not self._preloading:
            progress.notice("waiting for the picture being painted (the panel or another thread) to finish…")
        with self._lock:
            self._stop = stop
            for line in self._waiting_notices:
                progress.notice(line)
            self._waiting_notices = []
            try:
                pipe, request, networks = self._prepare(request, progress, pictures)  # 2. pipeline, networks, memory
                plan = self._schedule(pipe, request)  # 3. sampler and passes
                result = PaintResult(
                    request=request,
                    model_name=self._source.name,
                    steps_total=sum(p.steps for p in plan),
                    params={**networks.params, **self._family.infotext_params(request)},
                )
                self._denoise(pipe, request, plan, result, progress, stop, pictures)  # 4. denoise, 5. decode
            except Exception as error:
                if memory.is_out_of_memory(error):
                    memory.recover()
                    raise MemoryError(memory.out_of_memory_message(request)) from error
                raise
            finally:
                self._stop = None
        self.last_result = result
        progress.finish(result)
        return result

    def _prepare(
        self, request: PaintRequest, progress: Progress, pictures: Pictures | None
    ) -> tuple[Any, PaintRequest, Any]:
        """The cached pipeline, the request resolved on it, its networks, memory plan, refiner and upscaler."""
        pipe = self.pipeline(request, progress)
        request, changed = what_runs(self._resolve(request, pipe, pictures))
        request, fitted = fit_request(self._family, pipe, request)  # its defaults; what it lacks, refused
        for line in changed + fitted:
            progress.notice(line)
        request = self._preset(request, pipe, progress)  # few-step defaults (presets.py)
        model_file = self._source.location if self._source.kind == "single-file" else None
        networks = apply_networks(pipe, request, progress.notice, model_file)  # LoRA, embeddings, VAE
        self.networks_key = networks.text_key  # what the text encoders carry: the embedding cache key
        self._memory.before_call(pipe, request, progress.notice)  # attention, VAE tiling, compile notices
        self._load_refiner(request, pipe, progress)
        if request.token_merging or request.token_merging_hr:
            token_merging.check_available()
        if request.hires_enabled and request.hires_upscaler not in BUILT_IN_UPSCALERS:
            # the hires upscaler model now, before the first pass: a refusal then costs no painting
            upscaler_for(pipe, request.hires_upscaler, request.allow_pickle, progress.notice)
        return pipe, request, networks

    def _schedule(self, pipe: Any, request: PaintRequest) -> list:
        """The request's sampler on the pipeline (the hires pair checked too, before any pass) and its passes."""
        config = getattr(pipe, "_jupyter_sd_base_scheduler_config", None)
        if config is None:
            config = {**pipe.scheduler.config, "_class_name": type(pipe.scheduler).__name__}
            pipe._jupyter_sd_base_scheduler_config = config
        pipe.scheduler = make_scheduler(request.sampler, request.schedule, config)
        if request.hires_enabled:  # the hires pass's pair too, now: a refusal after the first pass would waste it
            scheduler_overrides(*hires_sampler(request), option="hires_schedule")
        return pass_plan(request)

    def _denoise(
        self,
        pipe: Any,
        request: PaintRequest,
        plan: list,
        result: PaintResult,
        progress: Progress,
        stop: threading.Event,
        pictures: Pictures | None,
    ) -> None:
        """Every batch of the request through its passes (modes.py; base + refiner in refiner.py), into `result`."""
        previewer = self._previewer(request, pipe)
        base_config = pipe._jupyter_sd_base_scheduler_config
        runner = PassRunner(request, previewer, progress, stop, result, base_config, plan)
        condition = self._conditioning(request)
        started = time.perf_counter()
        for batch in range(request.repeat):
            first = batch * request.n
            seeds, subseeds = batch_seeds(
                request.seed, request.variation_seed, request.variation_strength, first, request.n
            )
            progress.start(request, batch, request.repeat)
            if request.refiner:
                images = paint_with_refiner(
                    pipe, self._refiner, request, seeds, previewer, progress, stop, result, self.networks_key, pictures
                )
            else:
                images = modes.paint_batch(pipe, request, seeds, subseeds, pictures, runner, condition)
            result.images += images
            if not result.interrupted:
                result.complete += len(images)
            result.seeds += seeds[: len(images)]
            result.variation_seeds += subseeds[: len(images)]
            result.elapsed = time.perf_counter() - started
            progress.batch(images, seeds[: len(images)], result)
            if result.interrupted:
                break

    def _resolve(self, request: PaintRequest, pipe: Any, pictures: Pictures | None = None) -> PaintRequest:
        """Fill in what "default" meant: the native size (an init's own), random seeds, the model that loaded."""
        changes: dict[str, Any] = {"model": self._model_string(), "cache": step_cache.resolved_for(request, pipe)}
        if request.width is None:
            if request.init and pictures is not None and pictures.init is not None:
                width, height = (min(4096, max(8, side // 8 * 8)) for side in pictures.init.size)
            else:
                width = height = native_size(pipe)
            changes.update(width=width, height=height)
        if request.seed == -1:
            changes["seed"] = secrets.randbelow(MAX_SEED - request.n * request.repeat)
        if request.variation_seed == -1 and request.variation_strength > 0:
            changes["variation_seed"] = secrets.randbelow(MAX_SEED - request.n * request.repeat)
        resolved = request.replace(**changes)
        if resolved.hires_enabled:
            resolved.hires_target()  # the hires size is known only now that the size is
        return resolved

    def _preset(self, request: PaintRequest, pipe: Any, progress: Progress) -> PaintRequest:
        request, line = choose_preset(request, self._source, pipe, self._family.name)
        told = (self._source.location, line)
        if line and told not in self._told_presets:
            self._told_presets.add(told)
            progress.notice(line)
        return request

    def _load_refiner(self, request: PaintRequest, pipe: Any, progress: Progress) -> None:
        """Load ``--refiner`` beside the base (once), or drop it when no longer asked for."""
        if not request.refiner:
            self._refiner = None
            return
        source = resolve_model(request.refiner, request.allow_pickle)
        if self._refiner is not None and self._refiner.source.location == source.location:
            return
        check_available(source)
        progress.notice(f"loading refiner {source.name}…")
        self._refiner = Refiner(source, pipe, str(self._key[1]), self._key[2])
        shared = f", sharing the base's {', '.join(self._refiner.shared)}" if self._refiner.shared else ""
        progress.notice(f"loaded refiner {source.name}{shared}")

    def _model_string(self) -> str:
        source = self._source
        return source.name if source.is_bundled or source.kind == "hub" else source.location

    def _conditioning(self, request: PaintRequest) -> modes.Condition:
        """Embeddings for each pass of a request (conditioning.py): prompt syntax, clip skip, the hires prompt."""

        def condition(pipe: Any, prompt: str, steps: int, hires_steps: int | None = None) -> Any:
            conditioning = build_conditioning(
                pipe,
                prompt,
                request.negative_prompt,
                a1111_steps(pipe, steps),
                request.clip_skip,
                hires_steps=None if hires_steps is None else a1111_steps(pipe, hires_steps),
                networks_key=self.networks_key,
                pad_to_same_length=request.pad_conds,
                emphasis=request.emphasis,
            )
            conditioning.negative_guidance_min = (request.ngms, request.ngms_all)
            conditioning.skip_early = request.skip_early_cfg
            return conditioning

        return condition

    def _previewer(self, request: PaintRequest, pipe: Any) -> Previewer | None:
        if request.preview == "none":
            return None
        taesd = None
        if self._taesd_name() and request.preview in ("auto", "taesd"):
            taesd = self._taesd_model(str(pipe.device), pipe.vae.dtype)
        return Previewer(request.preview, pipe, self._latent_rgb, taesd, (request.width, request.height))
