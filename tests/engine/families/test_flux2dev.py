"""FLUX.2 [dev] from a tiny diffusers folder built from config (a Flux2Pipeline: klein's tiny transformer with a
guidance embedder, a 30-layer Mistral 3 16 wide): detection and the load line, ``%%paint --rng cpu`` and ``paint()``
equal to raw ``Flux2Pipeline`` with the same seed, ``--distilled-cfg`` reaching the transformer's guidance input, the
lines for CFG and a negative prompt it cannot take, its card's defaults, previews, refusals, and the memory plan for
its real sizes (a pure function of numbers)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import tiny_families
from helpers.ipython_shell import run
from helpers.pixels import assert_pixels_close, pixels
from helpers.progress_recorder import Recorder

from jupyter_sd import paint
from jupyter_sd.engine import warmup
from jupyter_sd.engine.families import FLUX2_DEV, family_of, family_of_folder
from jupyter_sd.engine.families.fit import fit_request
from jupyter_sd.engine.loading.plan import plan_memory
from jupyter_sd.painting.store import read_parameters
from jupyter_sd.recipe.paste import request_from_infotext
from jupyter_sd.recipe.request import PaintRequest

PROMPT = "a red circle on a blue background"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tiny_families.make_tiny_flux2_dev(tmp_path_factory.mktemp("tiny-flux2-dev"))


@pytest.fixture(scope="module")
def raw_pipe(folder):
    """diffusers' own Flux2Pipeline from the folder, untouched (loaded once: its calls change nothing in it)."""
    from diffusers import Flux2Pipeline

    warmup.wait()  # (a shell's background load builds models with empty weights: none may be built meanwhile)
    pipe = Flux2Pipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _raw(pipe, guidance: float, seed: int = 7, steps: int = 3, size: int = 32):
    """The raw pipeline's picture: its scheduler, encoding and noise from `seed`."""
    generator = torch.Generator("cpu").manual_seed(seed)
    call = {"width": size, "height": size, "num_inference_steps": steps, "guidance_scale": guidance}
    return pipe(prompt=PROMPT, generator=generator, **call).images[0]


def _request(folder, **changes) -> PaintRequest:
    values = {"prompt": PROMPT, "model": str(folder), "width": 32, "height": 32, "steps": 3, "seed": 7, "rng": "cpu",
              "preview": "none", "save": False}  # fmt: skip
    return PaintRequest(**{**values, **changes})


def test_detected_from_its_folder_and_named_in_the_load_line(engine, folder):
    assert family_of_folder(folder) is FLUX2_DEV
    recorder = Recorder()
    engine.generate(_request(folder, steps=1), recorder)
    assert family_of(engine._pipe) is FLUX2_DEV and type(engine._pipe).__name__ == "Flux2Pipeline"
    assert any(line.startswith("loaded ") and "(Flux.2 [dev], 1024x1024" in line for line in recorder.notices)
    info = engine.info()
    assert (info["family"], info["native_size"]) == ("Flux.2 [dev]", "1024x1024")


def test_paint_cell_equals_raw_flux2_pipeline_and_its_recipe_pastes(shell, engine, folder, raw_pipe, tmp_path):
    """Its card's distilled guidance (4) when not given; the recipe says it as Forge does (``Distilled CFG Scale``)."""
    cell = f"%%paint --model {folder} --rng cpu --size 32x32 --steps 3 --seed 7 -o {tmp_path}\n{PROMPT}"
    result = run(shell, cell)
    expected = _raw(raw_pipe, 4.0)
    assert_pixels_close(result.images[0], expected)
    parameters = read_parameters(result.paths[0])
    assert "Steps: 3, Sampler: Euler, Schedule type: Automatic, CFG scale: 1, Seed: 7" in parameters
    assert "Distilled CFG Scale: 4," in parameters and "Emphasis: None" in parameters
    again = paint(PROMPT, model=str(folder), rng="cpu", size="32x32", steps=3, seed=7, save=False, preview="none")
    assert np.array_equal(pixels(again.images[0]), pixels(result.images[0]))
    forge = parameters.replace("Distilled CFG Scale: 4,", "Distilled CFG Scale: 2.5,")  # a recipe pasted, edited
    pasted = request_from_infotext(forge, model=str(folder), save=False, preview="none")
    assert (pasted.distilled_cfg, pasted.guidance) == (2.5, 1.0)
    assert_pixels_close(engine.generate(pasted).images[0], _raw(raw_pipe, 2.5))


def test_distilled_cfg_reaches_the_transformers_guidance(engine, folder, raw_pipe):
    seen = []

    def record(module, args, kwargs):
        seen.append(kwargs["guidance"].clone())

    engine.generate(_request(folder, steps=1))  # (loaded first: then hooked)
    hook = engine._pipe.transformer.register_forward_pre_hook(record, with_kwargs=True)
    try:
        result = engine.generate(_request(folder, steps=2, distilled_cfg=2.5))
    finally:
        hook.remove()
    assert len(seen) == 2 and all(torch.equal(g, torch.full_like(g, 2.5)) for g in seen)
    assert_pixels_close(result.images[0], _raw(raw_pipe, 2.5, steps=2))
    other = engine.generate(_request(folder, steps=2, distilled_cfg=8.0))
    assert_pixels_close(other.images[0], _raw(raw_pipe, 8.0, steps=2))
    assert np.abs(pixels(other.images[0]) - pixels(result.images[0])).max() > 0  # the guidance changed the picture
    assert "Distilled CFG Scale: 2.5" in result.infotext(0)


