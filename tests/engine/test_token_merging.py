"""Token merging (ToMe): A1111's "Token merging ratio", through the tomesd package with A1111's settings."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.pixels import assert_pixels_close, pixels

from jupyter_sd.engine import Engine
from jupyter_sd.recipe.request import PaintRequest

pytest.importorskip("tomesd")


@pytest.fixture(scope="module")
def engine():
    return Engine()


@pytest.fixture(scope="module")
def raw(bundled):
    from diffusers import StableDiffusionPipeline

    from jupyter_sd.engine.schedulers import make_scheduler

    pipe = StableDiffusionPipeline.from_pretrained(bundled, safety_checker=None)
    pipe.scheduler = make_scheduler("Euler", "Automatic", dict(pipe.scheduler.config))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def bundled():
    from jupyter_sd.engine.models import BUNDLED_MODEL

    return str(BUNDLED_MODEL)


def _request(model: str, **options) -> PaintRequest:
    base = dict(prompt="a red circle on a blue background", model=model, steps=6, seed=3, sampler="Euler")
    return PaintRequest(**{**base, "preview": "none", "save": False, "rng": "cpu", **options})


def _raw(pipe, seed: int = 3):
    return pipe(
        "a red circle on a blue background",
        num_inference_steps=6,
        guidance_scale=7.0,
        generator=torch.Generator("cpu").manual_seed(seed),
    ).images[0]


def test_token_merging_equals_diffusers_with_a1111s_tomesd_settings(engine, raw, bundled):
    """A1111 patches with ratio, use_rand=False, merge_attn only (its modules/sd_models.py): so does plain code here."""
    import tomesd

    plain = _raw(raw)
    tomesd.apply_patch(raw, ratio=0.5, use_rand=False, merge_attn=True, merge_crossattn=False, merge_mlp=False)
    try:
        expected = _raw(raw)
    finally:
        tomesd.remove_patch(raw)
    ours = engine.generate(_request(bundled, token_merging=0.5))
    assert_pixels_close(ours.images[0], expected)
    assert not np.array_equal(pixels(expected), pixels(plain))  # the merging changed the picture
    assert "Token merging ratio: 0.5" in ours.infotext(0)
    off = engine.generate(_request(bundled))  # ratio 0 takes the patch off again
    assert_pixels_close(off.images[0], plain)
    assert "Token merging" not in off.infotext(0)


def test_the_hires_pass_takes_its_own_ratio(engine, bundled):
    request = _request(bundled, token_merging=0.3, token_merging_hr=0.6, hires=2, hires_steps=2, width=32, height=32)
    result = engine.generate(request)
    assert engine._pipe.unet._jupyter_sd_tome == 0.6  # the last pass was the hires one
    assert "Token merging ratio: 0.3" in result.infotext(0) and "Token merging ratio hr: 0.6" in result.infotext(0)
    same = engine.generate(request.replace(token_merging_hr=0.0))
    assert engine._pipe.unet._jupyter_sd_tome == 0.3 and "Token merging ratio hr" not in same.infotext(0)
    assert not np.array_equal(pixels(result.images[0]), pixels(same.images[0]))


def test_token_merging_and_fast_are_refused_together():
    with pytest.raises(ValueError, match=r"^token_merging: does not combine with --fast"):
        PaintRequest(prompt="a", token_merging=0.5, fast=True).validate()


def test_a_pasted_ratio_is_applied():
    from jupyter_sd.recipe.a1111 import ignored_infotext_keys, options_from_params

    params = {"Steps": "20", "Sampler": "Euler a", "Token merging ratio": "0.5", "Token merging ratio hr": "0.7"}
    options = options_from_params(params)
    assert (float(options["token_merging"]), float(options["token_merging_hr"])) == (0.5, 0.7)
    assert ignored_infotext_keys(params) == []
