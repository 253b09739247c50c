"""FLUX.2 [dev]'s img2img, inpaint and hires fix (a tiny folder built from config) against a loop written here from
the formula, on the raw parts of diffusers' own ``Flux2Pipeline`` (its transformer, VAE, ``encode_prompt`` and
scheduler config): the init's normalized patches noised at the first level of the tail A1111 runs
(``int(strength × steps) + 1`` of the pipeline's own levels), Euler steps with the distilled guidance, for inpaint
klein's mask blend after each step, decoded. diffusers has no [dev] Img2Img or Inpaint class to compare with."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import tiny_families
from helpers.paint_modes import box_mask, init_picture
from helpers.pixels import assert_pixels_close, pixels
from helpers.progress_recorder import Recorder
from PIL import Image

from jupyter_sd.engine import warmup
from jupyter_sd.engine.pictures import Pictures
from jupyter_sd.recipe.request import PaintRequest

PROMPT = "a red circle on a blue background"
GUIDANCE = 2.5  # the distilled scale (--distilled-cfg)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    warmup.wait()
    return tiny_families.make_tiny_flux2_dev(tmp_path_factory.mktemp("tiny-flux2-dev"))


@pytest.fixture(scope="module")
def raw(folder):
    """diffusers' Flux2Pipeline, loaded on its own: only its parts and its prompt encoding are used."""
    from diffusers import Flux2Pipeline

    pipe = Flux2Pipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def text(raw):
    with torch.no_grad():
        return raw.encode_prompt(prompt=PROMPT, device="cpu")


def _request(folder, **changes):
    base = dict(prompt=PROMPT, model=str(folder), steps=6, seed=5, rng="cpu", preview="none", save=False,
                distilled_cfg=GUIDANCE, width=32, height=32, init="x")  # fmt: skip
    return PaintRequest(**{**base, **changes})


def _statistics(raw):
    vae = raw.vae
    return vae.bn.running_mean.view(1, -1, 1, 1), torch.sqrt(vae.bn.running_var.view(1, -1, 1, 1) + 1e-4)


