"""The hires fix and outpainting on Flux and SD3 (tiny folders built from config).

The hires reference is built from diffusers' own pipelines as A1111/Forge run the fix: the txt2img latents
(unpacked, for Flux), enlarged by torch's interpolate, then the family's Img2Img pipeline at the strength that runs
A1111's hires steps, from fresh noise of the same seed. Outpainting: the picture grows and the old pixels survive
outside the blend band.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.paint_modes import generators, init_picture
from helpers.pixels import assert_pixels_close, pixels
from helpers.progress_recorder import Recorder
from helpers.tiny_flow import make_tiny_flux, make_tiny_sd3

from jupyter_sd.engine.pictures import Pictures
from jupyter_sd.recipe.request import PaintRequest

PROMPT = "a red circle on a blue background"
PIPELINES = {
    "flux": ("FluxPipeline", "FluxImg2ImgPipeline"),
    "sd3": ("StableDiffusion3Pipeline", "StableDiffusion3Img2ImgPipeline"),
}
GUIDANCE = {"flux": 3.5, "sd3": 7.0}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return {
        "flux": make_tiny_flux(tmp_path_factory.mktemp("tiny-flux")),
        "sd3": make_tiny_sd3(tmp_path_factory.mktemp("tiny-sd3")),
    }


def _request(folder, **changes):
    base = dict(prompt=PROMPT, model=str(folder), width=32, height=32, steps=4, seed=5, rng="cpu", preview="none",
                save=False)  # fmt: skip
    return PaintRequest(**{**base, **changes})


def _raw_hires(family, folder, mode):
    """diffusers' txt2img → latents ×2 (torch interpolate, A1111's ``Latent`` modes) → Img2Img at 64x64."""
    import diffusers

    txt2img_class, img2img_class = (getattr(diffusers, name) for name in PIPELINES[family])
    txt2img = txt2img_class.from_pretrained(folder)
    txt2img.set_progress_bar_config(disable=True)
    latents = txt2img(PROMPT, width=32, height=32, num_inference_steps=4, guidance_scale=GUIDANCE[family],
                      generator=generators([5]), output_type="latent").images  # fmt: skip
    if family == "flux":
        latents = txt2img._unpack_latents(latents, 32, 32, txt2img.vae_scale_factor)
    latents = torch.nn.functional.interpolate(latents, size=(32, 32), mode=mode)  # the tiny VAE halves: 64 px
    img2img = img2img_class.from_pipe(txt2img)
    # hires: int(4 / 0.5) = 8 steps scheduled, the last 4 run; the flow pipelines keep 8 − int(8 − 8·s): s = 0.45
    return img2img(PROMPT, image=latents, strength=0.45, num_inference_steps=8, width=64, height=64,
                   guidance_scale=GUIDANCE[family], generator=generators([5])).images[0]  # fmt: skip


@pytest.mark.parametrize("family", ["flux", "sd3"])
@pytest.mark.parametrize(("upscaler", "mode"), [("Latent", "bilinear"), ("Latent (nearest)", "nearest")])
def test_hires_fix_equals_diffusers_txt2img_then_img2img(engine, folders, family, upscaler, mode):
    expected = _raw_hires(family, folders[family], mode)
    recorder = Recorder()
    request = _request(folders[family], hires=2.0, hires_upscaler=upscaler, hires_denoise=0.5)
    result = engine.generate(request, recorder)
    assert result.images[0].size == (64, 64)
    assert_pixels_close(result.images[0], expected)
    assert [phase[0] for phase in recorder.phases] == ["txt2img", "hires"] and recorder.steps[-1] == (4, 4)
    text = result.infotext(0)
    assert "Hires upscale: 2" in text and f"Hires upscaler: {upscaler}" in text and "Denoising strength: 0.5" in text


def _raw_lanczos_hires(family, folder):
    """diffusers' txt2img picture → Lanczos ×2 → encoded (the VAE's sample for the seed, shifted and scaled) →
    Img2Img at 64x64 from those latents."""
    import diffusers
    from PIL import Image

    txt2img_class, img2img_class = (getattr(diffusers, name) for name in PIPELINES[family])
    txt2img = txt2img_class.from_pretrained(folder)
    txt2img.set_progress_bar_config(disable=True)
    picture = txt2img(PROMPT, width=32, height=32, num_inference_steps=4, guidance_scale=GUIDANCE[family],
                      generator=generators([5])).images[0]  # fmt: skip
    tensor = txt2img.image_processor.preprocess(picture.resize((64, 64), Image.LANCZOS))
    vae = txt2img.vae
    with torch.no_grad():
        sample = vae.encode(tensor).latent_dist.sample(generator=torch.Generator("cpu").manual_seed(5))
    latents = (sample - vae.config.shift_factor) * vae.config.scaling_factor
    img2img = img2img_class.from_pipe(txt2img)
    # int(4 / 0.3) = 13 steps scheduled, the last 4 run: 13 − int(13 − 13·s) = 4 for s = 3.5 / 13
    return img2img(PROMPT, image=latents, strength=3.5 / 13, num_inference_steps=13, width=64, height=64,
                   guidance_scale=GUIDANCE[family], generator=generators([5])).images[0]  # fmt: skip


@pytest.mark.parametrize("family", ["flux", "sd3"])
def test_hires_fix_with_a_picture_upscaler(engine, folders, family):
    """Lanczos: the first pass decoded, enlarged as a picture, encoded again (with the VAE's shift) and repainted."""
    result = engine.generate(_request(folders[family], hires=2.0, hires_upscaler="Lanczos", hires_denoise=0.3))
    assert result.images[0].size == (64, 64)
    assert_pixels_close(result.images[0], _raw_lanczos_hires(family, folders[family]), tolerance=2)


def test_hires_past_sd3s_position_embeddings_is_one_line(engine, folders):
    with pytest.raises(ValueError) as info:  # 64 patches × patch 1 × VAE 2 = 128 px
        engine.generate(_request(folders["sd3"], hires=5.0))
    assert str(info.value) == "hires: SD3 paints at most 128 px a side (the hires pass would paint 160x160)"


@pytest.mark.parametrize("family", ["flux", "sd3"])
def test_outpaint_grows_flow_pictures_and_keeps_the_old_pixels(engine, folders, family):
    init = init_picture(32)
    request = _request(folders[family], width=None, height=None, init="x", outpaint="16,0,0,16", outpaint_blend=4,
                       strength=1.0, mask_blur=0)  # fmt: skip
    result = engine.generate(request, pictures=Pictures(init))
    image = pixels(result.images[0])
    assert image.shape == (48, 48, 3)  # grew 16 to the left and 16 at the bottom
    # the old picture sits at x 16..48, y 0..32; the band reaches 4 px into it from the sides that grew
    assert np.array_equal(image[0:28, 20:48], pixels(init)[0:28, 4:32])
    assert np.abs(image[32:, :16] - image[31:32, 16:17]).max() > 0  # the new corner is painted, not a copy
    assert "Outpaint" in result.infotext(0)
