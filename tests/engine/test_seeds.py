"""Variation seeds and seed resize, exactly as A1111: a picture equals one painted from latents built here."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers.paint_modes import raw_txt2img
from helpers.pixels import assert_pixels_close, pixels
from PIL import Image

from jupyter_sd.engine import Engine
from jupyter_sd.engine.pictures import Pictures
from jupyter_sd.engine.schedulers import make_scheduler
from jupyter_sd.engine.seeds import batch_seeds, image_noise, slerp
from jupyter_sd.recipe.request import PaintRequest


def reference_slerp(val: float, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """A1111's slerp on one (C, H, W) noise, written out per (channel, column): the vectors run down dim 1."""
    out = np.empty_like(low)
    channels, _, columns = low.shape
    cosines = np.empty((channels, columns))
    for c in range(channels):
        for w in range(columns):
            a, b = low[c, :, w], high[c, :, w]
            cosines[c, w] = float(np.dot(a / np.linalg.norm(a), b / np.linalg.norm(b)))
    if cosines.mean() > 0.9995:
        return low * val + high * (1 - val)  # A1111's fallback, its weights as written
    for c in range(channels):
        for w in range(columns):
            omega = math.acos(cosines[c, w])
            so = math.sin(omega)
            out[c, :, w] = math.sin((1 - val) * omega) / so * low[c, :, w] + math.sin(val * omega) / so * high[c, :, w]
    return out


def randn(seed: int, shape) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed))


def test_slerp_matches_the_formula_per_column():
    low, high = randn(1, (4, 6, 5)), randn(2, (4, 6, 5))
    for val in (0.0, 0.3, 1.0):
        expected = reference_slerp(val, low.double().numpy(), high.double().numpy())
        np.testing.assert_allclose(slerp(val, low.double(), high.double()).numpy(), expected, rtol=1e-9, atol=1e-9)
    # the norms are over dim 1 only: rescaling one column of `high` changes nothing but that column's weight
    scaled = high.clone()
    scaled[:, :, 0] *= 3
    assert torch.allclose(slerp(0.3, low, scaled)[:, :, 1:], slerp(0.3, low, high)[:, :, 1:], atol=1e-6)


def test_slerp_falls_back_with_the_weights_as_written():
    low = randn(1, (4, 6, 5))
    high = 2 * low  # same direction everywhere: every cosine is 1 > 0.9995
    assert torch.allclose(slerp(0.3, low, high), low * 0.3 + high * 0.7)  # 1.7·low, not the lerp's 1.3·low


def test_batch_seeds_follow_a1111():
    assert batch_seeds(10, 50, 0.0, 2, 3) == ([12, 13, 14], [52, 53, 54])
    assert batch_seeds(10, 50, 0.4, 2, 3) == ([10, 10, 10], [52, 53, 54])  # the seed stays, the variation counts


def test_seed_resize_pastes_the_small_noise_in_the_middle():
    noise = image_noise((4, 8, 8), [7], resize_from=(32, 32))[0]  # made as for 32x32 pixels: 4x4 latents
    assert torch.equal(noise[:, 2:6, 2:6], randn(7, (4, 4, 4)))
    canvas = randn(7, (4, 8, 8))
    outside = torch.ones(8, 8, dtype=torch.bool)
    outside[2:6, 2:6] = False
    assert torch.equal(noise[:, outside], canvas[:, outside])
    bigger = image_noise((4, 4, 4), [7], resize_from=(64, 64))[0]  # larger than the picture: its middle is kept
    assert torch.equal(bigger, randn(7, (4, 8, 8))[:, 2:6, 2:6])


@pytest.fixture(scope="module")
def engine():
    return Engine()


@pytest.fixture(scope="module")
def raw(tiny_model_dir):
    return raw_txt2img(tiny_model_dir)


