"""Flux.2 klein's img2img, inpaint and hires fix (a tiny folder built from config) against diffusers' own
Flux2KleinInpaintPipeline loaded on its own: img2img as that pipeline with a mask over the whole picture, the same
pixels for the same seed (``--rng cpu``) at the strength that runs A1111's steps, and A1111's noise (``nv``) drawn
over the VAE's 32 channels and patchified as its pipeline's own noise."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import tiny_families
from helpers.paint_modes import box_mask, generators, init_picture
from helpers.pixels import assert_pixels_close, pixels
from helpers.progress_recorder import Recorder
from PIL import Image

from jupyter_sd.engine import warmup
from jupyter_sd.engine.pictures import Pictures
from jupyter_sd.engine.seeds import image_noise
from jupyter_sd.recipe.request import PaintRequest

PROMPT = "a red circle on a blue background"
WHOLE = Image.new("L", (32, 32), 255)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    warmup.wait()
    return tiny_families.make_tiny_flux2_klein(tmp_path_factory.mktemp("tiny-klein"))


def _raw(folder, **call):
    """diffusers' Flux2KleinInpaintPipeline, untouched, with a CPU generator of seed 5 at CFG 2."""
    from diffusers import Flux2KleinInpaintPipeline

    pipe = Flux2KleinInpaintPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe(PROMPT, num_inference_steps=6, width=32, height=32, generator=generators([5]), guidance_scale=2.0,
                **call).images[0]  # fmt: skip


def _request(folder, **changes):
    base = dict(prompt=PROMPT, model=str(folder), steps=6, seed=5, rng="cpu", preview="none", save=False,
                guidance=2.0, width=32, height=32, init="x")  # fmt: skip
    return PaintRequest(**{**base, **changes})


@pytest.mark.parametrize(
    ("strength", "raw_strength", "run"),
    [
        (0.6, 0.65, 4),  # A1111: int(0.6 × 6) + 1 = 4 steps; the flow pipelines keep 6 − int(6 − 6·s): 0.65 keeps 4
        (0.3, 0.3, 2),
        (1.0, 1.0, 6),
    ],
)
def test_img2img_is_its_inpaint_pipeline_over_the_whole_picture(engine, folder, strength, raw_strength, run):
    init = init_picture(32)
    expected = _raw(folder, image=init, mask_image=WHOLE, strength=raw_strength)
    recorder = Recorder()
    result = engine.generate(_request(folder, strength=strength), recorder, pictures=Pictures(init))
    assert_pixels_close(result.images[0], expected)
    assert recorder.steps[-1] == (run, run) and result.steps_total == run
    assert f"Denoising strength: {strength:g}" in result.infotext(0)
    if strength < 1:  # the init shows through: another picture than txt2img's
        txt2img = engine.generate(_request(folder, init="")).images[0]
        assert np.abs(pixels(txt2img) - pixels(result.images[0])).max() > 1


@pytest.mark.parametrize("strength", [0.8, 1.0])
def test_inpaint_equals_diffusers_inpaint_and_keeps_the_rest(engine, folder, strength):
    init, mask = init_picture(32), box_mask(32, (8, 8, 24, 24))
    expected = Image.composite(_raw(folder, image=init, mask_image=mask, strength=strength), init, mask)
    request = _request(folder, mask="m", strength=strength, mask_blur=0)
    result = engine.generate(request, pictures=Pictures(init, mask))
    assert_pixels_close(result.images[0], expected)
    outside = np.asarray(mask) == 0
    assert np.array_equal(pixels(result.images[0])[outside], pixels(init)[outside])


