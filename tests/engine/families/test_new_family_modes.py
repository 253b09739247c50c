"""img2img, inpaint and the hires fix on Z-Image, Chroma and Qwen-Image (Flux.2 klein's: test_flux2klein_modes.py;
tiny folders built from config), against each family's own diffusers Img2Img/Inpaint pipeline loaded on its own:
the same pixels for the same seed (``--rng cpu``) at the strength that runs A1111's steps, and the original kept
outside the mask."""

from __future__ import annotations

import numpy as np
import pytest
import torch
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
FAMILIES = {  # name → (builder, img2img class, inpaint class, how A1111's CFG g reaches the raw pipeline)
    "Z-Image": (tiny_families.make_tiny_zimage, "ZImageImg2ImgPipeline", "ZImageInpaintPipeline",
                lambda g: {"guidance_scale": g - 1}),
    "Chroma": (tiny_families.make_tiny_chroma, "ChromaImg2ImgPipeline", "ChromaInpaintPipeline",
               lambda g: {"guidance_scale": g}),
    "Qwen-Image": (tiny_families.make_tiny_qwenimage, "QwenImageImg2ImgPipeline", "QwenImageInpaintPipeline",
                   lambda g: {"true_cfg_scale": g, "negative_prompt": " "}),  # (the card's empty negative prompt)
}  # fmt: skip
TXT2IMG = {"Z-Image": "ZImagePipeline", "Chroma": "ChromaPipeline", "Qwen-Image": "QwenImagePipeline"}
HIRES = [name for name in FAMILIES if FAMILIES[name][1]]
IMG2IMG = [name for name, spec in FAMILIES.items() if spec[1]]
INPAINT = [name for name, spec in FAMILIES.items() if spec[2]]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    warmup.wait()
    builders = {name: spec[0] for name, spec in FAMILIES.items()}
    return {name: build(tmp_path_factory.mktemp(f"tiny-{name.replace(' ', '-')}")) for name, build in builders.items()}


def _raw(name, folder, mode, **call):
    """The family's own Img2Img/Inpaint pipeline, untouched (but for Chroma's inpaint workaround), with CPU generators
    of seed 5 at CFG 2."""
    import diffusers

    builder, img2img, inpaint, guidance = FAMILIES[name]
    pipe = getattr(diffusers, img2img if mode == "img2img" else inpaint).from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    if name == "Chroma" and mode == "inpaint":  # diffusers 0.42's reads a key Chroma's transformer lacks (chroma.py)
        pipe.transformer.register_to_config(guidance_embeds=False)
    return pipe(PROMPT, num_inference_steps=6, width=32, height=32, generator=generators([5]), **guidance(2.0),
                **call).images[0]  # fmt: skip


def _request(folder, **changes):
    base = dict(prompt=PROMPT, model=str(folder), steps=6, seed=5, rng="cpu", preview="none", save=False,
                guidance=2.0, width=32, height=32)  # fmt: skip
    return PaintRequest(**{**base, **changes})


@pytest.mark.parametrize("name", IMG2IMG)
@pytest.mark.parametrize(
    ("strength", "raw_strength", "run"),
    [
        (0.6, 0.65, 4),  # A1111: int(0.6 × 6) + 1 = 4 steps; the flow pipelines keep 6 − int(6 − 6·s): 0.65 keeps 4
        (0.3, 0.3, 2),
        (1.0, 1.0, 6),
    ],
)
def test_img2img_equals_its_diffusers_img2img(engine, folders, name, strength, raw_strength, run):
    init = init_picture(32)
    expected = _raw(name, folders[name], "img2img", image=init, strength=raw_strength)
    recorder = Recorder()
    result = engine.generate(_request(folders[name], init="x", strength=strength), recorder, pictures=Pictures(init))
    assert_pixels_close(result.images[0], expected)
    assert recorder.steps[-1] == (run, run) and result.steps_total == run
    assert f"Denoising strength: {strength:g}" in result.infotext(0)


