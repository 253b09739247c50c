"""165 generation-data texts people really posted (tests/fixtures/recipes/corpus.txt, each with its source).

Each must paint (never refused: A1111 paints them all), and every key it carries must come back in our picture's
infotext with its value, or be named in what the cell prints. The key check reads the request and the notes
without painting; a sample of the recipes is then painted for real in a kernel-like shell.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers.ipython_shell import run

from jupyter_sd.engine.plan import what_runs
from jupyter_sd.plots.plan import pasted_plot
from jupyter_sd.recipe.a1111 import OFF_VALUES
from jupyter_sd.recipe.infotext import parse_infotext
from jupyter_sd.recipe.paste import read_pasted
from jupyter_sd.recipe.plot_options import plot_infotext_keys
from jupyter_sd.recipe.request import PaintRequest
from jupyter_sd.recipe.samplers import read_sampler
from jupyter_sd.recipe.values import coerce_options

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "recipes" / "corpus.txt"
RECOMPUTED = {"Model hash", "Lora hashes", "TI hashes", "VAE hash", "Hashes", "Version", "Model"}
"""Keys our picture writes anew: the hashes of the files that really painted, our version, the model that painted
(the pasted model is named when it is not here)."""


def _corpus() -> list[tuple[str, str]]:
    blocks = []
    for block in CORPUS.read_text(encoding="utf-8").split("\n=====\n")[1:]:
        source, _, text = block.partition("\n")
        assert source.startswith("# source: "), block[:80]
        blocks.append((source.removeprefix("# source: "), text.strip("\n")))
    return blocks


RECIPES = _corpus()


def test_the_corpus_is_real_and_big_enough():
    assert len(RECIPES) >= 150
    assert all(source.startswith("https://") for source, _ in RECIPES)
    samplers = {parse_infotext(text)[2].get("Sampler", "") for _, text in RECIPES}
    assert {"DPM++ 2M Karras", "Euler a", "DPM++ SDE Karras"} <= samplers  # the old names most recipes carry


def _painted(text: str) -> tuple[PaintRequest, list[str], set[str]]:
    """The request a pasted text paints (validated, as the engine resolves it), every line the cell prints, and
    the grid's keys when the text is an X/Y/Z grid that paints as a grid here (its grid infotext writes them)."""
    pasted = read_pasted(text)
    request = PaintRequest(**coerce_options(pasted.options)).validate()
    grid_keys: set[str] = set()
    notes = []
    if pasted.plot:  # painted as a grid (its infotext writes the grid's keys) or named in one line
        grid_keys = set(plot_infotext_keys())
        notes += [line for line in pasted_plot(request, pasted.plot)[1:] if line]
    request, changed = what_runs(request)
    return request, notes + pasted.after_painting("tiny") + changed, grid_keys


def _same(key: str, pasted: str, ours: dict[str, object]) -> bool:
    """Whether our infotext carries the pasted value of `key` (as A1111 would write the same setting)."""
    if key == "Sampler":
        sampler, schedule = read_sampler(pasted)
        return ours.get("Sampler") == sampler and (schedule is None or ours.get("Schedule type") == schedule)
    mine = str(ours.get(key, ""))
    if mine == pasted.strip():
        return True
    try:
        return float(mine) == float(pasted)
    except ValueError:
        return re.sub(r"\s", "", mine).lower() == re.sub(r"\s", "", pasted).lower()


def _named(key: str, said: str) -> bool:
    """Whether the cell's lines name `key` (an extension's many keys are named once: ``ADetailer … (11 keys)``)."""
    return key in said or f"{key.split()[0]} … (" in said


@pytest.mark.parametrize(("source", "text"), RECIPES, ids=[f"recipe{i:03d}" for i in range(len(RECIPES))])
def test_every_recipe_paints_and_every_key_comes_back_or_is_named(source, text):
    request, notes, grid_keys = _painted(text)  # a refusal fails here, with its one line
    params = parse_infotext(text)[2]
    ours = request.infotext_params()
    said = " | ".join(notes)
    missing = [
        f"{key}: {value}"
        for key, value in params.items()
        if key not in RECOMPUTED | grid_keys
        and OFF_VALUES.get(key) != value
        and not _same(key, value, ours)
        and not _named(key, said)
    ]
    assert not missing, f"{source}: neither written back nor named: {missing}; said: {said}"
    assert all(len(note) < 300 and "\n" not in note for note in notes), notes