def _patchified_nv(shape, dtype):
    """A1111's ``nv`` noise of seed 5 over the VAE's 32 channels at 1/8 size, patchified 2×2 as klein's latents."""
    from diffusers import Flux2KleinPipeline

    batch, channels, height, width = shape
    noise = image_noise((channels // 4, height * 2, width * 2), [5], rng="nv")
    return Flux2KleinPipeline._patchify_latents(noise).reshape(shape).to(dtype)


@pytest.mark.parametrize("mode", ["img2img", "inpaint"])
@pytest.mark.parametrize("strength", [0.6, 1.0])
def test_our_noise_is_the_noise_its_pipeline_draws(engine, folder, mode, strength, monkeypatch):
    """With A1111's noise (``nv``) the picture is diffusers' with that noise, patchified, drawn instead."""
    import importlib

    from diffusers import Flux2KleinInpaintPipeline

    init, mask = init_picture(32), (box_mask(32, (8, 8, 24, 24)) if mode == "inpaint" else WHOLE)
    module = importlib.import_module(Flux2KleinInpaintPipeline.__module__)
    monkeypatch.setattr(module, "randn_tensor", lambda shape, **kwargs: _patchified_nv(shape, kwargs["dtype"]))
    expected = _raw(folder, image=init, mask_image=mask, strength=0.65 if strength < 1 else 1.0)
    monkeypatch.undo()
    if mode == "inpaint":
        expected = Image.composite(expected, init, mask)
    pictures = Pictures(init, mask if mode == "inpaint" else None)
    request = _request(folder, mask="m" if mode == "inpaint" else "", strength=strength, mask_blur=0, rng="nv")
    assert_pixels_close(engine.generate(request, pictures=pictures).images[0], expected)


def test_a1111_noise_and_variation_seeds_reach_its_img2img(engine, folder):
    pictures = Pictures(init_picture(32))
    request = _request(folder, rng="gpu", strength=0.6)
    plain, again = (engine.generate(request, pictures=pictures).images[0] for _ in range(2))
    varied = engine.generate(request.replace(variation_seed=9, variation_strength=0.5), pictures=pictures).images[0]
    assert np.array_equal(pixels(plain), pixels(again)) and pixels(plain).std() > 1
    assert np.abs(pixels(plain) - pixels(varied)).max() > 1


def test_latent_masked_content_is_one_line(engine, folder):
    init, mask = init_picture(32), box_mask(32, (8, 8, 24, 24))
    request = _request(folder, mask="m", strength=0.7, masked_content="latent noise")
    with pytest.raises(ValueError) as info:
        engine.generate(request, pictures=Pictures(init, mask))
    assert str(info.value) == (
        "masked content: 'latent noise' and 'latent nothing' cannot paint Flux.2 klein models yet "
        "(allowed: original, fill)"
    )


def _raw_hires(folder, upscaler):
    """diffusers' two passes: Flux2KleinPipeline's latents (the VAE's own 32 channels, ``output_type="latent"``)
    ×2 by torch's interpolate (A1111's ``Latent``), patchified (the 128 raw channels its Inpaint pipeline takes as
    latents), or its picture Lanczos ×2 (which that pipeline encodes), then the Inpaint pipeline over the whole
    picture at 64x64 from fresh noise of the same seed."""
    import torch
    from diffusers import Flux2KleinInpaintPipeline, Flux2KleinPipeline

    txt2img = Flux2KleinPipeline.from_pretrained(folder)
    txt2img.set_progress_bar_config(disable=True)
    first = dict(width=32, height=32, num_inference_steps=4, generator=generators([5]), guidance_scale=2.0)
    if upscaler == "Lanczos":
        image = txt2img(prompt=PROMPT, **first).images[0].resize((64, 64), Image.LANCZOS)
        steps, strength = 13, 3.5 / 13  # int(4 / 0.3) = 13 scheduled, the last 4 run: 13 − int(13 − 13·s) = 4
    else:
        latents = txt2img(prompt=PROMPT, output_type="latent", **first).images
        larger = torch.nn.functional.interpolate(latents, scale_factor=2, mode="bilinear")
        image = Flux2KleinPipeline._patchify_latents(larger)
        steps, strength = 8, 0.45  # int(4 / 0.5) = 8 scheduled, the last 4 run: 8 − int(8 − 8·s) = 4
    inpaint = Flux2KleinInpaintPipeline.from_pipe(txt2img)
    return inpaint(prompt=PROMPT, image=image, mask_image=Image.new("L", (64, 64), 255), strength=strength,
                   num_inference_steps=steps, width=64, height=64, generator=generators([5]),
                   guidance_scale=2.0).images[0]  # fmt: skip


@pytest.mark.parametrize(("upscaler", "denoise"), [("Latent", 0.5), ("Lanczos", 0.3)])
def test_hires_fix_equals_its_diffusers_txt2img_then_inpaint_over_the_whole_picture(engine, folder, upscaler,
                                                                                     denoise):  # fmt: skip
    recorder = Recorder()
    request = _request(folder, init="", steps=4, hires=2.0, hires_upscaler=upscaler, hires_denoise=denoise)
    result = engine.generate(request, recorder)
    assert result.images[0].size == (64, 64)
    assert_pixels_close(result.images[0], _raw_hires(folder, upscaler))
    assert [phase[0] for phase in recorder.phases] == ["txt2img", "hires"] and recorder.steps[-1] == (4, 4)
    assert "Hires upscale: 2" in result.infotext(0) and f"Hires upscaler: {upscaler}" in result.infotext(0)
