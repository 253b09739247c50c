"""LoRA on Chroma, Z-Image, Qwen-Image and Flux.2 (klein, dev) through ``<lora:name:weight>``: a file in diffusers'
layout and one in kohya's (sd-scripts, musubi-tuner) each paint what the family's raw diffusers pipeline paints after
its own ``load_lora_weights`` of the same file and ``set_adapters`` at the tag's weight; two tags at once equal two
adapters; a prompt without tags paints the plain model again, and the infotext names the files' hashes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import tiny_families
from helpers.family_loras import AI_TOOLKIT_LAYERS, ai_toolkit_lora, kohya_lora, peft_lora, zimage_lokr
from helpers.pixels import assert_pixels_close, pixels
from helpers.progress_recorder import Recorder

from jupyter_sd import library
from jupyter_sd.engine import Engine
from jupyter_sd.recipe.request import PaintRequest

PROMPT = "a red circle on a blue background"

FAMILIES = {
    "Chroma": (tiny_families.make_tiny_chroma, "ChromaPipeline", {"guidance_scale": 1.0}),
    "Z-Image": (tiny_families.make_tiny_zimage, "ZImagePipeline", {"guidance_scale": 0.0}),  # (g − 1: no CFG)
    "Qwen-Image": (tiny_families.make_tiny_qwenimage, "QwenImagePipeline", {"true_cfg_scale": 1.0}),
    "Flux.2 klein": (tiny_families.make_tiny_flux2_klein, "Flux2KleinPipeline", {"guidance_scale": 1.0}),
    "Flux.2 [dev]": (tiny_families.make_tiny_flux2_dev, "Flux2Pipeline", {"guidance_scale": 4.0}),
}
"""Each family: its tiny builder, its raw pipeline class, and CFG 1 (no negative pass) in that pipeline's words
(Flux.2 [dev] has no CFG: its card's distilled guidance, 4)."""


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request, tmp_path_factory):
    """The tiny model, a models folder with its LoRA files (``peft_style``, ``kohya_style``, ``ait_style``), and
    an engine."""
    name = request.param
    build, raw_class, _ = FAMILIES[name]
    folder = build(tmp_path_factory.mktemp(f"tiny-{''.join(c for c in name if c.isalnum())}"))
    root = tmp_path_factory.mktemp("models")
    for sub in library.SUBFOLDERS.values():
        (root / sub).mkdir(parents=True)
    before = library.models_dir()
    library.set_models_dir(root)
    peft_lora(name, _raw_pipe(raw_class, folder).transformer, root / "Lora" / "peft_style.safetensors")
    kohya_lora(name, root / "Lora" / "kohya_style.safetensors")
    if name in AI_TOOLKIT_LAYERS:
        ai_toolkit_lora(name, root / "Lora" / "ait_style.safetensors")
    yield name, folder, root / "Lora", Engine()
    library.set_models_dir(before)


def _raw_pipe(raw_class: str, folder):
    import diffusers

    pipe = getattr(diffusers, raw_class).from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _raw(name: str, folder, loras: dict) -> object:
    """The family's own pipeline with diffusers' loader: each file an adapter, `set_adapters` at its weight."""
    _, raw_class, guidance = FAMILIES[name]
    pipe = _raw_pipe(raw_class, folder)
    for path in loras:
        pipe.load_lora_weights(str(path), adapter_name=path.stem)
    if loras:
        pipe.set_adapters([path.stem for path in loras], list(loras.values()))
    generator = torch.Generator("cpu").manual_seed(7)
    call = {"width": 32, "height": 32, "num_inference_steps": 3, "generator": generator, **guidance}
    return pipe(prompt=PROMPT, **call).images[0]


def _request(folder, prompt: str) -> PaintRequest:
    return PaintRequest(prompt=prompt, model=str(folder), width=32, height=32, steps=3, guidance=1.0, seed=7,
                        rng="cpu", preview="none", save=False)  # fmt: skip


