"""Prompt templates painted on the tiny model: one prompt per picture by its seed, recipes, the magic, plots, batches.

Painted with the `tiny_model_dir` model at 16 px and 1–2 steps. References: the prompts each seed draws alone
(`expand_random`), the same picture painted from its recipe, the saved PNGs' text.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from helpers.ipython_shell import run
from helpers.progress_recorder import Recorder

import jupyter_sd
from jupyter_sd.library import folder
from jupyter_sd.painting import session as painter
from jupyter_sd.painting.store import read_parameters
from jupyter_sd.recipe.dynamic_prompts import expand_random
from jupyter_sd.recipe.paste import read_pasted

pytest.importorskip("dynamicprompts")

ANIMALS = {"cat", "dog", "fox", "owl", "bee"}


@pytest.fixture()
def models(tmp_path, fresh_settings):
    """A models folder whose ``wildcards/`` the test fills (the kernel's folder for the test's length)."""
    root = tmp_path / "models"
    (root / "wildcards").mkdir(parents=True)
    (root / "wildcards" / "animals.txt").write_text("\n".join(sorted(ANIMALS)) + "\n")
    (root / "wildcards" / "pet.txt").write_text("a small __animals__\n")  # nested
    folder.set_models_dir(root)
    yield root
    folder.set_models_dir(None)


@pytest.fixture()
def common(tiny_model_dir, tmp_path):
    return {"model": str(tiny_model_dir), "steps": 2, "size": "16x16", "outdir": str(tmp_path / "out")}


def pixels(image):
    return np.asarray(image, dtype=np.int16)


def test_each_picture_draws_its_prompt_from_its_own_seed(models, common):
    result = jupyter_sd.paint("__pet__ in {snow|rain|fog|sun}", seed=40, n=3, repeat=2, view=Recorder(), **common)
    assert result.seeds == [40, 41, 42, 43, 44, 45] and len(result.images) == len(result.paths) == 6
    expected = expand_random("__pet__ in {snow|rain|fog|sun}", "", result.seeds, models / "wildcards").prompts
    assert result.prompts == expected and len(set(expected)) > 1
    for prompt in result.prompts:  # the nested wildcard expanded all the way
        assert prompt.split()[:2] == ["a", "small"] and prompt.split()[2] in ANIMALS
    assert result.request.prompt == "__pet__ in {snow|rain|fog|sun}" and result.request.n == 3
    assert painter.get_engine().last_result is result


def test_the_recipe_keeps_the_prompt_that_ran_and_the_template(models, common):
    result = jupyter_sd.paint("a {red|green|blue} __animals__", negative_prompt="ugly", seed=7, n=2, **common)
    text = read_parameters(result.paths[1])
    ran = result.prompts[1]
    assert text.startswith(f"{ran}\nNegative prompt: ugly\nSteps: 2, ")
    assert text.endswith("\nTemplate: a {red|green|blue} __animals__\nNegative Template: ugly")
    assert "Seed: 8," in text
    recipe = result.recipe(1)
    assert recipe.prompt == ran and recipe.seed == 8 and recipe.n == 1
    again = jupyter_sd.paint(**recipe.to_dict())  # the recipe repaints the same picture
    assert np.array_equal(pixels(again.images[0]), pixels(result.images[1]))
    template = jupyter_sd.paint(**{**result.request.to_dict(), "save": False})  # so does the template request
    assert template.prompts == result.prompts
    assert np.array_equal(pixels(template.images[1]), pixels(result.images[1]))


def test_a_pasted_template_recipe_paints_the_prompt_that_ran(shell, models, common, capsys):
    first = jupyter_sd.paint("a {red|blue} __animals__", seed=3, **common)
    text = read_parameters(first.paths[0])
    assert read_pasted(text).options["prompt"] == first.prompts[0]
    again = run(shell, f"%%paint --model {common['model']} -o {common['outdir']}\n{text}")
    assert type(again).__name__ == "PaintResult" and again.request.prompt == first.prompts[0]
    assert np.array_equal(pixels(again.images[0]), pixels(first.images[0]))
    said = capsys.readouterr().out
    assert "Template: painted the prompt that ran, drawn from the template 'a {red|blue} __animals__'" in said


def test_a_notebook_variable_and_a_variant_in_one_cell(shell, models, common):
    shell.user_ns["where"] = "in the snow"
    cell = f"%%paint --model {common['model']} --steps 1 --seed 11 -n 2 -o {common['outdir']}\na {{cat|dog}} {{where}}"
    result = run(shell, cell)
    assert result.request.prompt == "a {cat|dog} in the snow"
    assert result.prompts == expand_random("a {cat|dog} in the snow", "", [11, 12]).prompts
    assert all(prompt in ("a cat in the snow", "a dog in the snow") for prompt in result.prompts)


def test_novelai_braces_reach_the_encoder_as_written(shell, models, common):
    result = run(
        shell, f"%%paint --model {common['model']} --steps 1 --seed 2 -o {common['outdir']}\n{{masterpiece}}, a fox"
    )
    assert type(result).__name__ == "PaintResult" and result.request.prompt == "{masterpiece}, a fox"
    assert read_parameters(result.paths[0]).startswith("{masterpiece}, a fox\nSteps: 1,")
    assert "Template:" not in read_parameters(result.paths[0])


def test_combinatorial_paints_every_combination_up_to_the_cap(models, common):
    every = jupyter_sd.paint("{a|b} {c|d}", combinatorial=True, seed=1, **common)
    assert every.prompts == ["a c", "a d", "b c", "b d"] and every.seeds == [1, 2, 3, 4]
    capped = jupyter_sd.paint(
        "{a|b} {c|d}", combinatorial=True, max_combinations=3, repeat=2, seed=1, view=(seen := Recorder()), **common
    )
    assert capped.prompts == ["a c", "a d", "b c"] * 2 and len(capped.paths) == 6
    assert "prompt: more than 3 combinations; painted the first 3 (--max-combinations)" in seen.notices
    assert capped.recipe(4).prompt == "a d" and capped.recipe(4).combinatorial is False


def test_a_missing_wildcard_paints_as_written_and_says_so_once(models, common):
    seen = Recorder()
    result = jupyter_sd.paint("a __nowhere__ {x|y}", seed=5, n=2, view=seen, **common)
    assert all(prompt.startswith("a __nowhere__ ") for prompt in result.prompts)
    line = f"prompt: no wildcard file for __nowhere__ in {models / 'wildcards'}; painted __nowhere__ as written"
    assert seen.notices.count(line) == 1


def test_stop_between_pictures_keeps_those_made(models, common):
    stop = threading.Event()

    class StopAfterFirst(Recorder):
        def batch(self, images, seeds, result):
            stop.set()

    request = painter.new_request(prompt="a {cat|dog}", seed=1, n=3, **common).validate()
    result = painter.render(request, StopAfterFirst(), stop=stop)
    assert len(result.images) == 1 and result.stopped_by == "stop" and len(result.paths) == 1


def test_xyz_cells_expand_each_on_its_own(models, common):
    plot = jupyter_sd.plot("a {cat|dog|fox|owl|bee}", x="Seed: 1, 2, 3", view=None, **common)
    cells = [plot.cells[(index, 0, 0)] for index in range(3)]
    assert [cell.prompts[0] for cell in cells] == expand_random("a {cat|dog|fox|owl|bee}", "", [1, 2, 3]).prompts
    assert all(read_parameters(cell.paths[0]).endswith("\nTemplate: a {cat|dog|fox|owl|bee}") for cell in cells)


def test_a_batch_paints_each_template_item_on_its_own(models, common):
    result = jupyter_sd.batch(["a {cat|dog} __animals__", "{masterpiece} a fox"], seed=4, n=2, **common)
    assert len(result.paths) == 4
    texts = [read_parameters(path) for path in result.paths]
    assert all(text.endswith("\nTemplate: a {cat|dog} __animals__") for text in texts[:2])
    assert texts[2].startswith("{masterpiece} a fox\n") and "Template:" not in texts[2]


def test_a_batch_counts_a_combinatorial_items_combinations_and_skips_them_once_saved(models, common):
    items = ["a {red|green|blue} __animals__", "a fox"]
    first = jupyter_sd.batch(items, seed=4, combinatorial=True, **common)
    assert [item.images for item in first.items] == [15, 1]  # 3 colours × 5 animals; a plain prompt paints one
    assert len(first.paths) == 16 and first.painted == 2
    again = jupyter_sd.batch(items, seed=4, combinatorial=True, **common)
    assert (again.painted, again.skipped) == (0, 2)  # every combination found saved: nothing painted twice