@pytest.mark.parametrize("name", INPAINT)
@pytest.mark.parametrize("strength", [0.8, 1.0])
def test_inpaint_equals_its_diffusers_inpaint_and_keeps_the_rest(engine, folders, name, strength):
    init, mask = init_picture(32), box_mask(32, (8, 8, 24, 24))
    painted = _raw(name, folders[name], "inpaint", image=init, mask_image=mask, strength=strength)
    expected = Image.composite(painted, init, mask)
    request = _request(folders[name], init="x", mask="m", strength=strength, mask_blur=0)
    result = engine.generate(request, pictures=Pictures(init, mask))
    assert_pixels_close(result.images[0], expected)
    outside = np.asarray(mask) == 0
    assert np.array_equal(pixels(result.images[0])[outside], pixels(init)[outside])
    assert np.abs(pixels(result.images[0])[12:20, 12:20] - pixels(init)[12:20, 12:20]).max() > 0


def _spatial(name, pipe, latents):
    """The txt2img pipeline's ``output_type="latent"`` latents as (B, C, H, W) (Chroma's unpacked)."""
    if name == "Chroma":
        return pipe._unpack_latents(latents, 32, 32, pipe.vae_scale_factor)
    if name == "Qwen-Image":
        return pipe._unpack_latents(latents, 32, 32, pipe.vae_scale_factor)[:, :, 0]  # (B, C, frame, H, W)
    return latents


def _encoded(name, pipe, tensor, generator):
    """Pixels → sampler latents as the family's Img2Img pipeline encodes its init."""
    import diffusers

    with torch.no_grad():
        if name == "Qwen-Image":  # one frame, normalized by the VAE's per-channel mean and std
            img2img = diffusers.QwenImageImg2ImgPipeline.from_pipe(pipe)
            return img2img._encode_vae_image(tensor.unsqueeze(2), generator)[:, :, 0]
        sample = pipe.vae.encode(tensor).latent_dist.sample(generator=generator)
    return (sample - pipe.vae.config.shift_factor) * pipe.vae.config.scaling_factor


def _raw_hires(name, folder, upscaler):
    """diffusers' txt2img → latents ×2 (torch interpolate: A1111's ``Latent`` modes) or the picture Lanczos ×2 and
    encoded again (the VAE's sample for the seed, shifted and scaled) → its Img2Img at 64x64 from fresh noise."""
    import diffusers

    guidance = FAMILIES[name][3](2.0)
    txt2img = getattr(diffusers, TXT2IMG[name]).from_pretrained(folder)
    txt2img.set_progress_bar_config(disable=True)
    first = dict(width=32, height=32, num_inference_steps=4, generator=generators([5]), **guidance)
    if upscaler == "Lanczos":
        picture = txt2img(PROMPT, **first).images[0].resize((64, 64), Image.LANCZOS)
        tensor = txt2img.image_processor.preprocess(picture)
        latents = _encoded(name, txt2img, tensor, torch.Generator("cpu").manual_seed(5))
        steps, strength = 13, 3.5 / 13  # int(4 / 0.3) = 13 scheduled, the last 4 run: 13 − int(13 − 13·s) = 4
    else:
        latents = _spatial(name, txt2img, txt2img(PROMPT, output_type="latent", **first).images)
        latents = torch.nn.functional.interpolate(latents, scale_factor=2, mode="bilinear")
        steps, strength = 8, 0.45  # int(4 / 0.5) = 8 scheduled, the last 4 run: 8 − int(8 − 8·s) = 4
    img2img = getattr(diffusers, FAMILIES[name][1]).from_pipe(txt2img)
    # latents pass its image processor unencoded only at its vae_latent_channels (Chroma's says 4, as Flux's does not)
    channels = getattr(txt2img.vae.config, "latent_channels", None) or txt2img.vae.config.z_dim  # (Qwen-Image's)
    img2img.image_processor.register_to_config(vae_latent_channels=channels)
    return img2img(PROMPT, image=latents, strength=strength, num_inference_steps=steps, width=64, height=64,
                   generator=generators([5]), **guidance).images[0]  # fmt: skip


@pytest.mark.parametrize("name", HIRES)
@pytest.mark.parametrize(("upscaler", "denoise"), [("Latent", 0.5), ("Lanczos", 0.3)])
def test_hires_fix_equals_its_diffusers_txt2img_then_img2img(engine, folders, name, upscaler, denoise):
    recorder = Recorder()
    request = _request(folders[name], steps=4, hires=2.0, hires_upscaler=upscaler, hires_denoise=denoise)
    result = engine.generate(request, recorder)
    assert result.images[0].size == (64, 64)
    assert_pixels_close(result.images[0], _raw_hires(name, folders[name], upscaler), tolerance=2)
    assert [phase[0] for phase in recorder.phases] == ["txt2img", "hires"] and recorder.steps[-1] == (4, 4)
    assert "Hires upscale: 2" in result.infotext(0) and f"Hires upscaler: {upscaler}" in result.infotext(0)


