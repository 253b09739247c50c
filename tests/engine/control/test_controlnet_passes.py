"""ControlNet units with the SDXL refiner and tiled SD upscale, against diffusers' own pipelines; AND by hand.

Refiner: diffusers' SDXL ControlNet pipeline paints to the switch (``denoising_end``), its SDXL img2img refiner the
rest from those latents (``denoising_start``), as diffusers documents base + refiner. SD upscale: one 64×64 tile over
the whole Lanczos-enlarged picture is an "only masked" inpaint of all of it, so the reference is diffusers' ControlNet
inpaint pipeline on the enlarged picture with a white mask, the unit's map being that picture (a unit without one).
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers.paint_modes import generators, init_picture
from helpers.pixels import assert_pixels_close, pixels
from helpers.tiny_controlnet import save_folder, tiny_controlnet
from PIL import Image, ImageDraw

from jupyter_sd.engine import Engine
from jupyter_sd.engine.conditioning import build_conditioning
from jupyter_sd.engine.pictures import Pictures
from jupyter_sd.engine.schedulers import make_scheduler
from jupyter_sd.recipe.control_units import read_units
from jupyter_sd.recipe.request import PaintRequest


@pytest.fixture(scope="module")
def engine():
    return Engine()


def hint() -> Image.Image:
    image = Image.new("RGB", (16, 16))
    ImageDraw.Draw(image).rectangle([2, 4, 13, 11], outline=(255, 255, 255))
    return image


def test_a_unit_controls_the_base_steps_before_the_refiner(engine, tmp_path):
    import torch
    from diffusers import (
        StableDiffusionXLControlNetPipeline,
        StableDiffusionXLImg2ImgPipeline,
        StableDiffusionXLPipeline,
    )
    from helpers.tiny_sdxl import make_tiny_sdxl

    model, refiner = make_tiny_sdxl(tmp_path / "base"), make_tiny_sdxl(tmp_path / "refiner", seed=1)
    raw = StableDiffusionXLPipeline.from_pretrained(model)
    controlnet = tiny_controlnet(raw.unet, seed=4)
    folder = save_folder(controlnet, tmp_path / "cn_xl")
    base = StableDiffusionXLControlNetPipeline(**raw.components, controlnet=controlnet)
    second = StableDiffusionXLImg2ImgPipeline.from_pretrained(
        refiner, vae=raw.vae, text_encoder_2=raw.text_encoder_2, tokenizer_2=raw.tokenizer_2
    )
    for pipe in (base, second):
        pipe.set_progress_bar_config(disable=True)
        pipe.scheduler = make_scheduler("Euler", "Automatic", dict(raw.scheduler.config))
    generator = [torch.Generator().manual_seed(4)]
    latents = base(
        **build_conditioning(raw, "a red circle", "", 5).pipeline_kwargs(),
        image=hint(), controlnet_conditioning_scale=0.8, num_inference_steps=5, denoising_end=0.6,
        guidance_scale=7.0, width=16, height=16, output_type="latent", generator=generator,
    ).images  # fmt: skip
    expected = second(
        "a red circle", image=latents, num_inference_steps=5, denoising_start=0.6, guidance_scale=7.0,
        generator=generator,
    ).images[0]  # fmt: skip
    request = PaintRequest(
        prompt="a red circle", model=str(model), steps=5, seed=4, sampler="Euler", width=16, height=16, rng="cpu",
        refiner=str(refiner), refiner_switch=0.6, preview="none", save=False,
        controlnet=read_units([{"module": "none", "model": str(folder), "weight": 0.8}]),
    )  # fmt: skip
    result = engine.generate(request, pictures=Pictures(control=(hint(),)))
    assert_pixels_close(result.images[0], expected)
    assert "Refiner switch at: 0.6" in result.infotext(0) and "ControlNet 0: " in result.infotext(0)
    alone = engine.generate(request.replace(controlnet=()))
    assert np.abs(pixels(alone.images[0]) - pixels(expected)).max() > 5  # the unit changes the picture


def test_a_unit_controls_each_sd_upscale_tile(engine, tiny_model_dir):
    from diffusers import StableDiffusionControlNetInpaintPipeline, StableDiffusionPipeline

    raw = StableDiffusionPipeline.from_pretrained(tiny_model_dir, safety_checker=None)
    controlnet = tiny_controlnet(raw.unet, seed=2)
    folder = save_folder(controlnet, tiny_model_dir.parent / "cn_tiles")
    init = init_picture()
    enlarged = init.resize((64, 64), Image.LANCZOS)  # sd_upscaler None: Lanczos straight to the size
    pipe = StableDiffusionControlNetInpaintPipeline(**raw.components, controlnet=controlnet)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = make_scheduler("DPM++ 2M", "Automatic", dict(raw.scheduler.config))
    expected = pipe(
        **build_conditioning(raw, "a red circle", "", 4).pipeline_kwargs(),
        image=enlarged, mask_image=Image.new("L", (64, 64), 255), control_image=enlarged, strength=0.875,
        controlnet_conditioning_scale=0.9, num_inference_steps=4, guidance_scale=7.0, width=64, height=64,
        generator=generators([7]),
    ).images[0]  # fmt: skip
    request = PaintRequest(
        prompt="a red circle", model=str(tiny_model_dir), steps=4, seed=7, sampler="DPM++ 2M", rng="cpu",
        init="<object>", strength=0.6, sd_upscale=2, sd_upscaler="None", tile_width=64, tile_height=64,
        tile_padding=0, tile_mask_blur=0, preview="none", save=False,
        controlnet=read_units([{"module": "none", "model": str(folder), "weight": 0.9}]),
    )  # fmt: skip
    result = engine.generate(request, pictures=Pictures(init=init))
    assert_pixels_close(result.images[0], expected)
    plain = engine.generate(request.replace(controlnet=()), pictures=Pictures(init=init))
    assert np.abs(pixels(plain.images[0]) - pixels(expected)).max() > 5  # the unit changes the tile


AND_PROMPT = "a red circle AND a blue square :0.6"


def composed_reference(raw, net, steps=4, weight=0.8, end=0.5, important=False):
    """A1111's composable diffusion with sd-webui-controlnet, by hand over plain diffusers: each step the negative
    and each AND part get their own UNet call, with residuals the ControlNet makes from that call's own text (its
    weight, inside its window by diffusers' rule); the positive is ``u + Σ wᵢ·(cᵢ − u)``.

    `important` ("ControlNet is more important"): residual i scaled by ``weight × 0.825^(12−i)`` and none on the
    negative's call (the extension's cond/uncond mark: every AND part is a cond row)."""
    import torch

    raw.scheduler = make_scheduler("DPM++ 2M", "Automatic", dict(raw.scheduler.config))
    cond = build_conditioning(raw, AND_PROMPT, "", steps)
    uncond, parts = cond.uncond.at(0)[0], [(w, part.at(0)[0]) for w, part in cond.parts]
    hint_tensor = torch.from_numpy(np.asarray(hint(), np.float32) / 255).permute(2, 0, 1)[None]
    forward, step = raw.unet.forward, [0]

    def composed(sample, t, encoder_hidden_states, **kwargs):
        keep = not (step[0] / steps < 0 or (step[0] + 1) / steps > end)
        step[0] += 1
        x, outputs = sample[1:], []
        for n, text in enumerate([uncond] + [text for _, text in parts]):
            down, mid = net(x, t, encoder_hidden_states=text, controlnet_cond=hint_tensor,
                            conditioning_scale=(1.0 if important else weight) * keep, return_dict=False)  # fmt: skip
            if important:
                ladder = [weight * 0.825 ** (12 - i) * (n > 0) for i in range(len(down) + 1)]
                down, mid = [d * r for d, r in zip(down, ladder)], mid * ladder[-1]
            outputs.append(forward(x, t, text, down_block_additional_residuals=down,
                                   mid_block_additional_residual=mid, return_dict=False)[0])  # fmt: skip
        combined = outputs[0] + sum(w * (out - outputs[0]) for (w, _), out in zip(parts, outputs[1:]))
        return (torch.cat([outputs[0], combined]),)

    raw.unet.forward = composed
    try:
        return raw(prompt_embeds=parts[0][1], negative_prompt_embeds=uncond, num_inference_steps=steps,
                   guidance_scale=7.0, generator=generators([1]), width=16, height=16).images[0]  # fmt: skip
    finally:
        del raw.unet.forward


def test_and_prompts_give_each_part_its_own_controlnet_residuals(engine, tiny_model_dir):
    """``AND`` with a unit (window 0-0.5): the ControlNet runs again on each part's UNet call with that part's text,
    as sd-webui-controlnet's hook does; "ControlNet is more important" leaves the negative's call without control."""
    from diffusers import ControlNetModel, StableDiffusionPipeline

    raw = StableDiffusionPipeline.from_pretrained(tiny_model_dir, safety_checker=None)
    raw.set_progress_bar_config(disable=True)
    folder = save_folder(tiny_controlnet(raw.unet, seed=3), tiny_model_dir.parent / "cn_and")
    units = [{"module": "none", "model": str(folder), "weight": 0.8, "guidance_end": 0.5}]
    request = PaintRequest(
        prompt=AND_PROMPT, model=str(tiny_model_dir), steps=4, seed=1, width=16, height=16, rng="cpu",
        sampler="DPM++ 2M", preview="none", save=False, controlnet=read_units(units),
    )  # fmt: skip
    result = engine.generate(request, pictures=Pictures(control=(hint(),)))
    expected = composed_reference(raw, ControlNetModel.from_pretrained(folder))
    assert_pixels_close(result.images[0], expected)
    plain = composed_reference(raw, ControlNetModel.from_pretrained(folder), weight=0.0)
    assert np.abs(pixels(plain) - pixels(expected)).max() > 5  # the unit changes the picture: the test can fail
    important = request.replace(controlnet=read_units([{**units[0], "control_mode": 2}]))
    result = engine.generate(important, pictures=Pictures(control=(hint(),)))
    expected = composed_reference(raw, ControlNetModel.from_pretrained(folder), important=True)
    assert_pixels_close(result.images[0], expected)
    assert np.abs(pixels(plain) - pixels(expected)).max() > 5


def test_and_prompts_mask_every_parts_residuals(engine, tiny_model_dir):
    """A unit's effective region mask with ``AND``: each part's replayed ControlNet call is masked, as the
    extension's hook masks every call (the reference: the composed sum by hand, a mask hook on the ControlNet)."""
    import torch
    from diffusers import ControlNetModel, StableDiffusionPipeline

    raw = StableDiffusionPipeline.from_pretrained(tiny_model_dir, safety_checker=None)
    raw.set_progress_bar_config(disable=True)
    folder = save_folder(tiny_controlnet(raw.unet, seed=3), tiny_model_dir.parent / "cn_and_mask")
    mask = Image.new("L", (16, 16))
    mask.paste(255, (0, 0, 16, 8))  # the top half
    grid = torch.from_numpy(np.asarray(mask, np.float32) / 255)[None, None]

    def masked(module, args, output):
        down, mid = output
        scaled = [r * torch.nn.functional.interpolate(grid, size=r.shape[-2:], mode="bilinear") for r in [*down, mid]]
        return tuple(scaled[:-1]), scaled[-1]

    net = ControlNetModel.from_pretrained(folder)
    net.register_forward_hook(masked)
    expected = composed_reference(raw, net)
    units = [{"module": "none", "model": str(folder), "weight": 0.8, "guidance_end": 0.5}]
    request = PaintRequest(
        prompt=AND_PROMPT, model=str(tiny_model_dir), steps=4, seed=1, width=16, height=16, rng="cpu",
        sampler="DPM++ 2M", preview="none", save=False, controlnet=read_units(units),
    )  # fmt: skip
    result = engine.generate(request, pictures=Pictures(control=(hint(),), control_masks=(mask,)))
    assert_pixels_close(result.images[0], expected)
    unmasked = engine.generate(request, pictures=Pictures(control=(hint(),)))
    assert np.abs(pixels(unmasked.images[0]) - pixels(expected)).max() > 3  # the mask changes the picture
