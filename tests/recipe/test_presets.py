"""Few-step presets (issue 16 §2): detected from what a tiny model folder says about itself, applied to the options
the user left alone, said in one line, and painting what raw diffusers paints with those settings."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from helpers.progress_recorder import Recorder
from helpers.tiny_sdxl import make_tiny_sdxl

from jupyter_sd.engine import Engine
from jupyter_sd.recipe.presets import PRESETS, detect, lora_names
from jupyter_sd.recipe.request import PaintRequest


def _pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


@pytest.fixture(scope="module")
def turbo_dir(tmp_path_factory):
    """A tiny SDXL folder named like SDXL-Turbo (the name is what says it)."""
    return make_tiny_sdxl(tmp_path_factory.mktemp("presets") / "tiny-sdxl-turbo")


@pytest.fixture(scope="module")
def engine():
    return Engine()


def _copy_with(tiny_model_dir, folder, scheduler=None, card=None):
    shutil.copytree(tiny_model_dir, folder)
    if scheduler:
        config_path = folder / "scheduler" / "scheduler_config.json"
        config = json.loads(config_path.read_text())
        config["_class_name"] = scheduler
        config_path.write_text(json.dumps(config))
        index_path = folder / "model_index.json"
        index = json.loads(index_path.read_text())
        index["scheduler"] = ["diffusers", scheduler]
        index_path.write_text(json.dumps(index))
    if card:
        (folder / "README.md").write_text(card)
    return folder


def test_sdxl_turbo_detected_from_its_name_paints_as_raw_diffusers(engine, turbo_dir):
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionXLPipeline

    recorder = Recorder()
    result = engine.generate(PaintRequest(prompt="a red circle", model=str(turbo_dir), seed=7, rng="cpu"), recorder)
    request = result.request
    assert (request.steps, request.guidance, request.sampler, request.schedule) == (4, 0.0, "Euler a", "SGM Uniform")
    line = "SDXL-Turbo detected: 4 steps, CFG 0, Euler a trailing — pass --steps/--cfg to override"
    assert recorder.notices.count(line) == 1
    assert "Steps: 4, Sampler: Euler a, Schedule type: SGM Uniform, CFG scale: 0" in result.infotext(0)
    # the independent reference: raw diffusers with SDXL-Turbo's documented settings
    raw = StableDiffusionXLPipeline.from_pretrained(turbo_dir)
    raw.set_progress_bar_config(disable=True)
    raw.scheduler = EulerAncestralDiscreteScheduler.from_config(raw.scheduler.config, timestep_spacing="trailing")
    expected = raw(
        "a red circle", num_inference_steps=4, guidance_scale=0.0, generator=[torch.Generator().manual_seed(7)]
    ).images[0]
    assert _pixels(expected).std() > 1
    assert np.abs(_pixels(result.images[0]) - _pixels(expected)).max() <= 1
    # said once per model: the next picture applies it silently
    again = Recorder()
    engine.generate(PaintRequest(prompt="a dog", model=str(turbo_dir), seed=1), again)
    assert line not in again.notices


def test_user_options_win_and_none_turns_it_off(engine, turbo_dir):
    recorder = Recorder()
    request = PaintRequest(prompt="a dog", model=str(turbo_dir), seed=1, steps=2, sampler="Euler")
    result = engine.generate(request, recorder)
    assert (result.request.steps, result.request.sampler) == (2, "Euler")  # yours
    assert (result.request.guidance, result.request.schedule) == (0.0, "SGM Uniform")  # the preset's
    assert "SDXL-Turbo detected: 4 steps, CFG 0, Euler a trailing (your --steps, --sampler kept)" in recorder.notices
    off = engine.generate(request.replace(preset="none", steps=20, sampler="DPM++ 2M"), Recorder())
    assert (off.request.steps, off.request.guidance, off.request.sampler) == (20, 7.0, "DPM++ 2M")


def test_lcm_from_the_scheduler_config_and_lightning_from_the_model_card(engine, tiny_model_dir, tmp_path):
    lcm = _copy_with(tiny_model_dir, tmp_path / "plain-a", scheduler="LCMScheduler")
    recorder = Recorder()
    result = engine.generate(PaintRequest(prompt="a red circle", model=str(lcm), seed=2), recorder)
    assert (result.request.steps, result.request.guidance, result.request.sampler) == (4, 1.0, "LCM")
    assert "LCM detected: 4 steps, CFG 1, LCM — pass --steps/--cfg to override" in recorder.notices
    card = "---\nbase_model: ByteDance/SDXL-Lightning\ntags:\n- text-to-image\n---\n# A distilled model\n\n8-step\n"
    lightning = _copy_with(tiny_model_dir, tmp_path / "plain-b", card=card)
    result = engine.generate(PaintRequest(prompt="a red circle", model=str(lightning), seed=2), Recorder())
    assert (result.request.steps, result.request.sampler, result.request.schedule) == (4, "Euler", "SGM Uniform")
    plain = engine.generate(PaintRequest(prompt="a red circle", model=str(tiny_model_dir), seed=2), Recorder())
    assert (plain.request.steps, plain.request.guidance, plain.request.sampler) == (20, 7.0, "DPM++ 2M")


def test_forced_preset_on_a_plain_model(engine, tiny_model_dir):
    recorder = Recorder()
    result = engine.generate(
        PaintRequest(prompt="a red circle", model=str(tiny_model_dir), seed=2, preset="hyper-sd"), recorder
    )
    assert (result.request.steps, result.request.guidance, result.request.sampler) == (1, 0.0, "TCD")
    assert type(engine._pipe.scheduler).__name__ == "TCDScheduler"
    assert any(line.startswith("Hyper-SD preset: 1 steps, CFG 0, TCD") for line in recorder.notices)


@pytest.mark.parametrize(
    ("names", "config", "card", "family", "expected"),
    [
        (["stabilityai/sdxl-turbo"], None, "", "SDXL", ("sdxl-turbo", None)),
        (["stabilityai/sd-turbo"], None, "", "SD2", ("sd-turbo", None)),
        (["my-turbo-merge"], None, "", "SD2", ("sd-turbo", None)),
        (["my-turbo-merge"], None, "", "SDXL", ("sdxl-turbo", None)),
        (["juggernaut", "sdxl_lightning_8step_lora"], None, "", "SDXL", ("lightning", 8)),
        (["dreamshaper", "Hyper-SDXL-1step-lora"], None, "", "SDXL", ("hyper-sd", 1)),
        (["v1-5", "lcm-lora-sdv1-5"], None, "", "SD1", ("lcm", None)),
        (["plain"], {"_class_name": "LCMScheduler"}, "", "SD1", ("lcm", None)),
        (["plain"], {"_class_name": "EulerDiscreteScheduler"}, "", "SD1", None),
        (["plain"], None, "# My model\n\nIts turbo-charged colours.\n", "SD1", None),  # prose does not count
        (["calcium"], None, "", "SD1", None),  # "lcm" inside a word is not LCM
    ],
)
def test_detect(names, config, card, family, expected):
    assert detect(names, config, card, family) == expected


def test_lora_names_and_choices():
    assert lora_names("a cat <lora:lcm-lora-sdxl:1.0> <LORA:style:0.5>") == ["lcm-lora-sdxl", "style"]
    refusal = r"^preset: unknown 'turbo'; did you mean 'sd-turbo'\? \(allowed: auto, none, sd-turbo"
    with pytest.raises(ValueError, match=refusal):
        PaintRequest(prompt="x", preset="turbo").validate()
    assert set(PRESETS) == {"sd-turbo", "sdxl-turbo", "lcm", "lightning", "hyper-sd"}


def test_pasted_refiner_is_applied_only_when_loadable():
    from jupyter_sd.recipe.a1111 import options_from_params, pasted_notes

    params = {"Steps": "30", "Refiner": "sd_xl_refiner_1.0 [7440042bbd]", "Refiner switch at": "0.8"}
    options = options_from_params(params)
    assert "refiner" not in options and options["refiner_switch"] == "0.8"
    assert "Refiner: 'sd_xl_refiner_1.0 [7440042bbd]' is not in " in " ".join(pasted_notes(params, "tiny"))
    hub = {"Refiner": "stabilityai/stable-diffusion-xl-refiner-1.0", "Refiner switch at": "0.7"}
    assert options_from_params(hub)["refiner"] == "stabilityai/stable-diffusion-xl-refiner-1.0"
    assert not [note for note in pasted_notes(hub, "tiny") if note.startswith("Refiner")]


def test_options_asked_for_are_kept_even_at_our_defaults(engine, turbo_dir):
    """``--steps 20 --sampler "DPM++ 2M"`` are our defaults too: asked for by name, the preset leaves them."""
    recorder = Recorder()
    request = PaintRequest(prompt="a dog", model=str(turbo_dir), seed=1, steps=20, sampler="DPM++ 2M")
    result = engine.generate(request, recorder)
    assert (result.request.steps, result.request.sampler, result.request.guidance) == (20, "DPM++ 2M", 0.0)
    assert result.request.schedule == "SGM Uniform"  # the preset's: not asked for
