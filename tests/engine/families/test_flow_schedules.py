"""Schedule types and ``--shift`` on Flux and SD3 against diffusers' FlowMatchEulerDiscreteScheduler configured by
hand, and a Forge Flux recipe pasted into a cell painting with its values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.ipython_shell import run
from helpers.pixels import assert_pixels_close, pixels
from helpers.tiny_flow import make_tiny_flux, make_tiny_sd3

from jupyter_sd.recipe.request import PaintRequest

PROMPT = "a red circle on a blue background"
CLASSES = {"flux": "FluxPipeline", "sd3": "StableDiffusion3Pipeline"}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return {
        "flux": make_tiny_flux(tmp_path_factory.mktemp("tiny-flux")),
        "sd3": make_tiny_sd3(tmp_path_factory.mktemp("tiny-sd3")),
    }


def _raw(family, folder, guidance=None, **scheduler):
    """diffusers' pipeline with its own Euler rebuilt from its config with `scheduler`'s changes (the reference)."""
    import diffusers
    from diffusers import FlowMatchEulerDiscreteScheduler

    pipe = getattr(diffusers, CLASSES[family]).from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config, **scheduler)
    guidance = guidance if guidance is not None else {"flux": 3.5, "sd3": 7.0}[family]
    generator = torch.Generator("cpu").manual_seed(9)
    return pipe(PROMPT, width=32, height=32, num_inference_steps=4, guidance_scale=guidance,
                generator=generator).images[0]  # fmt: skip


def _request(folder, **changes):
    base = dict(prompt=PROMPT, model=str(folder), width=32, height=32, steps=4, seed=9, rng="cpu", preview="none",
                save=False)  # fmt: skip
    return PaintRequest(**{**base, **changes})


@pytest.mark.parametrize("family", ["flux", "sd3"])
@pytest.mark.parametrize(
    ("schedule", "scheduler"),
    [("Simple", {}), ("Beta", {"use_beta_sigmas": True}), ("Karras", {"use_karras_sigmas": True})],
)
def test_schedule_types_equal_diffusers_flow_euler(engine, folders, family, schedule, scheduler):
    result = engine.generate(_request(folders[family], schedule=schedule))
    expected = _raw(family, folders[family], **scheduler)
    assert_pixels_close(result.images[0], expected)
    assert f"Schedule type: {schedule}," in result.infotext(0)
    if scheduler:  # Beta and Karras space the noise levels otherwise: another picture than Automatic's
        automatic = engine.generate(_request(folders[family])).images[0]
        assert np.abs(pixels(automatic) - pixels(result.images[0])).max() > 1


@pytest.mark.parametrize("family", ["flux", "sd3"])
def test_shift_is_a_static_shift_written_as_forge_writes_it(engine, folders, family):
    result = engine.generate(_request(folders[family], shift=1.5))
    assert_pixels_close(result.images[0], _raw(family, folders[family], shift=1.5, use_dynamic_shifting=False))
    assert "Shift: 1.5" in result.infotext(0)
    plain = engine.generate(_request(folders[family]))
    assert "Shift" not in plain.infotext(0)
    assert np.abs(pixels(plain.images[0]) - pixels(result.images[0])).max() > 1


def test_shift_on_a_unet_model_is_one_line(engine, tiny_model_dir):
    with pytest.raises(ValueError) as info:
        engine.generate(PaintRequest(prompt=PROMPT, model=str(tiny_model_dir), steps=1, shift=3.0, save=False))
    assert str(info.value) == "shift: --shift is for flow-matching models (Flux, SD3); SD1 models have no shift"


def test_a_pasted_forge_flux_recipe_paints_with_its_values(shell, folders, tmp_path):
    expected = _raw("flux", folders["flux"], guidance=5.0, shift=2.0, use_dynamic_shifting=False)
    recipe = (
        "Steps: 4, Sampler: Euler, Schedule type: Simple, CFG scale: 1, Distilled CFG Scale: 5, Seed: 9, "
        "Size: 32x32, Model hash: 0123456789, Model: flux1-dev-bnb-nf4, Shift: 2, Version: f2.0.1v1.10.1"
    )
    cell = f"%%paint --model {folders['flux']} --rng cpu -o {tmp_path}\n{PROMPT}\n{recipe}"
    result = run(shell, cell)
    assert_pixels_close(result.images[0], expected)
    text = result.infotext(0)
    assert "Schedule type: Simple" in text and "Distilled CFG Scale: 5" in text and "Shift: 2" in text