def test_old_names_split_and_the_schedule_comes_back():
    request, _, _ = _painted("a fox\nSteps: 20, Sampler: DPM++ 2M SDE Karras, CFG scale: 7, Seed: 5, Size: 512x512")
    assert (request.sampler, request.schedule) == ("DPM++ 2M SDE", "Karras")
    assert "Sampler: DPM++ 2M SDE, Schedule type: Karras" in request.to_infotext()


def test_a_sampler_diffusers_lacks_paints_with_the_closest_and_says_so():
    request, notes, _ = _painted("a fox\nSteps: 20, Sampler: DPM adaptive, Schedule type: Polyexponential, Seed: 5")
    assert (request.sampler, request.schedule) == ("DPM++ 2M", "Exponential")
    assert notes == [
        "Sampler: DPM adaptive → DPM++ 2M, Schedule type: Polyexponential → Exponential (diffusers has no "
        "equivalent; the picture's data names what ran)"
    ]


def test_a1111s_old_hires_fix_is_read_as_a1111_reads_it():
    text = "a fox\nSteps: 20, Sampler: Euler a, Seed: 5, Size: 1024x768, First pass size: 0x0, Denoising strength: 0.6"
    request, notes, _ = _painted(text)
    assert (request.width, request.height, request.hires_size, request.hires_denoise) == (640, 448, "1024x768", 0.6)
    assert request.hires_enabled and notes == [
        "First pass size 0x0, Size 1024x768: A1111's old hires fix, painted 640x448 then hires 1024x768"
    ]


def test_what_cannot_be_honoured_is_painted_around_in_one_line_each():
    text = (
        "a fox, {masterpiece}\nSteps: 2000, Sampler: Euler b, CFG scale: 7, Seed: 123456789012345, Size: 500x500, "
        "Hires upscale: 2, Hires upscaler: 4x-UltraSharp, Denoising strength: 0.5, ENSD: 31337, RNG: CPU"
    )
    request, notes, _ = _painted(text)
    assert request.prompt == "a fox, {masterpiece}" and request.seed == 123456789012345 and request.rng == "cpu"
    assert (request.steps, request.sampler, request.width, request.height) == (20, "DPM++ 2M", 496, 496)
    assert request.hires_upscaler == "Latent" and request.hires == 2.0
    assert notes[:3] == [
        "steps: must be 1–1000 (got 2000); painted without it",
        "sampler: unknown 'Euler b'; did you mean 'Euler a'? (every choice: %%paint? or docs/options.md); painted "
        "without it",
        "Hires upscaler: '4x-UltraSharp' is not in the models folder's ESRGAN/ (%paint download URL --kind upscaler "
        "gets it); upscaled with Latent",
    ]
    assert "ENSD 31337: only ancestral samplers (Euler a, DPM2 a) use it; DPM++ 2M paints the same" in notes
    assert "size: 500x500 painted at 496x496 (a multiple of 8, as A1111 paints it)" in notes


def test_an_img2img_recipe_names_the_picture_it_needs():
    _, notes, _ = _painted("a fox\nSteps: 20, Sampler: Euler a, Seed: 5, Size: 512x512, Denoising strength: 0.45")
    assert notes == [
        "Denoising strength 0.45: this recipe was made in img2img; painted from text (give --init PICTURE to "
        "repaint that picture)"
    ]


SAMPLE = [0, 7, 21, 40, 63, 88, 120, 150]
"""Recipes painted for real (spread over the corpus's sources), at the bundled model's size so the test is quick."""


@pytest.mark.parametrize("index", SAMPLE)
def test_real_recipes_paint_in_a_cell(shell, tiny_model_dir, tmp_path, capsys, index):
    source, text = RECIPES[index]
    line = f"%%paint --model {tiny_model_dir} --steps 2 --size 32x32 --hires 0 -o {tmp_path}"
    result = run(shell, f"{line}\n{text}")
    assert result.paths and result.paths[0].is_file(), source
    written = parse_infotext(result.infotext(0))[2]
    pasted = parse_infotext(text)[2]
    assert written["Seed"] == str(result.seeds[0]) and result.seeds[0] == int(pasted["Seed"])
    assert written["Sampler"] == read_sampler(pasted["Sampler"])[0] or "sampler:" in capsys.readouterr().out
