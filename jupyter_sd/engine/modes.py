"""One pass function per mode, over the same loaded components: txt2img, img2img, inpaint, then the hires pass.

img2img and inpaint pipelines are made from the loaded one with diffusers' ``from_pipe`` (AutoPipelineForImage2Image
/ AutoPipelineForInpainting): they share its modules, so switching modes loads nothing and takes no memory, and the
engine's cache key stays the txt2img one. `PassRunner` runs one pipeline call with live x0 previews and the
engine's stop; the functions here decide which passes a request takes and what goes into and out of each.
"""

from __future__ import annotations

import contextlib
import inspect
from typing import Any, Callable

from PIL import Image

from ..recipe.fields import IMAGE_UPSCALERS, LATENT_UPSCALERS
from ..recipe.request import PaintRequest
from ..recipe.values import parse_size
from . import pictures as pics
from .control.apply import check_conditioning
from .control.flow_units import control_for, controlnet_pipeline
from .control.masked_area import cropped
from .control.union import is_union_model, union_pipeline
from .families import family_of
from .families.flow import takes_latents
from .init_noise import noise_init, override_noise
from .passes import PassRunner
from .pictures import Pictures
from .plan import hires_sampler, hires_steps, img2img_steps, pipeline_strength
from .preview import decode_latents, to_pil
from .seeds import NoiseSource, image_noise, needs_own_noise

__all__ = ["Pictures", "paint_batch"]


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
            derived = getattr(diffusers, declared).from_pipe(pipe)
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


Condition = Callable[..., Any]
"""``condition(pass_pipe, prompt, steps, hires_steps=None)`` → the pass's conditioning (see conditioning.py)."""