@pytest.mark.parametrize("sampler", ["DPM++ 2M", "Euler a"])
def test_variation_picture_equals_latents_built_by_the_formula(engine, raw, tiny_model_dir, sampler):
    """n=2: seed 5 for both, variation seeds 40 and 41, strength 0.35; the latents built here by A1111's rule."""
    generators = [torch.Generator("cpu").manual_seed(5) for _ in range(2)]
    latents = []
    for generator, subseed in zip(generators, (40, 41)):
        noise = torch.randn((4, 8, 8), generator=generator)  # the seed's noise, drawn from the sampler's generator
        mixed = reference_slerp(0.35, noise.double().numpy(), randn(subseed, (4, 8, 8)).double().numpy())
        latents.append(torch.from_numpy(mixed).float())
    raw.scheduler = make_scheduler(sampler, "Automatic", raw._base)
    expected = raw(
        "a red circle",
        num_inference_steps=5,
        guidance_scale=7.0,
        latents=torch.stack(latents),
        generator=generators,
        num_images_per_prompt=2,
    ).images
    request = PaintRequest(
        prompt="a red circle",
        model=str(tiny_model_dir),
        steps=5,
        seed=5,
        n=2,
        sampler=sampler,
        save=False,
        variation_seed=40,
        variation_strength=0.35,
        preview="none",
        rng="cpu",
    )
    result = engine.generate(request)
    for ours, theirs in zip(result.images, expected):
        assert_pixels_close(ours, theirs)
    assert result.seeds == [5, 5] and result.variation_seeds == [40, 41]
    assert "Seed: 5, Size: 16x16, Model: " in result.infotext(1)
    text = "Model: tiny-model0, Variation seed: 41, Variation seed strength: 0.35, RNG: CPU, Version"
    assert text in result.infotext(1)
    alone = engine.generate(request.replace(n=1, variation_seed=41))  # image 2 of the batch, painted alone
    assert np.abs(pixels(alone.images[0]) - pixels(result.images[1])).max() <= 2


def test_strength_zero_is_the_plain_picture_and_one_is_the_variation_seeds(engine, tiny_model_dir):
    base = PaintRequest(prompt="a fox", model=str(tiny_model_dir), steps=4, seed=5, preview="none", save=False)
    plain = engine.generate(base).images[0]
    same = engine.generate(base.replace(variation_seed=9, variation_strength=0.0)).images[0]
    assert np.array_equal(pixels(plain), pixels(same))
    other_seed = engine.generate(base.replace(seed=9)).images[0]
    full = engine.generate(base.replace(variation_seed=9, variation_strength=1.0)).images[0]
    assert np.abs(pixels(full) - pixels(other_seed)).max() <= 1  # slerp at 1 is the variation seed's noise


def test_random_variation_seed_is_recorded(engine, tiny_model_dir):
    request = PaintRequest(
        prompt="a fox", model=str(tiny_model_dir), steps=2, seed=5, variation_strength=0.2, preview="none", save=False
    )
    result = engine.generate(request)
    assert result.request.variation_seed >= 0 and result.variation_seeds == [result.request.variation_seed]


@pytest.mark.parametrize(
    "options", [{"init": "x"}, {"init": "x", "mask": "m"}, {"hires": 2}, {"seed_resize_from": "32x32"}]
)
def test_variation_applies_in_every_mode(engine, tiny_model_dir, options):
    from PIL import Image

    init = Image.fromarray((np.arange(16 * 16 * 3) % 251).astype(np.uint8).reshape(16, 16, 3))
    mask = Image.new("L", (16, 16), 0)
    mask.paste(255, (4, 4, 12, 12))
    pictures = Pictures(init, mask if "mask" in options else None) if "init" in options else None
    base = PaintRequest(
        prompt="a fox",
        model=str(tiny_model_dir),
        steps=4,
        seed=5,
        width=16,
        height=16,
        preview="none",
        save=False,
        mask_blur=0,
        **options,
    )
    plain = engine.generate(base, pictures=pictures).images[0]
    if "seed_resize_from" in options:
        assert not np.array_equal(pixels(plain), pixels(engine.generate(base.replace(seed_resize_from="")).images[0]))
        return
    varied = engine.generate(base.replace(variation_seed=3, variation_strength=0.5), pictures=pictures).images[0]
    assert not np.array_equal(pixels(plain), pixels(varied))
    again = engine.generate(base.replace(variation_seed=3, variation_strength=0.5), pictures=pictures).images[0]
    assert np.array_equal(pixels(varied), pixels(again))


