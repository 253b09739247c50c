"""ControlNet units on SDXL: diffusers' own StableDiffusionXLControlNetPipeline's pixels, AND prompts by hand, and
an SD1.5-width ControlNet refused in one line."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.paint_modes import generators
from helpers.pixels import assert_pixels_close, pixels
from helpers.tiny_controlnet import save_folder, save_single_file, tiny_controlnet
from PIL import Image, ImageDraw

from jupyter_sd.engine import Engine
from jupyter_sd.engine.conditioning import build_conditioning
from jupyter_sd.engine.pictures import Pictures
from jupyter_sd.engine.schedulers import make_scheduler
from jupyter_sd.recipe.control_units import read_units
from jupyter_sd.recipe.request import PaintRequest


def test_sdxl_unit_equals_diffusers_and_an_sd15_controlnet_is_refused(tmp_path, tiny_model_dir):
    from diffusers import StableDiffusionPipeline, StableDiffusionXLControlNetPipeline, StableDiffusionXLPipeline
    from helpers.tiny_sdxl import make_tiny_sdxl

    model = make_tiny_sdxl(tmp_path / "sdxl")
    raw = StableDiffusionXLPipeline.from_pretrained(model)
    controlnet = tiny_controlnet(raw.unet, seed=4)
    folder = save_folder(controlnet, tmp_path / "cn_xl")
    hint = Image.new("RGB", (16, 16))
    ImageDraw.Draw(hint).rectangle([2, 4, 13, 11], outline=(255, 255, 255))
    reference = StableDiffusionXLControlNetPipeline(**raw.components, controlnet=controlnet)
    reference.set_progress_bar_config(disable=True)
    reference.scheduler = make_scheduler("DPM++ 2M", "Automatic", dict(raw.scheduler.config))
    embeddings = build_conditioning(raw, "a red circle", "", 4).pipeline_kwargs()
    call = {"num_inference_steps": 4, "guidance_scale": 7.0, "width": 16, "height": 16}
    expected = reference(
        **embeddings, **call, image=hint, controlnet_conditioning_scale=0.7, generator=generators([1])
    ).images[0]
    request = PaintRequest(
        prompt="a red circle",
        model=str(model),
        steps=4,
        seed=1,
        width=16,
        height=16,
        rng="cpu",
        preview="none",
        save=False,
        sampler="DPM++ 2M",
        controlnet=read_units([{"module": "none", "model": str(folder), "weight": 0.7}]),
    )
    engine = Engine()
    result = engine.generate(request, pictures=Pictures(control=(hint,)))
    assert_pixels_close(result.images[0], expected)
    reference.scheduler = make_scheduler("DPM++ 2M", "Automatic", dict(raw.scheduler.config))
    plain = reference(**embeddings, **call, image=hint, controlnet_conditioning_scale=0.0, generator=generators([1]))
    assert np.abs(pixels(plain.images[0]) - pixels(expected)).max() > 5  # the unit changes the picture

    sd15 = StableDiffusionPipeline.from_pretrained(tiny_model_dir, safety_checker=None)
    narrow = save_single_file(tiny_controlnet(sd15.unet), tmp_path / "sd15_cn.safetensors")
    with pytest.raises(ValueError, match="sd15_cn.safetensors is a width 32 ControlNet") as error:
        engine.generate(
            request.replace(controlnet=read_units([{"module": "none", "model": str(narrow)}])),
            pictures=Pictures(control=(hint,)),
        )
    assert "\n" not in str(error.value)


def test_sdxl_hires_pass_with_a_unit_equals_diffusers(tmp_path):
    """Hr Option Both on SDXL: diffusers' SDXL ControlNet txt2img to latents, a bilinear ×2, then its SDXL ControlNet
    img2img with the map at the hires size (the unit's picture is the 16×16 hint's 2×2 blocks at 32×32)."""
    import torch
    from diffusers import (
        StableDiffusionXLControlNetImg2ImgPipeline,
        StableDiffusionXLControlNetPipeline,
        StableDiffusionXLPipeline,
    )
    from helpers.tiny_sdxl import make_tiny_sdxl

    model = make_tiny_sdxl(tmp_path / "sdxl")
    raw = StableDiffusionXLPipeline.from_pretrained(model)
    controlnet = tiny_controlnet(raw.unet, seed=4)
    folder = save_folder(controlnet, tmp_path / "cn_xl")
    hint = Image.new("RGB", (16, 16))
    ImageDraw.Draw(hint).rectangle([2, 4, 9, 11], fill=(255, 255, 255))  # filled: the 32×32 picture fits to it exactly
    big = hint.resize((32, 32), Image.NEAREST)
    embeddings = build_conditioning(raw, "a red circle", "", 4).pipeline_kwargs()
    first = StableDiffusionXLControlNetPipeline(**raw.components, controlnet=controlnet)
    first.scheduler = make_scheduler("DPM++ 2M", "Automatic", dict(raw.scheduler.config))
    call = {"guidance_scale": 7.0, "generator": generators([1])}
    latents = first(
        **embeddings, **call, num_inference_steps=4, width=16, height=16, image=hint, output_type="latent"
    ).images
    latents = torch.nn.functional.interpolate(latents, scale_factor=2, mode="bilinear", antialias=False)
    second = StableDiffusionXLControlNetImg2ImgPipeline(**raw.components, controlnet=controlnet)
    second.set_progress_bar_config(disable=True)
    second.scheduler = make_scheduler("DPM++ 2M", "Automatic", dict(raw.scheduler.config))
    expected = second(
        **embeddings,
        **{**call, "generator": generators([1])},
        image=latents,
        control_image=big,
        controlnet_conditioning_scale=1.0,
        num_inference_steps=4,
        strength=0.5,
        width=32,
        height=32,
    ).images[0]
    request = PaintRequest(
        prompt="a red circle",
        model=str(model),
        steps=4,
        seed=1,
        width=16,
        height=16,
        rng="cpu",
        preview="none",
        save=False,
        sampler="DPM++ 2M",
        hires=2,
        hires_steps=2,
        hires_denoise=0.5,
        controlnet=read_units([{"module": "none", "model": str(folder)}]),
    )
    result = Engine().generate(request, pictures=Pictures(control=(big,)))
    assert result.images[0].size == (32, 32)
    assert_pixels_close(result.images[0], expected)


def test_sdxl_and_prompt_parts_get_their_own_controlnet_residuals(tmp_path):
    """``AND`` on SDXL with a unit: each part's UNet call gets residuals the ControlNet makes from that part's text and
    pooled embedding (and the call's time ids), summed as A1111's composable diffusion, computed here by hand."""
    import torch
    from diffusers import StableDiffusionXLPipeline
    from helpers.tiny_sdxl import make_tiny_sdxl

    model = make_tiny_sdxl(tmp_path / "sdxl")
    raw = StableDiffusionXLPipeline.from_pretrained(model)
    raw.set_progress_bar_config(disable=True)
    raw.scheduler = make_scheduler("DPM++ 2M", "Automatic", dict(raw.scheduler.config))
    controlnet = tiny_controlnet(raw.unet, seed=4)
    folder = save_folder(controlnet, tmp_path / "cn_xl")
    hint = Image.new("RGB", (16, 16))
    ImageDraw.Draw(hint).rectangle([2, 4, 13, 11], outline=(255, 255, 255))
    hint_tensor = torch.from_numpy(np.asarray(hint, np.float32) / 255).permute(2, 0, 1)[None]
    prompt = "a red circle AND a blue square :0.7"
    cond = build_conditioning(raw, prompt, "", 4)
    rows = [cond.uncond.at(0)] + [part.at(0) for _, part in cond.parts]
    forward = raw.unet.forward

    def composed(sample, t, encoder_hidden_states, added_cond_kwargs, **kwargs):
        outputs = []
        for text, pooled in rows:
            added = {"text_embeds": pooled, "time_ids": added_cond_kwargs["time_ids"][1:]}
            down, mid = controlnet(sample[1:], t, encoder_hidden_states=text, controlnet_cond=hint_tensor,
                                   conditioning_scale=0.7, added_cond_kwargs=added, return_dict=False)  # fmt: skip
            residuals = {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
            outputs.append(forward(sample[1:], t, text, added_cond_kwargs=added, return_dict=False, **residuals)[0])
        combined = outputs[0] + sum(w * (out - outputs[0]) for (w, _), out in zip(cond.parts, outputs[1:]))
        return (torch.cat([outputs[0], combined]),)

    raw.unet.forward = composed
    call = {"num_inference_steps": 4, "guidance_scale": 7.0, "width": 16, "height": 16, "generator": generators([1])}
    expected = raw(**cond.pipeline_kwargs(), **call).images[0]
    del raw.unet.forward
    request = PaintRequest(
        prompt=prompt, model=str(model), steps=4, seed=1, width=16, height=16, rng="cpu", preview="none", save=False,
        sampler="DPM++ 2M", controlnet=read_units([{"module": "none", "model": str(folder), "weight": 0.7}]),
    )  # fmt: skip
    engine = Engine()
    result = engine.generate(request, pictures=Pictures(control=(hint,)))
    assert_pixels_close(result.images[0], expected)
    without = engine.generate(request.replace(controlnet=()))
    assert np.abs(pixels(without.images[0]) - pixels(expected)).max() > 5  # the unit changes the picture