@pytest.mark.parametrize(("stem", "weight"), [("peft_style", 0.7), ("kohya_style", 1.0)])
def test_a_lora_paints_what_diffusers_loader_paints(family, stem, weight):
    name, folder, loras, engine = family
    recorder = Recorder()
    result = engine.generate(_request(folder, f"{PROMPT} <lora:{stem}:{weight:g}>"), recorder)
    assert not [line for line in recorder.notices if line.startswith("lora:")], recorder.notices
    expected = _raw(name, folder, {loras / f"{stem}.safetensors": weight})
    assert_pixels_close(result.images[0], expected, tolerance=2)
    plain = _raw(name, folder, {})
    assert np.abs(pixels(plain) - pixels(result.images[0])).max() > 8  # the LoRA changed the picture
    assert f'Lora hashes: "{stem}: ' in result.infotext(0)


@pytest.mark.parametrize("family", list(AI_TOOLKIT_LAYERS), indirect=True)
def test_an_ai_toolkit_lora_paints_what_diffusers_loader_paints(family):
    name, folder, loras, engine = family
    recorder = Recorder()
    result = engine.generate(_request(folder, f"{PROMPT} <lora:ait_style:0.9>"), recorder)
    assert not [line for line in recorder.notices if line.startswith("lora:")], recorder.notices
    assert_pixels_close(result.images[0], _raw(name, folder, {loras / "ait_style.safetensors": 0.9}), tolerance=2)
    assert np.abs(pixels(_raw(name, folder, {})) - pixels(result.images[0])).max() > 8


@pytest.mark.parametrize("family", ["Z-Image"], indirect=True)
def test_an_ai_toolkit_lokr_on_z_image_paints_what_diffusers_loader_paints(family):
    """diffusers' Z-Image loader reads ai-toolkit's LoKr (Kronecker factors) into a peft LoKr adapter: so do we."""
    name, folder, loras, engine = family
    path = zimage_lokr(loras / "lokr_style.safetensors")
    recorder = Recorder()
    result = engine.generate(_request(folder, f"{PROMPT} <lora:lokr_style:0.8>"), recorder)
    assert not [line for line in recorder.notices if line.startswith("lora:")], recorder.notices
    assert_pixels_close(result.images[0], _raw(name, folder, {path: 0.8}), tolerance=2)
    assert np.abs(pixels(_raw(name, folder, {})) - pixels(result.images[0])).max() > 8


def test_two_loras_then_none_paint_two_adapters_then_the_plain_model(family):
    name, folder, loras, engine = family
    both = engine.generate(_request(folder, f"{PROMPT} <lora:peft_style:0.5> <lora:kohya_style:0.8>"))
    expected = _raw(name, folder, {loras / "peft_style.safetensors": 0.5, loras / "kohya_style.safetensors": 0.8})
    assert_pixels_close(both.images[0], expected, tolerance=2)
    text = both.infotext(0)
    assert 'Lora hashes: "peft_style: ' in text and "kohya_style: " in text
    plain = engine.generate(_request(folder, PROMPT))
    fresh = Engine().generate(_request(folder, PROMPT))
    assert np.array_equal(pixels(plain.images[0]), pixels(fresh.images[0]))  # switched off: the plain model
    assert_pixels_close(plain.images[0], _raw(name, folder, {}))
    assert "Lora hashes" not in plain.infotext(0)


@pytest.mark.parametrize(
    "key",
    ["lora_unet_down_blocks_0_attentions_0_proj_in", "lora_unet_input_blocks_4_1_proj_in"],  # SD 1.x's, SDXL's
)
def test_a_lora_for_another_family_is_one_line(family, key):
    from safetensors.torch import save_file

    name, folder, loras, engine = family
    save_file({f"{key}.lora_down.weight": torch.zeros(4, 32), f"{key}.lora_up.weight": torch.zeros(32, 4)},
              str(loras / "sd_thing.safetensors"))  # fmt: skip
    recorder = Recorder()
    result = engine.generate(_request(folder, f"{PROMPT} <lora:sd_thing:1>"), recorder)
    lines = [line for line in recorder.notices if line.startswith("lora:")]
    assert len(lines) == 1 and "sd_thing" in lines[0] and "painting without it" in lines[0], recorder.notices
    assert "\n" not in lines[0] and len(lines[0]) < 200 and "SD 1.x" not in lines[0]
    assert_pixels_close(result.images[0], _raw(name, folder, {}))  # painted without it
