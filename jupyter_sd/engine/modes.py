"""One pass function per mode, over the same loaded components: txt2img, img2img, inpaint, then the hires pass.

Each mode's pipeline is made from the loaded one (mode_pipelines.py); what a pass starts from (its noise, the init's
latents, the hires enlargement, inpaint's masked content) is latents.py's; the ControlNet units' arguments and the
start noise an ``inpaint_only+lama`` unit mixes are control/wiring.py's. `PassRunner` runs one pipeline call with
live x0 previews and the engine's stop; the functions here decide which passes a request takes and what goes into
and out of each.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable

from PIL import Image

from ..recipe.request import PaintRequest
from . import pictures as pics
from .control.apply import check_conditioning
from .control.flow_units import control_for
from .control.masked_area import cropped
from .control.wiring import lama_mix, pass_arguments
from .families import family_of
from .init_noise import noise_init, override_noise
from .latents import enlarged, masked_content, own_noise, start_noise
from .mode_pipelines import derived_pipeline, execution_device, sized
from .passes import PassRunner
from .pictures import Pictures
from .plan import hires_sampler, hires_steps, img2img_steps, pipeline_strength
from .seeds import NoiseSource, needs_own_noise

__all__ = ["Condition", "Pictures", "paint_batch"]


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
        call.update(pass_arguments(control, pipe, "txt2img", size, seeds, subseeds, runner))
    noise.mix = lama_mix(control, pipe, seeds[0])  # inpaint_only+lama's start noise (control/wiring.py)
    if needs_own_noise(request) or noise.mix:
        call["latents"] = start_noise(pipe, request, subseeds, size, noise)
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
    latents = enlarged(pipe, request, family.to_spatial(pipe, latents, (request.width, request.height)), seeds, runner)
    size = (latents.shape[3] * factor, latents.shape[2] * factor)
    img2img = derived_pipeline(pipe, "img2img", control and control.model)
    sampler, schedule = hires_sampler(request)
    img2img.scheduler = runner.scheduler(sampler, schedule)
    noise = source()  # a fresh ImageRNG at the new size, as A1111's hires pass makes (no LaMa mix: another size)
    if needs_own_noise(request):
        override_noise(img2img.scheduler, *own_noise(pipe, request, subseeds, size, noise))
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
        first_size = (request.width, request.height)
        call.update(pass_arguments(control, img2img, "img2img", size, seeds, subseeds, runner, first_size))
    call = sized(img2img, call, size)
    conditioning = condition(img2img, request.hires_prompt or request.prompt, request.steps, run)
    check_conditioning(control, conditioning)
    images, _ = runner.run(img2img, call, 1, size, conditioning, noise)
    return images


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
    kind = "inpaint" if request.mode == "inpaint" else "img2img"
    derived = derived_pipeline(pipe, kind, control and control.model)
    derived.scheduler = runner.scheduler(request.sampler)
    strength = pipeline_strength(img2img_steps(request)[1], request.steps, family_of(pipe).flow)
    call = {**common, "strength": strength, "generator": generators()}
    noise = source()

    def start(control: Any) -> None:
        """The units' arguments and the pass's noise (after them: an inpaint_only+lama unit's map mixes into it)."""
        if control:
            call.update(pass_arguments(control, derived, kind, size, seeds, subseeds, runner))
        noise.mix = lama_mix(control, pipe, seeds[0])
        if needs_own_noise(request) or noise.mix:
            noise_init(derived.scheduler, call, kind == "inpaint", *own_noise(pipe, request, subseeds, size, noise))

    if kind == "img2img":
        start(control)
        call = sized(derived, {**call, "image": pics.resize_image(request.resize_mode, init, *size)}, size)
        conditioning = condition(derived, request.prompt, request.steps)
        check_conditioning(control, conditioning)
        images, _ = runner.run(derived, call, 0, size, conditioning, noise)
        return images
    return _inpaint(derived, pipe, request, seeds, init, pictures.mask, runner, call, condition, control, start, noise)


def _inpaint(
    derived: Any,
    pipe: Any,
    request: PaintRequest,
    seeds: list[int],
    init: Image.Image,
    mask: Image.Image,
    runner: PassRunner,
    call: dict[str, Any],
    condition: Condition,
    control: Any,
    start: Callable[[Any], None],
    noise: NoiseSource,
) -> list[Image.Image]:
    """The inpaint pass: the mask fitted, the whole picture or only the masked area painted, the rest pasted back.

    `start(control)` adds the units' arguments and the noise once the units are final ("only masked" crops them).
    """
    size = (request.width, request.height)
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
        overlay, original = blurred, init
    else:
        region = None
        painted_init = pics.resize_image(request.resize_mode, init, *size)
        paint_mask = pics.resize_image(request.resize_mode, sharp, *size)
        blurred = pics.gaussian_blur(paint_mask, request.mask_blur)
        overlay, original = pics.whole_overlay(blurred), painted_init
    start(control)
    fill_mask = pics.gaussian_blur(paint_mask, request.mask_blur)
    call.update(masked_content(derived, request, painted_init, paint_mask, fill_mask, seeds))
    call.update(mask_image=paint_mask, height=size[1], width=size[0])
    conditioning = condition(derived, request.prompt, request.steps)
    check_conditioning(control, conditioning)
    images, _ = runner.run(derived, call, 0, size, conditioning, noise)
    return [pics.paste_back(image, original, overlay, region) for image in images]