@pytest.mark.parametrize("name", INPAINT)
def test_latent_masked_content_encodes_with_its_vae(engine, folders, name):
    """``latent noise``/``latent nothing`` start the masked area from the init encoded as its Img2Img would."""
    init, mask = init_picture(32), box_mask(32, (8, 8, 24, 24))
    base = _request(folders[name], init="x", mask="m", strength=0.7, mask_blur=0)
    if name == "Z-Image":  # its Inpaint pipeline VAE-encodes the init it is given, latents too
        with pytest.raises(ValueError, match=r"^masked content: 'latent noise' and 'latent nothing' cannot paint Z-"):
            engine.generate(base.replace(masked_content="latent noise"), pictures=Pictures(init, mask))
        return
    original = engine.generate(base, pictures=Pictures(init, mask)).images[0]
    for content in ("latent noise", "latent nothing"):
        other = engine.generate(base.replace(masked_content=content), pictures=Pictures(init, mask)).images[0]
        assert np.abs(pixels(original) - pixels(other)).max() > 1
        outside = np.asarray(mask) == 0
        assert np.array_equal(pixels(other)[outside], pixels(init)[outside])


@pytest.mark.parametrize("name", IMG2IMG)
@pytest.mark.parametrize("mode", ["img2img", "inpaint"])
def test_a1111_noise_and_variation_seeds_reach_its_init_modes(engine, folders, name, mode):
    """The default (A1111 GPU) noise is ours: it replaces what the pipeline draws, so the seed still decides."""
    if not FAMILIES[name][2] and mode == "inpaint":
        mode = "img2img"
    init, mask = init_picture(32), box_mask(32, (8, 8, 24, 24))
    pictures = Pictures(init, mask if mode == "inpaint" else None)
    request = _request(folders[name], init="x", mask="m" if mode == "inpaint" else "", rng="gpu", strength=0.6)
    plain, again = (engine.generate(request, pictures=pictures).images[0] for _ in range(2))
    varied = engine.generate(request.replace(variation_seed=9, variation_strength=0.5), pictures=pictures).images[0]
    cpu = engine.generate(request.replace(rng="cpu"), pictures=pictures).images[0]
    assert np.array_equal(pixels(plain), pixels(again)) and pixels(plain).std() > 1
    assert np.abs(pixels(plain) - pixels(varied)).max() > 1 and np.abs(pixels(plain) - pixels(cpu)).max() > 1


def _nv(shape, dtype):
    """A1111's ``nv`` noise of seed 5 in the pipeline's shape (Qwen-Image's has a one-frame axis)."""
    return image_noise(tuple(shape[-3:]), [5], rng="nv").reshape(shape).to(dtype)


@pytest.mark.parametrize("name", IMG2IMG)
@pytest.mark.parametrize("mode", ["img2img", "inpaint"])
def test_our_noise_is_the_noise_its_pipeline_draws(engine, folders, name, mode, monkeypatch):
    """With A1111's noise (``nv``: CUDA's Philox numbers) the picture is diffusers' with that noise drawn instead."""
    import importlib

    import diffusers

    mode = mode if FAMILIES[name][2] else "img2img"
    init, mask = init_picture(32), box_mask(32, (8, 8, 24, 24))
    cls = getattr(diffusers, FAMILIES[name][1 if mode == "img2img" else 2])
    module = importlib.import_module(cls.__module__)
    monkeypatch.setattr(module, "randn_tensor", lambda shape, **kwargs: _nv(shape, kwargs["dtype"]))
    call = {"image": init, "strength": 0.65, **({"mask_image": mask} if mode == "inpaint" else {})}
    expected = _raw(name, folders[name], mode, **call)
    monkeypatch.undo()
    if mode == "inpaint":
        expected = Image.composite(expected, init, mask)
    pictures = Pictures(init, mask if mode == "inpaint" else None)
    request = _request(folders[name], init="x", mask="m" if mode == "inpaint" else "", strength=0.6, mask_blur=0,
                       rng="nv")  # fmt: skip
    assert_pixels_close(engine.generate(request, pictures=pictures).images[0], expected)