def test_cfg_and_a_negative_prompt_are_said_and_the_recipe_says_what_painted(engine, folder, raw_pipe):
    recorder = Recorder()
    result = engine.generate(_request(folder, guidance=5.0, negative_prompt="green", steps=2), recorder)
    cfg = "cfg: Flux.2 [dev] is guidance-distilled and takes no CFG: painted at CFG 1 (not 5); its guidance is "
    assert any(line.startswith(cfg) and "--distilled-cfg (4)" in line for line in recorder.notices)
    assert "negative prompt: Flux.2 [dev] runs no negative pass (no CFG): not read" in recorder.notices
    assert "CFG scale: 1," in result.infotext(0) and "Negative prompt" not in result.infotext(0)
    assert_pixels_close(result.images[0], _raw(raw_pipe, 4.0, steps=2))


def test_its_card_defaults_fill_what_the_user_left(engine, folder):
    engine.generate(_request(folder, steps=1))
    pipe = engine._pipe
    fitted, _ = fit_request(FLUX2_DEV, pipe, PaintRequest(prompt=PROMPT, width=40, height=33))
    assert (fitted.steps, fitted.guidance, fitted.distilled_cfg, fitted.sampler) == (50, 1.0, 4.0, "Euler")
    assert (fitted.width, fitted.height) == (40, 32)  # 2×2 patches of the tiny VAE's 1/2 latents: multiples of 4
    mine, _ = fit_request(FLUX2_DEV, pipe, PaintRequest(prompt=PROMPT, steps=20, distilled_cfg=2.0))
    assert (mine.steps, mine.distilled_cfg) == (20, 2.0)


def test_previews_unpack_its_128_channel_sequence(engine, folder):
    recorder = Recorder()
    result = engine.generate(_request(folder, preview="full", preview_interval=0), recorder)
    assert [frame[0].size for frame in recorder.frames] == [(32, 32)] * 3
    assert_pixels_close(recorder.frames[-1][0], result.images[0])  # the last step's x0 is the picture


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"refiner": "refiner"},
            "model: refiner is not supported for Flux.2 [dev] models yet (they paint txt2img, img2img, inpaint)",
        ),
        ({"sampler": "DPM++ 2M SDE"}, "sampler: 'DPM++ 2M SDE' cannot paint Flux.2 [dev] models yet (allowed: Euler"),
    ],
)
def test_what_it_cannot_do_is_one_line(engine, folder, changes, message):
    with pytest.raises(ValueError) as caught:
        engine.generate(_request(folder, **changes))
    text = str(caught.value)
    assert text.startswith(message) and "\n" not in text and len(text) < 200


# FLUX.2 [dev]'s parts in GB: the 32B transformer in bf16 / GGUF Q8_0 / Q4_K, Mistral Small 24B in bf16 / fp8, VAE.
DEV_BF16 = {"transformer": 64.4, "text_encoder": 48.0, "vae": 0.17}
DEV_Q4K_FP8 = {"transformer": 18.7, "text_encoder": 24.0, "vae": 0.17}


def _plan(sizes, vram, ram, gpu):
    return plan_memory(sizes, vram, ram, FLUX2_DEV.activations_gb, gpu, FLUX2_DEV.text_encoders)


def test_the_memory_plan_says_what_fits():
    assert _plan(DEV_BF16, 139.0, 200.0, "141 GB H200").words == "on a 141 GB H200: all on the GPU"
    turns = _plan(DEV_BF16, 79.0, 120.0, "80 GB H100")
    assert turns.offload == "model"
    assert turns.words == "on a 80 GB H100: transformer on GPU while painting, MISTRAL encode on GPU then return to CPU"
    t4 = _plan(DEV_Q4K_FP8, 14.7, 12.7, "15 GB T4")  # a free Colab: not even a Q4_K transformer fits whole
    assert t4.offload == "sequential" and "layer by layer: the text_encoder (24.0 GB) does not fit" in t4.words
    assert t4.words.endswith("host RAM short (42.9 GB of weights, 12.7 GB free): use GGUF/fp8 files")


def test_a1111_syntax_is_read_as_plain_text_and_said_once(engine, folder):
    recorder = Recorder()
    result = engine.generate(_request(folder, prompt="a (red:1.2) circle [on:in:2] blue", steps=1), recorder)
    note = "prompt: Flux.2 [dev]'s Mistral text encoder reads the prompt as plain text (A1111 emphasis, editing"
    assert [line for line in recorder.notices if line.startswith("prompt:")] == [FLUX2_DEV.prompt_note]
    assert FLUX2_DEV.prompt_note.startswith(note) and "Emphasis: None" in result.infotext(0)
