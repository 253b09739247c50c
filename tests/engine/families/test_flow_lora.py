"""LoRA on Flux and SD3 through ``<lora:name:weight>``: a kohya-format Flux LoRA (written here for the tiny Flux)
loads through diffusers' converter, changes the picture, and paints what diffusers' own ``load_lora_weights`` +
``fuse_lora`` paints; the weight scales it, and a prompt without the tag paints the plain model again. SD3 the same
with a LoRA in diffusers' own layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.pixels import assert_pixels_close, pixels
from helpers.progress_recorder import Recorder
from helpers.tiny_flow import diffusers_lora, kohya_flux_lora, make_tiny_sd3

from jupyter_sd import library
from jupyter_sd.engine import Engine
from jupyter_sd.recipe.request import PaintRequest

PROMPT = "a red circle on a blue background"


@pytest.fixture(scope="module")
def lora_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("flux-lora") / "models"
    for folder in library.SUBFOLDERS.values():
        (root / folder).mkdir(parents=True)
    before = library.models_dir()
    library.set_models_dir(root)
    yield kohya_flux_lora(root / "Lora" / "flux_style.safetensors")
    library.set_models_dir(before)


def _fused(flux_dir, lora_file, weight):
    """diffusers' own loader on a raw pipeline: the LoRA converted, merged into the weights at `weight`."""
    from diffusers import FluxPipeline

    pipe = FluxPipeline.from_pretrained(flux_dir)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_lora_weights(str(lora_file))
    pipe.fuse_lora(lora_scale=weight)
    generator = torch.Generator("cpu").manual_seed(7)
    return pipe(PROMPT, width=32, height=32, num_inference_steps=3, generator=generator).images[0]


@pytest.mark.parametrize("weight", [1.0, 0.6])
def test_kohya_flux_lora_equals_diffusers_fused(flux_dir, lora_file, weight):
    engine = Engine()
    request = PaintRequest(prompt=f"{PROMPT} <lora:flux_style:{weight:g}>", model=str(flux_dir), width=32, height=32,
                           steps=3, seed=7, rng="cpu", preview="none", save=False)  # fmt: skip
    recorder = Recorder()
    result = engine.generate(request, recorder)
    assert not [line for line in recorder.notices if line.startswith("lora:")]
    assert_pixels_close(result.images[0], _fused(flux_dir, lora_file, weight), tolerance=2)
    plain = engine.generate(request.replace(prompt=PROMPT)).images[0]
    assert np.abs(pixels(plain) - pixels(result.images[0])).max() > 8  # the LoRA changed the picture
    assert 'Lora hashes: "flux_style: ' in result.infotext(0)
    again = engine.generate(request.replace(prompt=PROMPT)).images[0]
    assert np.array_equal(pixels(again), pixels(plain))  # switched off again


def test_a_lora_for_another_family_is_one_line_on_flux(flux_dir, lora_file, tmp_path):
    from safetensors.torch import save_file

    save_file({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 32),
               "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.zeros(32, 4)},
              str(lora_file.parent / "sd15_thing.safetensors"))  # fmt: skip
    recorder = Recorder()
    request = PaintRequest(prompt=f"{PROMPT} <lora:sd15_thing:1>", model=str(flux_dir), width=32, height=32,
                           steps=1, seed=7, rng="cpu", preview="none", save=False)  # fmt: skip
    Engine().generate(request, recorder)
    lines = [line for line in recorder.notices if line.startswith("lora:")]
    assert len(lines) == 1 and "sd15_thing" in lines[0] and "painting without it" in lines[0], recorder.notices
    assert "\n" not in lines[0] and len(lines[0]) < 200


def test_sd3_lora_in_diffusers_layout_equals_diffusers_fused(lora_file, tmp_path_factory):
    from diffusers import StableDiffusion3Pipeline

    folder = make_tiny_sd3(tmp_path_factory.mktemp("tiny-sd3"))
    raw = StableDiffusion3Pipeline.from_pretrained(folder)
    raw.set_progress_bar_config(disable=True)
    path = diffusers_lora(raw.transformer, lora_file.parent / "sd3_style.safetensors")
    raw.load_lora_weights(str(path))
    raw.fuse_lora(lora_scale=0.7)
    generator = torch.Generator("cpu").manual_seed(7)
    expected = raw(PROMPT, width=32, height=32, num_inference_steps=3, generator=generator).images[0]
    engine, recorder = Engine(), Recorder()
    request = PaintRequest(prompt=f"{PROMPT} <lora:sd3_style:0.7>", model=str(folder), width=32, height=32, steps=3,
                           seed=7, rng="cpu", preview="none", save=False)  # fmt: skip
    result = engine.generate(request, recorder)
    assert not [line for line in recorder.notices if line.startswith("lora:")]
    assert_pixels_close(result.images[0], expected, tolerance=2)
    plain = engine.generate(request.replace(prompt=PROMPT)).images[0]
    assert np.abs(pixels(plain) - pixels(result.images[0])).max() > 8