# -- A1111's Eta noise seed delta (ENSD) -------------------------------------------------------------------------


def _ensd_request(tiny_model_dir, **options) -> PaintRequest:
    base = dict(prompt="a red circle", model=str(tiny_model_dir), steps=5, seed=12, width=16, height=16)
    return PaintRequest(**{**base, "preview": "none", "save": False, "rng": "cpu", **options})


@pytest.mark.parametrize("sampler", ["Euler a", "DPM2 a"])
def test_ensd_restarts_the_step_noise_from_seed_plus_delta(engine, raw, tiny_model_dir, sampler):
    """A1111's rule, said with plain diffusers: the starting noise from the seed, every step's noise from a
    generator seeded with seed + ENSD (its ImageRNG re-creates the generators after the first noise)."""
    raw.scheduler = make_scheduler(sampler, "Automatic", raw._base)
    expected = raw(
        "a red circle",
        num_inference_steps=5,
        guidance_scale=7.0,
        width=16,
        height=16,
        latents=randn(12, (1, raw.unet.config.in_channels, 16 // raw.vae_scale_factor, 16 // raw.vae_scale_factor)),
        generator=[torch.Generator("cpu").manual_seed(12 + 31337)],
    ).images[0]
    ours = engine.generate(_ensd_request(tiny_model_dir, sampler=sampler, eta_noise_seed_delta=31337))
    assert_pixels_close(ours.images[0], expected)
    plain = engine.generate(_ensd_request(tiny_model_dir, sampler=sampler))
    assert not np.array_equal(pixels(plain.images[0]), pixels(ours.images[0]))  # ENSD changed the picture
    assert "ENSD: 31337" in ours.infotext(0) and "ENSD" not in plain.infotext(0)


def test_ensd_leaves_other_samplers_alone_and_is_not_written_for_them(engine, tiny_model_dir):
    """A1111 applies (and writes) ENSD only for samplers whose step noise comes from the generator."""
    with_delta = engine.generate(_ensd_request(tiny_model_dir, sampler="DPM++ 2M", eta_noise_seed_delta=31337))
    without = engine.generate(_ensd_request(tiny_model_dir, sampler="DPM++ 2M"))
    assert np.array_equal(pixels(with_delta.images[0]), pixels(without.images[0]))
    assert "ENSD" not in with_delta.infotext(0)


def test_ensd_acts_in_img2img_and_the_hires_pass_too(engine, tiny_model_dir):
    init = Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8))
    for options, pictures in (
        (dict(init="x", strength=0.6), Pictures(init)),
        (dict(hires=2, hires_steps=3, hires_denoise=0.6), None),
    ):
        plain = engine.generate(_ensd_request(tiny_model_dir, sampler="Euler a", **options), pictures=pictures)
        delta = engine.generate(
            _ensd_request(tiny_model_dir, sampler="Euler a", eta_noise_seed_delta=31337, **options), pictures=pictures
        )
        again = engine.generate(
            _ensd_request(tiny_model_dir, sampler="Euler a", eta_noise_seed_delta=31337, **options), pictures=pictures
        )
        assert not np.array_equal(pixels(plain.images[0]), pixels(delta.images[0])), options
        assert np.array_equal(pixels(delta.images[0]), pixels(again.images[0])), options


def test_a_pasted_ensd_is_applied_not_ignored():
    from jupyter_sd.recipe.a1111 import ignored_infotext_keys, options_from_params

    params = {"Steps": "20", "Sampler": "Euler a", "Seed": "1", "ENSD": "31337"}
    assert options_from_params(params)["eta_noise_seed_delta"] in (31337, "31337")
    assert ignored_infotext_keys(params) == []