class _PlainText:
    """Conditioning by the text itself, for callers without the engine's (diffusers encodes the prompt)."""

    def __init__(self, prompt: str, negative: str) -> None:
        self.kwargs = {"prompt": prompt, "negative_prompt": negative or None}

    def pipeline_kwargs(self) -> dict[str, Any]:
        return dict(self.kwargs)

    def on_step(self, pipe: Any, index: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        return tensors

    def applied(self, pipe: Any) -> Any:
        return contextlib.nullcontext()


def paint_batch(
    pipe: Any,
    request: PaintRequest,
    seeds: list[int],
    subseeds: list[int],
    pictures: Pictures | None,
    runner: PassRunner,
    condition: Condition | None = None,
) -> list[Image.Image]:
    """Paint one batch through the request's passes; return its pictures (the last x0 ones when stopped).

    `condition` makes each pass's conditioning (the engine's: A1111 prompt syntax as embeddings); without it the
    prompt goes to diffusers as text.
    """
    import torch

    condition = condition or (
        lambda pipe_, prompt, steps, hires_steps=None: _PlainText(prompt, request.negative_prompt)
    )

    def generators() -> list[Any]:
        return [torch.Generator("cpu").manual_seed(seed) for seed in seeds]

    def source(gens: list[Any] | None = None) -> NoiseSource:
        """The pass's per-image noise: with ``cpu`` the generators handed to diffusers, else the request's own."""
        if request.rng == "cpu":
            return NoiseSource("cpu", seeds, "cpu", gens if gens is not None else generators())
        return NoiseSource(request.rng, seeds, execution_device(pipe))

    common = {
        "num_inference_steps": request.steps,
        **family_of(pipe).guidance_kwargs(request.guidance, request.distilled_cfg),
        "num_images_per_prompt": len(seeds),
    }
    control = control_for(pipe, request, pictures, runner.progress.notice)  # ControlNet units (engine/control/)
    if control:
        runner.result.params.update(control.infotext(request.hires_enabled))
    if request.init:
        args = (pipe, request, seeds, subseeds, pictures, runner, common, generators, source, condition, control)
        return _paint_from_init(*args)
    base, units = pipe, control
    control = control and control.for_pass(hires=False) if request.hires_enabled else control  # "Hr Option"
    pipe = derived_pipeline(pipe, "txt2img", control and control.model)
    pipe.scheduler = runner.scheduler(request.sampler)
    gens = generators()
    noise = source(gens)
    size = (request.width, request.height)
    call = {**common, "width": request.width, "height": request.height, "generator": gens}
    if control:
        call.update(control.kwargs(pipe, "txt2img", *size, seeds[0], subseeds[0]))
        control.report(runner.result, runner.progress)
    if needs_own_noise(request):
        call["latents"] = _noise(pipe, request, subseeds, size, noise)
    first = condition(pipe, request.prompt, request.steps)
    check_conditioning(control, first)
    if not request.hires_enabled:
        images, _ = runner.run(pipe, call, 0, size, first, noise)
        return images
    latents, stopped = runner.run(pipe, {**call, "output_type": "latent"}, 0, size, first, noise)
    if stopped:
        return latents
    args = (base, request, seeds, subseeds, latents, runner, condition, generators, source)
    return _hires_pass(*args, units and units.for_pass(hires=True))


def execution_device(pipe: Any) -> Any:
    """The device the pipeline computes on (the GPU even while offloading keeps the weights elsewhere)."""
    device = getattr(pipe, "_execution_device", None)
    return device if device is not None else pipe.device


def _noise(
    pipe: Any, request: PaintRequest, subseeds: list, size: tuple, source: NoiseSource, packed: bool = True
) -> Any:
    """The starting noise of a pass at `size` (pixels) from `source`, on the pipeline's device and dtype.

    As the txt2img pipeline's ``latents=`` takes it (Flux: packed), or (B, C, H, W) when not `packed`.
    """
    channels = getattr(pipe.vae.config, "latent_channels", None) or pipe.vae.config.z_dim  # (Qwen-Image's: z_dim)
    factor = int(getattr(pipe, "vae_scale_factor", 8))
    resize_from = parse_size(request.seed_resize_from) if request.seed_resize_from else None
    shape = (channels, size[1] // factor, size[0] // factor)
    noise = source.first(shape, subseeds, request.variation_strength, resize_from)
    denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
    noise = noise.to(pipe.device, denoiser.dtype)
    return family_of(pipe).to_pipeline_latents(pipe, noise) if packed else noise


def _own_noise(pipe: Any, request: PaintRequest, subseeds: list, size: tuple, source: NoiseSource) -> tuple:
    """An init pass's noise (B, C, H, W) and, for packed families, the same as the pipeline's packed latents."""
    noise = _noise(pipe, request, subseeds, size, source, packed=False)
    family = family_of(pipe)
    return noise, (family.to_pipeline_latents(pipe, noise) if family.packed_latents else None)


def _sized(pipe: Any, call: dict[str, Any], size: tuple[int, int]) -> dict[str, Any]:
    """`call` with the size painted, for pipelines whose img2img takes one.

    The flow families' take it: without it their default (1024 px) would resize the init.
    """
    if "height" in inspect.signature(type(pipe).__call__).parameters:
        return {**call, "width": size[0], "height": size[1]}
    return call


def _hires_pass(
    pipe: Any,
    request: PaintRequest,
    seeds: list[int],
    subseeds: list[int],
    latents: Any,
    runner: PassRunner,
    condition: Condition,
    generators: Callable[[], list],
    source: Callable[..., NoiseSource],
    control: Any = None,
) -> list[Image.Image]:
    """A1111's hires fix: enlarge the first pass, then img2img from fresh noise of the same seeds at the new size.

    `control`: the units of this pass (Hr Option ``Both`` or ``High res only``), their maps fitted to the new size.
    """
    factor = int(getattr(pipe, "vae_scale_factor", 8))
    family = family_of(pipe)
    latents = _enlarged(pipe, request, family.to_spatial(pipe, latents, (request.width, request.height)), seeds, runner)
    size = (latents.shape[3] * factor, latents.shape[2] * factor)
    img2img = derived_pipeline(pipe, "img2img", control and control.model)
    sampler, schedule = hires_sampler(request)
    img2img.scheduler = runner.scheduler(sampler, schedule)
    noise = source()  # a fresh ImageRNG at the new size, as A1111's hires pass makes
    if needs_own_noise(request):
        override_noise(img2img.scheduler, *_own_noise(pipe, request, subseeds, size, noise))
    scheduled, strength = hires_steps(request)
    run = request.hires_steps or request.steps
    call = {
        "image": latents,
        "strength": pipeline_strength(strength, scheduled, family.flow),
        "num_inference_steps": scheduled,
        **family.guidance_kwargs(request.hires_guidance or request.guidance, request.distilled_cfg),
        "num_images_per_prompt": len(seeds),  # one prompt, a batch of latents: batch size = images per prompt
        "generator": generators(),
    }
    if control:
        call.update(
            control.kwargs(img2img, "img2img", *size, seeds[0], subseeds[0], base=(request.width, request.height))
        )
        control.report(runner.result, runner.progress, first=False)
    call = _sized(img2img, call, size)
    conditioning = condition(img2img, request.hires_prompt or request.prompt, request.steps, run)
    check_conditioning(control, conditioning)
    images, _ = runner.run(img2img, call, 1, size, conditioning, noise)
    return images


def _enlarged(pipe: Any, request: PaintRequest, latents: Any, seeds: list[int], runner: PassRunner) -> Any:
    """The first pass's (B, C, H, W) latents enlarged to the hires size (in latent space or as pictures), cropped."""
    to_x, to_y, excess_x, excess_y = request.hires_target()
    factor = int(getattr(pipe, "vae_scale_factor", 8))
    truncate_x, truncate_y = excess_x // factor, excess_y // factor
    if request.hires_upscaler in LATENT_UPSCALERS:
        mode, antialias = LATENT_UPSCALERS[request.hires_upscaler]
        latents = family_of(pipe).enlarge(pipe, latents, (to_y // factor, to_x // factor), mode, antialias)
    else:
        images = to_pil(pipe, decode_latents(pipe, latents))
        if request.hires_upscaler in IMAGE_UPSCALERS:
            resample = Image.LANCZOS if request.hires_upscaler == "Lanczos" else Image.NEAREST
            images = [image.resize((to_x, to_y), resample) for image in images]
        else:  # an upscaler model from the models folder (upscalers.py)
            from .upscalers import upscaler_for

            model = upscaler_for(pipe, request.hires_upscaler, request.allow_pickle, runner.progress.notice)
            images = [model.upscale(image, to_x, to_y) for image in images]
        latents = _encode(pipe, images, seeds)
    height, width = latents.shape[2], latents.shape[3]
    latents = latents[
        :, :, truncate_y // 2 : height - (truncate_y + 1) // 2, truncate_x // 2 : width - (truncate_x + 1) // 2
    ]
    if family_of(pipe).packed_latents:  # whole 2×2 patches (Flux): an odd latent row or column is cropped off
        latents = latents[:, :, : latents.shape[2] // 2 * 2, : latents.shape[3] // 2 * 2]
    return latents


def _encode(pipe: Any, images: list[Image.Image], seeds: list[int]) -> Any:
    """Encode pictures to sampler-space latents (each sampled with its own seed, as diffusers' img2img does)."""
    import torch

    family = family_of(pipe)
    tensor = pipe.image_processor.preprocess(images).to(pipe.device, pipe.vae.dtype)
    with torch.no_grad():
        latents = [
            family.encode(pipe, tensor[i : i + 1], torch.Generator("cpu").manual_seed(seed))
            for i, seed in enumerate(seeds)
        ]
    return torch.cat(latents)


def _paint_from_init(
    pipe: Any,
    request: PaintRequest,
    seeds: list[int],
    subseeds: list[int],
    pictures: Pictures | None,
    runner: PassRunner,
    common: dict[str, Any],
    generators: Callable[[], list],
    source: Callable[..., NoiseSource],
    condition: Condition,
    control: Any = None,
) -> list[Image.Image]:
    """img2img and inpaint: fit the init (and mask), paint, paste the original back outside the mask."""
    if pictures is None or pictures.init is None:
        msg = f"init: the picture '{request.init}' was not loaded (paint through paint()/%%paint, or pass pictures=)"
        raise ValueError(msg)
    size = (request.width, request.height)
    init = pics.flatten(pictures.init)
    mode = request.mode
    kind = "inpaint" if mode == "inpaint" else "img2img"
    derived = derived_pipeline(pipe, kind, control and control.model)
    derived.scheduler = runner.scheduler(request.sampler)
    gens = generators()
    noise = source()
    strength = pipeline_strength(img2img_steps(request)[1], request.steps, family_of(pipe).flow)
    call = {**common, "strength": strength, "generator": gens}
    if control and not (mode == "inpaint" and request.inpaint_area == "masked"):  # that one is cropped first
        call.update(_control_kwargs(control, derived, kind, size, seeds, subseeds, runner))
    if needs_own_noise(request):
        noise_init(derived.scheduler, call, mode == "inpaint", *_own_noise(pipe, request, subseeds, size, noise))
    if mode == "img2img":
        call = _sized(derived, {**call, "image": pics.resize_image(request.resize_mode, init, *size)}, size)
        conditioning = condition(derived, request.prompt, request.steps)
        check_conditioning(control, conditioning)
        images, _ = runner.run(derived, call, 0, size, conditioning, noise)
        return images
    mask = pictures.mask
    if mask.size != init.size:
        runner.progress.notice(f"mask: {mask.width}x{mask.height} resized to the init's {init.width}x{init.height}")
        mask = mask.resize(init.size, Image.LANCZOS)
    sharp = pics.repaint_mask(mask, request.invert_mask)
    if sharp.getbbox() is None:
        msg = "mask: no part of it is white, so nothing would be repainted (white = repaint; see --invert-mask)"
        raise ValueError(msg)
    if request.inpaint_area == "masked":
        blurred = pics.gaussian_blur(sharp, request.mask_blur)
        region = pics.crop_region(blurred, request.padding)
        region = pics.expand_crop_region(region, *size, init.width, init.height)
        painted_init = pics.resize_image(2, init.crop(region), *size)
        paint_mask = pics.resize_image(2, sharp.crop(region), *size)
        if control:  # the units' pictures cut to the same region (sd-webui-controlnet)
            control = cropped(control, init.size, region, size)
            call.update(_control_kwargs(control, derived, kind, size, seeds, subseeds, runner))
        overlay, original = blurred, init
    else:
        region = None
        painted_init = pics.resize_image(request.resize_mode, init, *size)
        paint_mask = pics.resize_image(request.resize_mode, sharp, *size)
        blurred = pics.gaussian_blur(paint_mask, request.mask_blur)
        overlay, original = pics.whole_overlay(blurred), painted_init
    fill_mask = pics.gaussian_blur(paint_mask, request.mask_blur)
    call.update(_masked_content(derived, request, painted_init, paint_mask, fill_mask, seeds))
    call.update(mask_image=paint_mask, height=size[1], width=size[0])
    conditioning = condition(derived, request.prompt, request.steps)
    check_conditioning(control, conditioning)
    images, _ = runner.run(derived, call, 0, size, conditioning, noise)
    return [pics.paste_back(image, original, overlay, region) for image in images]


def _control_kwargs(control: Any, pipe: Any, kind: str, size: tuple, seeds: list, subseeds: list, runner: Any) -> dict:
    """The units' arguments of a pass painting `size`; their detected maps go on the result and to the views."""
    kwargs = control.kwargs(pipe, kind, *size, seeds[0], subseeds[0])
    control.report(runner.result, runner.progress)
    return kwargs


def _masked_content(
    pipe: Any, request: PaintRequest, init: Image.Image, mask: Image.Image, blurred: Image.Image, seeds: list[int]
) -> dict[str, Any]:
    """What the masked area starts from: the init (``original``), its surroundings (``fill``), or latents."""
    if request.masked_content == "original":
        return {"image": init}
    if request.masked_content == "fill":
        return {"image": pics.fill_masked(init, blurred)}
    import numpy as np
    import torch

    latents = _encode(pipe, [init] * len(seeds), seeds)
    small = mask.resize((latents.shape[3], latents.shape[2]))
    keep = torch.from_numpy(1.0 - np.around(np.asarray(small, dtype=np.float32) / 255.0))[None, None]
    keep = keep.to(latents.device, latents.dtype)
    if request.masked_content == "latent noise":
        noise = image_noise(tuple(latents.shape[1:]), seeds, rng=request.rng, device=execution_device(pipe))
        noise = noise.to(latents.device, latents.dtype)
        latents = latents * keep + noise * (1 - keep)
    else:
        latents = latents * keep
    masked = latents
    if getattr(getattr(pipe, "unet", None), "config", None) is not None and pipe.unet.config.in_channels == 9:
        grey = Image.new("RGB", init.size, (128, 128, 128))  # 0 in the VAE's [-1, 1], as diffusers masks it
        hidden = Image.composite(grey, init, mask.point(lambda x: 255 if x >= 128 else 0))
        masked = _encode(pipe, [hidden] * len(seeds), seeds)
    return {"image": latents, "masked_image_latents": masked}
