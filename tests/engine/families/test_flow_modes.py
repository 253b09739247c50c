"""img2img and inpaint on Flux and SD3 (tiny folders built from config), against diffusers' own Img2Img/Inpaint
pipelines loaded on their own: same pixels for the same seed at the strength that runs A1111's steps, the original
kept outside the mask, and our own noise (A1111's random sources) reaching the pipelines' noising."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.paint_modes import box_mask, generators, init_picture
from helpers.pixels import assert_pixels_close, pixels
from helpers.progress_recorder import Recorder
from helpers.tiny_flow import make_tiny_flux, make_tiny_sd3
from PIL import Image

from jupyter_sd.engine.pictures import Pictures
from jupyter_sd.engine.seeds import image_noise
from jupyter_sd.recipe.request import PaintRequest

PROMPT = "a red circle on a blue background"
CLASSES = {
    "flux": ("FluxImg2ImgPipeline", "FluxInpaintPipeline", "flux.pipeline_flux"),
    "sd3": (
        "StableDiffusion3Img2ImgPipeline",
        "StableDiffusion3InpaintPipeline",
        "stable_diffusion_3.pipeline_stable_diffusion_3",
    ),
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return {
        "flux": make_tiny_flux(tmp_path_factory.mktemp("tiny-flux")),
        "sd3": make_tiny_sd3(tmp_path_factory.mktemp("tiny-sd3")),
    }


def _raw(family, folder, mode):
    import diffusers

    img2img, inpaint, _ = CLASSES[family]
    pipe = getattr(diffusers, img2img if mode == "img2img" else inpaint).from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _request(folder, **changes):
    base = dict(prompt=PROMPT, model=str(folder), steps=6, seed=5, rng="cpu", preview="none", save=False)
    return PaintRequest(**{**base, **changes})


@pytest.mark.parametrize("family", ["flux", "sd3"])
@pytest.mark.parametrize(
    ("strength", "raw_strength", "run"),
    [
        # A1111: int(0.6 × 6) + 1 = 4 steps; the flow pipelines keep 6 − int(6 − 6·s): s = 0.65 keeps 4
        (0.6, 0.65, 4),
        (0.3, 0.3, 2),  # int(1.8) + 1 = 2; 6 − int(6 − 1.8) = 2
        (1.0, 1.0, 6),
    ],
)
def test_img2img_equals_diffusers_img2img(engine, folders, family, strength, raw_strength, run):
    init = init_picture(32)
    expected = _raw(family, folders[family], "img2img")(
        PROMPT, image=init, strength=raw_strength, num_inference_steps=6, width=32, height=32,
        generator=generators([5]), guidance_scale=7.0 if family == "sd3" else 3.5,
    ).images[0]  # fmt: skip
    recorder = Recorder()
    result = engine.generate(_request(folders[family], init="x", strength=strength), recorder, pictures=Pictures(init))
    assert type(engine._pipe).__name__ not in CLASSES[family][:2]  # the engine keeps its txt2img pipeline
    assert_pixels_close(result.images[0], expected)
    assert recorder.steps[-1] == (run, run) and result.steps_total == run
    assert result.images[0].size == (32, 32)  # the init's size
    assert f"Denoising strength: {strength:g}" in result.infotext(0)


@pytest.mark.parametrize("family", ["flux", "sd3"])
@pytest.mark.parametrize(("strength", "raw_strength"), [(0.8, 0.8), (1.0, 1.0)])
def test_inpaint_equals_diffusers_inpaint_and_keeps_the_rest(engine, folders, family, strength, raw_strength):
    init, mask = init_picture(32), box_mask(32, (8, 8, 24, 24))
    painted = _raw(family, folders[family], "inpaint")(
        PROMPT, image=init, mask_image=mask, strength=raw_strength, num_inference_steps=6, width=32, height=32,
        generator=generators([5]), guidance_scale=7.0 if family == "sd3" else 3.5,
    ).images[0]  # fmt: skip
    expected = Image.composite(painted, init, mask)
    request = _request(folders[family], init="x", mask="m", strength=strength, mask_blur=0)
    result = engine.generate(request, pictures=Pictures(init, mask))
    assert_pixels_close(result.images[0], expected)
    outside = np.asarray(mask) == 0
    assert np.array_equal(pixels(result.images[0])[outside], pixels(init)[outside])
    assert np.abs(pixels(result.images[0])[12:20, 12:20] - pixels(init)[12:20, 12:20]).max() > 0


@pytest.mark.parametrize("family", ["flux", "sd3"])
def test_only_masked_and_blur_work_on_flow_models(engine, folders, family):
    init, mask = init_picture(64), box_mask(64, (40, 8, 48, 16))
    request = _request(folders[family], init="x", mask="m", width=32, height=32, inpaint_area="masked", padding=4,
                       mask_blur=2, strength=0.75)  # fmt: skip
    image = engine.generate(request, pictures=Pictures(init, mask)).images[0]
    assert image.size == (64, 64)  # the init's size, though 32x32 was painted
    reach = int(2.5 * 2 + 0.5)  # the blur's half width: the paste-back mask ends there
    region = np.zeros((64, 64), bool)
    region[max(8 - reach, 0) : 16 + reach, 40 - reach : 48 + reach] = True
    assert np.array_equal(pixels(image)[~region], pixels(init)[~region])
    assert np.abs(pixels(image)[10:14, 42:46] - pixels(init)[10:14, 42:46]).max() > 0


@pytest.mark.parametrize("family", ["flux", "sd3"])
@pytest.mark.parametrize("content", ["fill", "latent noise", "latent nothing"])
def test_masked_content_on_flow_models(engine, folders, family, content):
    init, mask = init_picture(32), box_mask(32, (8, 8, 24, 24))
    base = _request(folders[family], init="x", mask="m", strength=0.7, mask_blur=0)
    original = engine.generate(base, pictures=Pictures(init, mask)).images[0]
    other = engine.generate(base.replace(masked_content=content), pictures=Pictures(init, mask)).images[0]
    assert np.abs(pixels(original) - pixels(other)).max() > 1
    outside = np.asarray(mask) == 0
    assert np.array_equal(pixels(other)[outside], pixels(init)[outside])


@pytest.mark.parametrize("family", ["flux", "sd3"])
@pytest.mark.parametrize(("mode", "strength"), [("img2img", 0.6), ("inpaint", 0.8), ("inpaint", 1.0)])
def test_our_noise_reaches_the_flow_pipelines(engine, folders, family, mode, strength, monkeypatch):
    """With A1111's noise (``nv``: CUDA's Philox numbers), the picture is diffusers' with that noise drawn instead."""
    import importlib

    init, mask = init_picture(32), box_mask(32, (8, 8, 24, 24))
    ours = image_noise((16, 16, 16), [5], rng="nv")  # the tiny VAE halves: 32 px → 16 latents
    module = importlib.import_module(f"diffusers.pipelines.{CLASSES[family][2]}_{mode}")
    monkeypatch.setattr(module, "randn_tensor", lambda shape, **kwargs: ours.to(kwargs["dtype"]))
    raw_strength = {0.6: 0.65, 0.8: 0.8, 1.0: 1.0}[strength]
    call = dict(image=init, strength=raw_strength, num_inference_steps=6, width=32, height=32,
                generator=generators([5]), guidance_scale=7.0 if family == "sd3" else 3.5)  # fmt: skip
    if mode == "inpaint":
        call["mask_image"] = mask
    expected = _raw(family, folders[family], mode)(PROMPT, **call).images[0]
    monkeypatch.undo()
    if mode == "inpaint":
        expected = Image.composite(expected, init, mask)
    pictures = Pictures(init, mask if mode == "inpaint" else None)
    request = _request(folders[family], init="x", mask="m" if mode == "inpaint" else "", strength=strength,
                       mask_blur=0, rng="nv")  # fmt: skip
    assert_pixels_close(engine.generate(request, pictures=pictures).images[0], expected)
    varied = engine.generate(request.replace(variation_seed=9, variation_strength=0.5), pictures=pictures)
    assert np.abs(pixels(varied.images[0]) - pixels(expected)).max() > 1
