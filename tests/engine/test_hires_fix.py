"""The hires fix through Engine.generate: A1111's second pass, against a plain-diffusers reference.

The reference (`raw_hires`) is built from plain diffusers calls: txt2img to latents, a bilinear ×2, then img2img from
fresh generators of the same seeds; pixels are compared within 1/255. The generation data of a hires (and an
inpaint) picture, pasted back, paints the same pixels.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.paint_modes import box_mask, generators, init_picture, raw_pipelines, tiny_request
from helpers.pixels import assert_pixels_close, pixels
from helpers.progress_recorder import Recorder

from jupyter_sd.engine import Engine
from jupyter_sd.engine.pictures import Pictures
from jupyter_sd.engine.schedulers import make_scheduler
from jupyter_sd.recipe.paste import request_from_infotext


@pytest.fixture(scope="module")
def engine():
    return Engine()


@pytest.fixture(scope="module")
def raw(tiny_model_dir):
    """Plain diffusers pipelines, loaded on their own (not the engine's objects)."""
    return raw_pipelines(tiny_model_dir)


def raw_hires(raw, seeds, hires_sampler="DPM++ 2M", hires_schedule="Automatic", hires_guidance=7.0):
    """Plain diffusers' A1111 hires fix: DPM++ 2M txt2img at 16×16 (6 steps, CFG 7) to latents → bilinear ×2 →
    img2img from fresh generators of the same seeds, 4 of int(4 / 0.5) = 8 scheduled steps."""
    raw["txt2img"].scheduler = make_scheduler("DPM++ 2M", "Automatic", raw["config"])
    latents = raw["txt2img"](
        "a red circle",
        num_inference_steps=6,
        guidance_scale=7.0,
        width=16,
        height=16,
        num_images_per_prompt=len(seeds),
        generator=generators(seeds),
        output_type="latent",
    ).images
    big = torch.nn.functional.interpolate(latents, size=(16, 16), mode="bilinear", antialias=False)
    raw["img2img"].scheduler = make_scheduler(hires_sampler, hires_schedule, raw["config"])
    return raw["img2img"](
        "a red circle",
        image=big,
        strength=0.5,
        num_inference_steps=int(4 / min(0.5, 0.999)),  # 8 steps scheduled, int(8 × 0.5) = 4 run
        guidance_scale=hires_guidance,
        num_images_per_prompt=len(seeds),
        generator=generators(seeds),
    ).images


def test_hires_equals_plain_diffusers_reference(engine, raw, tiny_model_dir):
    """txt2img to latents → interpolate ×2 → img2img from fresh generators of the same seeds (A1111's hires fix)."""
    expected = raw_hires(raw, [5, 6])
    recorder = Recorder()
    request = tiny_request(tiny_model_dir, seed=5, n=2, width=16, height=16, hires=2, hires_steps=4, hires_denoise=0.5)
    result = engine.generate(request, recorder)
    assert [image.size for image in result.images] == [(32, 32), (32, 32)]  # the size doubles
    for ours, theirs in zip(result.images, expected):
        assert_pixels_close(ours, theirs)
    assert recorder.phases == [("txt2img", 0, 2, 6), ("hires", 1, 2, 4)]
    assert recorder.steps[-1] == (4, 4) and result.steps_total == 10
    text = result.infotext(1)
    assert "Seed: 6, Size: 16x16" in text  # Size stays the first pass's
    assert "Denoising strength: 0.5, RNG: CPU, Hires upscale: 2, Hires steps: 4, Hires upscaler: Latent" in text


def test_hires_runs_exactly_the_hires_steps(engine, tiny_model_dir):
    """A1111 runs `hires_steps` of int(hires_steps / denoise) (its t_enc + 1), even where int(N·denoise) rounds down."""
    recorder = Recorder()
    request = tiny_request(
        tiny_model_dir, steps=2, width=16, height=16, hires=1.5, hires_steps=10, hires_denoise=0.7, preview="none"
    )
    result = engine.generate(request, recorder)
    assert recorder.phases[-1] == ("hires", 1, 2, 10) and recorder.steps[-1] == (10, 10)
    assert result.images[0].size == (24, 24)


@pytest.mark.parametrize("upscaler", ["Lanczos", "Nearest", "Latent (nearest-exact)", "Latent (bicubic antialiased)"])
def test_hires_upscalers_and_resize(engine, tiny_model_dir, upscaler):
    request = tiny_request(
        tiny_model_dir,
        steps=2,
        width=16,
        height=16,
        hires_size="32x24",
        hires_upscaler=upscaler,
        hires_sampler="Euler a",
        hires_prompt="a blue fox",
        preview="none",
    )
    result = engine.generate(request)
    assert result.images[0].size == (32, 24)  # covered at 32x32, then cropped to the asked size as A1111
    text = result.infotext(0)
    # A1111 v1.10's order, as its PNGs carry it (infotext.A1111_ORDER)
    assert f"Hires prompt: a blue fox, Hires resize: 32x24, Hires upscaler: {upscaler}, Hires sampler: Euler a" in text


def test_hires_schedule_and_cfg_equal_plain_diffusers(engine, raw, tiny_model_dir):
    """A1111's "Hires schedule type" and the "Hires CFG Scale" of Forge and hires-fix-tweaks: the hires pass alone
    uses them (here Euler with Karras sigmas at CFG 4 after a DPM++ 2M first pass at CFG 7)."""
    expected = raw_hires(raw, [5], hires_sampler="Euler", hires_schedule="Karras", hires_guidance=4.0)[0]
    options = dict(hires=2, hires_steps=4, hires_denoise=0.5, hires_sampler="Euler")
    request = tiny_request(tiny_model_dir, width=16, height=16, hires_schedule="Karras", hires_guidance=4.0, **options)
    result = engine.generate(request)
    assert_pixels_close(result.images[0], expected)
    text = result.infotext(0)
    assert "Hires sampler: Euler, Hires schedule type: Karras, Hires CFG Scale: 4" in text
    from jupyter_sd.recipe.a1111 import ignored_infotext_keys
    from jupyter_sd.recipe.paste import parse_body

    pasted = parse_body("a red circle\n" + text.split("\n")[-1].replace("Hires CFG Scale", "Hires CFG scale"))
    assert (pasted["hires_schedule"], float(pasted["hires_guidance"])) == ("Karras", 4.0)
    assert ignored_infotext_keys({"Hires CFG scale": "4", "Hires schedule type": "Karras"}) == []
    same = engine.generate(tiny_request(tiny_model_dir, width=16, height=16, **options))
    assert "Hires schedule type" not in same.infotext(0) and "Hires CFG" not in same.infotext(0)
    assert not np.array_equal(pixels(same.images[0]), pixels(result.images[0]))


def test_a_hires_schedule_the_hires_sampler_cannot_use_is_refused_before_painting(engine, tiny_model_dir):
    recorder = Recorder()
    request = tiny_request(tiny_model_dir, hires=2, hires_sampler="DDIM", hires_schedule="Karras", preview="none")
    with pytest.raises(ValueError, match=r"^hires_schedule: 'Karras' is not available with sampler 'DDIM'"):
        engine.generate(request, recorder)
    assert recorder.steps == []


def test_hires_and_inpaint_generation_data_paints_again(engine, tiny_model_dir):
    """Our infotext, pasted back, gives the same request options (A1111 keys and values) and the same pixels."""
    hires = tiny_request(
        tiny_model_dir,
        steps=3,
        width=16,
        height=16,
        hires=1.5,
        hires_steps=2,
        hires_denoise=0.6,
        hires_upscaler="Latent (bicubic)",
        hires_sampler="Euler",
        preview="none",
    )
    result = engine.generate(hires)
    pasted = request_from_infotext(result.infotext(0), model=str(tiny_model_dir), save=False, preview="none")
    for name in ("hires", "hires_steps", "hires_denoise", "hires_upscaler", "hires_sampler", "width", "seed"):
        assert getattr(pasted, name) == getattr(result.request, name), name
    assert np.array_equal(pixels(engine.generate(pasted).images[0]), pixels(result.images[0]))
    inpaint = tiny_request(
        tiny_model_dir,
        init="x",
        mask="m",
        strength=0.6,
        mask_blur=2,
        inpaint_area="masked",
        padding=8,
        masked_content="fill",
        invert_mask=True,
        width=16,
        height=16,
    )
    text = engine.generate(inpaint, pictures=Pictures(init_picture(), box_mask(16, (0, 0, 8, 16)))).infotext(0)
    back = request_from_infotext(text)
    assert (back.strength, back.mask_blur, back.inpaint_area, back.padding, back.masked_content, back.invert_mask) == (
        0.6,
        2,
        "masked",
        8,
        "fill",
        True,
    )