def _encode(raw, picture):
    """A picture → its VAE's mode, 2×2-patchified, batch-normalized: the (1, 128, h, w) patches the steps see."""
    array = torch.from_numpy(np.asarray(picture, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)[None]
    with torch.no_grad():
        latents = raw.vae.encode(array).latent_dist.mode()
    mean, std = _statistics(raw)
    return (raw._patchify_latents(latents) - mean) / std


def _decode(raw, patches):
    """Normalized (1, 128, h, w) patches → un-normalized, unpatchified, decoded → a picture."""
    mean, std = _statistics(raw)
    with torch.no_grad():
        pixels_ = raw.vae.decode(raw._unpatchify_latents(patches * std + mean)).sample
    array = ((pixels_[0].permute(1, 2, 0).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    return Image.fromarray(array)


def _levels(raw, steps, patches):
    """Flux2Pipeline's own levels for `steps` at a picture of `patches` tokens (its linspace and empirical mu)."""
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.pipelines.flux2.pipeline_flux2 import compute_empirical_mu

    scheduler = FlowMatchEulerDiscreteScheduler.from_config(raw.scheduler.config)
    mu = compute_empirical_mu(image_seq_len=patches, num_steps=steps)
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)
    return scheduler.sigmas.float()


def _loop(raw, text, init, steps, run, mask=None, noise=None):
    """The formula: x = σ₀·noise + (1 − σ₀)·init at the tail's first level; per step x += (σ' − σ)·v, then
    x = (1 − m)·(σ'·noise + (1 − σ')·init) + m·x (the clean init after the last); packed as Flux2Pipeline packs.
    The noise is a CPU generator's of seed 5 (``--rng cpu``) unless given."""
    batch, channels, height, width = init.shape
    levels = _levels(raw, steps, height * width)[steps - run :]
    if noise is None:
        noise = torch.randn(init.shape, generator=torch.Generator("cpu").manual_seed(5))
    pack = lambda x: x.flatten(2).transpose(1, 2)  # noqa: E731 (B, C, h, w) → (B, h·w, C)
    start, noise, init = pack(levels[0] * noise + (1 - levels[0]) * init), pack(noise), pack(init)
    keep = torch.zeros_like(start[..., :1]) + 1 if mask is None else mask
    embeds, text_ids = text
    ids = raw._prepare_latent_ids(torch.zeros(batch, channels, height, width))
    x = start
    for index in range(run):
        sigma, following = levels[index], levels[index + 1]
        with torch.no_grad():
            velocity = raw.transformer(hidden_states=x, timestep=(sigma * 1000).expand(batch) / 1000,
                                       guidance=torch.full([batch], GUIDANCE), encoder_hidden_states=embeds,
                                       txt_ids=text_ids, img_ids=ids, return_dict=False)[0]  # fmt: skip
        x = x + (following - sigma) * velocity
        kept = init if index == run - 1 else following * noise + (1 - following) * init
        x = (1 - keep) * kept + keep * x
    return _decode(raw, x.transpose(1, 2).reshape(batch, channels, height, width))


def _packed_mask(mask, grid):
    """klein's: the mask binarized, bilinear to the packed grid, packed (B, h·w, 1)."""
    array = torch.from_numpy((np.asarray(mask, dtype=np.float32) / 255 >= 0.5).astype(np.float32))[None, None]
    small = torch.nn.functional.interpolate(array, size=(grid, grid), mode="bilinear")
    return small.flatten(2).transpose(1, 2)


@pytest.mark.parametrize(("strength", "run"), [(0.6, 4), (0.3, 2), (1.0, 6)])
def test_img2img_is_the_formula_over_its_pipeline_levels(engine, folder, raw, text, strength, run):
    init = init_picture(32)
    recorder = Recorder()
    result = engine.generate(_request(folder, strength=strength), recorder, pictures=Pictures(init))
    expected = _loop(raw, text, _encode(raw, init), 6, run)
    assert_pixels_close(result.images[0], expected)
    assert recorder.steps[-1] == (run, run) and result.steps_total == run  # A1111: int(strength × 6) + 1
    assert f"Denoising strength: {strength:g}" in result.infotext(0)
    assert f"Distilled CFG Scale: {GUIDANCE:g}" in result.infotext(0)
    if strength < 1:  # the init shows through: another picture than txt2img's
        txt2img = engine.generate(_request(folder, init="")).images[0]
        assert np.abs(pixels(txt2img) - pixels(result.images[0])).max() > 1


def test_img2img_at_strength_1_is_raw_flux2pipeline_txt2img(engine, folder, raw):
    """From pure noise with nothing kept, our class paints what diffusers' own Flux2Pipeline paints (same noise)."""
    generator = torch.Generator("cpu").manual_seed(5)
    call = dict(width=32, height=32, num_inference_steps=6, guidance_scale=GUIDANCE, generator=generator)
    expected = raw(prompt=PROMPT, **call).images[0]
    result = engine.generate(_request(folder, strength=1.0), pictures=Pictures(init_picture(32)))
    assert_pixels_close(result.images[0], expected)


def test_distilled_guidance_reaches_its_img2img(engine, folder):
    pictures = Pictures(init_picture(32))
    one, other = (engine.generate(_request(folder, strength=0.6, distilled_cfg=g), pictures=pictures) for g in (1, 6))
    assert np.abs(pixels(one.images[0]) - pixels(other.images[0])).max() > 1


@pytest.mark.parametrize(("strength", "run"), [(0.8, 5), (1.0, 6)])
def test_inpaint_is_the_formula_with_the_mask_blend_and_keeps_the_rest(engine, folder, raw, text, strength, run):
    init, mask = init_picture(32), box_mask(32, (8, 8, 24, 24))
    recorder = Recorder()
    request = _request(folder, mask="m", strength=strength, mask_blur=0)
    result = engine.generate(request, recorder, pictures=Pictures(init, mask))
    painted = _loop(raw, text, _encode(raw, init), 6, run, _packed_mask(mask, 8))
    assert_pixels_close(result.images[0], Image.composite(painted, init, mask))
    assert recorder.steps[-1] == (run, run)
    outside = np.asarray(mask) == 0
    assert np.array_equal(pixels(result.images[0])[outside], pixels(init)[outside])
    assert np.abs(pixels(result.images[0])[~outside] - pixels(init)[~outside]).max() > 1  # the inside repainted


@pytest.mark.parametrize("mode", ["img2img", "inpaint"])
def test_a1111_noise_is_the_noise_the_init_is_noised_with(engine, folder, raw, text, mode):
    """``--rng nv``: A1111's noise of seed 5 over the VAE's 32 channels at 1/8 size, 2×2-patchified as the
    latents are, noises the init and every level of the mask blend."""
    from jupyter_sd.engine.seeds import image_noise

    init, mask = init_picture(32), (box_mask(32, (8, 8, 24, 24)) if mode == "inpaint" else None)
    noise = raw._patchify_latents(image_noise((32, 16, 16), [5], rng="nv").float())
    packed = None if mask is None else _packed_mask(mask, 8)
    expected = _loop(raw, text, _encode(raw, init), 6, 4, packed, noise)
    expected = expected if mask is None else Image.composite(expected, init, mask)
    request = _request(folder, strength=0.6, rng="nv", mask_blur=0, mask="m" if mask else "")
    result = engine.generate(request, pictures=Pictures(init, mask))
    assert_pixels_close(result.images[0], expected)
    varied = engine.generate(request.replace(variation_seed=9, variation_strength=0.5), pictures=Pictures(init, mask))
    assert np.abs(pixels(varied.images[0]) - pixels(result.images[0])).max() > 1


def test_latent_masked_content_is_one_line(engine, folder):
    init, mask = init_picture(32), box_mask(32, (8, 8, 24, 24))
    request = _request(folder, mask="m", strength=0.7, masked_content="latent noise")
    with pytest.raises(ValueError) as info:
        engine.generate(request, pictures=Pictures(init, mask))
    assert str(info.value) == (
        "masked content: 'latent noise' and 'latent nothing' cannot paint Flux.2 [dev] models yet "
        "(allowed: original, fill)"
    )


def _first_pass(raw):
    """Raw Flux2Pipeline's txt2img latents (packed, normalized) of seed 5, 4 steps, at 32x32 → (1, 128, 8, 8)."""
    generator = torch.Generator("cpu").manual_seed(5)
    packed = raw(prompt=PROMPT, width=32, height=32, num_inference_steps=4, guidance_scale=GUIDANCE,
                 generator=generator, output_type="latent").images  # fmt: skip
    return packed.transpose(1, 2).reshape(1, 128, 8, 8)


def _enlarged_by_hand(raw, upscaler):
    """The first pass ×2: the VAE's own channels bilinear (A1111's ``Latent``), or its picture Lanczos, encoded."""
    if upscaler == "Lanczos":
        return _encode(raw, _decode(raw, _first_pass(raw)).resize((64, 64), Image.LANCZOS))
    mean, std = _statistics(raw)
    own = raw._unpatchify_latents(_first_pass(raw) * std + mean)  # the VAE's 32 channels
    larger = torch.nn.functional.interpolate(own, scale_factor=2, mode="bilinear")
    return (raw._patchify_latents(larger) - mean) / std


@pytest.mark.parametrize(("upscaler", "denoise", "scheduled"), [("Latent", 0.5, 8), ("Lanczos", 0.3, 13)])
def test_hires_fix_is_txt2img_enlarged_by_hand_then_the_formula(engine, folder, raw, text, upscaler, denoise,
                                                                scheduled):  # fmt: skip
    """The first pass enlarged ×2, then ``int(4 / denoise)`` levels scheduled, the last 4 run, from fresh noise of
    the same seed at 64x64."""
    recorder = Recorder()
    request = _request(folder, init="", steps=4, hires=2.0, hires_upscaler=upscaler, hires_denoise=denoise)
    result = engine.generate(request, recorder)
    assert result.images[0].size == (64, 64)
    assert_pixels_close(result.images[0], _loop(raw, text, _enlarged_by_hand(raw, upscaler), scheduled, 4))
    assert [phase[0] for phase in recorder.phases] == ["txt2img", "hires"] and recorder.steps[-1] == (4, 4)
    assert "Hires upscale: 2" in result.infotext(0) and f"Hires upscaler: {upscaler}" in result.infotext(0)


def test_stop_during_img2img_keeps_the_x0_of_the_step_it_stopped_at(engine, folder):
    """Stopped at step 3 of the 4 run: the picture is that step's x0, the third preview of the same run unstopped."""
    import threading

    pictures = Pictures(init_picture(32))
    request = _request(folder, strength=0.6, preview="full", preview_interval=0)
    whole = Recorder()
    engine.generate(request, whole, pictures=pictures)
    event = threading.Event()
    result = engine.generate(request, Recorder(stop_at=2, event=event), pictures=pictures, stop=event)
    assert result.stopped_by == "stop" and result.interrupted_at == 3 and result.images[0].size == (32, 32)
    assert [frame[0].size for frame in whole.frames] == [(32, 32)] * 4
    assert_pixels_close(result.images[0], whole.frames[2][0])
