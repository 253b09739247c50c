"""sd-dynamic-prompts' syntax as text: which prompts are templates, random and combinatorial expansion, wildcards.

References: the expansions are checked against what the template allows (each picked value is one of its options),
the counts against the combinations counted by hand, and the kept text against the prompt as written.
"""

from __future__ import annotations

import itertools
import sys

import pytest

from jupyter_sd.library import folder
from jupyter_sd.recipe.dynamic_prompts import (
    expand_combinatorial,
    expand_random,
    has_dynamic_syntax,
    split_templates,
    template_lines,
)
from jupyter_sd.recipe.paste import read_pasted

pytest.importorskip("dynamicprompts")

COLORS = ["red", "green", "blue"]


@pytest.fixture()
def wildcards(tmp_path):
    """A wildcards folder in every format the extension reads: text, a subfolder, YAML, JSON, and nesting."""
    root = tmp_path / "wildcards"
    (root / "animals").mkdir(parents=True)
    (root / "colors.txt").write_text("\n".join(COLORS) + "\n# a comment line\n")
    (root / "animals" / "pets.txt").write_text("cat\ndog\n")
    (root / "animals" / "wild.txt").write_text("wolf\nbear\n")
    (root / "styles.yaml").write_text("art:\n  - oil painting\n  - ink drawing\n")
    (root / "fruit.json").write_text('{"fruit": ["apple", "pear"]}')
    (root / "scene.txt").write_text("a __colors__ __animals/pets__\n")  # nested: a wildcard naming two more
    return root


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a {red|green} cat", True),
        ("{2::red|1::blue}", True),
        ("{2$$a|b|c}", True),
        ("a __colors__ cat", True),
        ("{masterpiece}, a cat", False),
        ("{{best quality}}, {masterpiece}", False),
        ("a [cat|dog] in (snow:1.2) <lora:x:0.5>", False),  # A1111's own alternation is not a variant
        ("50% off, $5, a__b", False),
        ("\\{a|b\\}", False),  # escaped braces are text
        ("", False),
    ],
)
def test_only_variants_and_wildcards_make_a_template(text, expected):
    assert has_dynamic_syntax(text) is expected


def test_the_same_seed_gives_the_same_prompt_and_seeds_vary_it():
    template = "a {red|green|blue|yellow|white} {cat|dog|fox|owl}"
    first = expand_random(template, "", [7, 8, 9, 10, 11, 12])
    again = expand_random(template, "", [12, 11, 10, 9, 8, 7])
    assert first.prompts == again.prompts[::-1]  # each prompt depends on its own seed alone, not its position
    assert len(set(first.prompts)) > 1
    for prompt in first.prompts:
        _, color, animal = prompt.split()
        assert color in {"red", "green", "blue", "yellow", "white"} and animal in {"cat", "dog", "fox", "owl"}


def test_braces_without_a_bar_stay_as_written_beside_a_variant():
    text = "{masterpiece}, a {red|blue} cat, {{best quality}}, [a|b], {x {kept}|x {kept}}, 50% $5"
    for prompt in expand_random(text, "", [1, 2, 3]).prompts:
        assert prompt.startswith("{masterpiece}, a ") and prompt.endswith(
            " cat, {{best quality}}, [a|b], x {kept}, 50% $5"
        )
    assert expand_random("{masterpiece}", "", [1]).prompts == ["{masterpiece}"]


def test_weights_ranges_and_joiners():
    weighted = expand_random("{1000::red|0.001::blue}", "", list(range(20))).prompts
    assert weighted.count("red") >= 19
    ranged = expand_random("{2$$a|b|c}", "", list(range(10))).prompts
    assert all(len(set(p.split(","))) == 2 and set(p.split(",")) <= {"a", "b", "c"} for p in ranged)
    joined = expand_random("{2$$ and $$a|b|c}", "", [3]).prompts[0]
    assert len(joined.split(" and ")) == 2


def test_wildcards_from_text_yaml_json_globs_and_nesting(wildcards):
    seeds = list(range(30))
    colors = expand_random("__colors__", "", seeds, wildcards).prompts
    assert set(colors) == set(COLORS)  # the comment line is not a value
    assert set(expand_random("__animals/*__", "", seeds, wildcards).prompts) == {"cat", "dog", "wolf", "bear"}
    assert set(expand_random("__art__", "", seeds, wildcards).prompts) == {"oil painting", "ink drawing"}
    assert set(expand_random("__fruit__", "", seeds, wildcards).prompts) == {"apple", "pear"}
    for prompt in expand_random("__scene__", "", seeds, wildcards).prompts:  # nested wildcards expand too
        article, color, pet = prompt.split()
        assert article == "a" and color in COLORS and pet in {"cat", "dog"}
    nested_variant = expand_random("{a|{b|c}}", "", seeds).prompts
    assert set(nested_variant) == {"a", "b", "c"}


def test_a_missing_wildcard_stays_as_written_and_is_named_once(wildcards):
    found = expand_random("a __colors__ __nothing__ {x|y}", "__nothing__", [1, 2, 3], wildcards)
    assert all(prompt.split()[2] == "__nothing__" and prompt.split()[1] in COLORS for prompt in found.prompts)
    assert found.negative_prompts == ["__nothing__"] * 3
    assert found.notes[0] == f"prompt: no wildcard file for __nothing__ in {wildcards}; painted __nothing__ as written"
    assert len(found.notes) == 2 and found.notes[1].startswith("negative prompt: no wildcard file for __nothing__")


def test_the_models_folder_wildcards_and_a1111s_extension_folder(tmp_path, wildcards):
    models = tmp_path / "webui" / "models"
    models.mkdir(parents=True)
    extension = tmp_path / "webui" / "extensions" / "sd-dynamic-prompts" / "wildcards"
    extension.mkdir(parents=True)
    (extension / "colors.txt").write_text("teal\n")
    try:
        folder.set_models_dir(models)
        assert folder.wildcards_dir() == extension  # an A1111 install's folder, read as it is
        assert expand_random("__colors__", "", [1]).prompts == ["teal"]
        (models / "wildcards").mkdir()
        (models / "wildcards" / "colors.txt").write_text("plum\n")
        assert folder.wildcards_dir() == models / "wildcards"  # the models folder's own wins
        assert expand_random("__colors__", "", [1]).prompts == ["plum"]
    finally:
        folder.set_models_dir(None)
    assert "wildcard" not in folder.SUBFOLDERS  # model listings and lookups never see text files


def test_combinatorial_counts_every_combination_and_the_cap(wildcards):
    every = expand_combinatorial("{a|b} {c|d|e} __colors__", "", 100, wildcards)
    expected = {f"{x} {y} {z}" for x, y, z in itertools.product("ab", "cde", COLORS)}
    assert len(every.prompts) == 18 and set(every.prompts) == expected and every.notes == []
    capped = expand_combinatorial("{a|b} {c|d|e} __colors__", "", 5, wildcards)
    assert capped.prompts == every.prompts[:5]
    assert capped.notes == ["prompt: more than 5 combinations; painted the first 5 (--max-combinations)"]
    exact = expand_combinatorial("{a|b} {c|d|e}", "", 6)
    assert len(exact.prompts) == 6 and exact.notes == []
    with_negative = expand_combinatorial("{a|b|c}", "{x|y}", 10)
    assert with_negative.negative_prompts == ["x", "y", "x"]  # the negative's combinations taken in turn


def test_a_missing_wildcard_in_combinatorial_mode_is_one_value(wildcards):
    found = expand_combinatorial("{a|b} __nothing__", "", 100, wildcards)
    assert found.prompts == ["a __nothing__", "b __nothing__"]


def test_unreadable_syntax_paints_as_written():
    found = expand_random("{a|b} and {c|d %{e}}", "", [1, 2])
    assert found.prompts == ["{a|b} and {c|d %{e}}"] * 2
    assert found.notes[0].startswith("prompt: could not read its dynamic-prompts syntax (")


def test_without_the_library_the_text_paints_as_written(monkeypatch):
    monkeypatch.setitem(sys.modules, "dynamicprompts.generators", None)
    found = expand_random("a {red|blue} cat", "", [1, 2])
    assert found.prompts == ["a {red|blue} cat"] * 2
    assert "pip install 'jupyter_sd[wildcards]'" in found.notes[0]


def test_template_lines_are_read_back_as_sd_dynamic_prompts_writes_them():
    text = "a red cat\nNegative prompt: ugly\nSteps: 20, Sampler: Euler, Seed: 5"
    written = text + template_lines("a {red|blue} cat", "{ugly|bad}")
    assert written.endswith("Seed: 5\nTemplate: a {red|blue} cat\nNegative Template: {ugly|bad}")
    assert split_templates(written) == (text, "a {red|blue} cat", "{ugly|bad}")
    assert split_templates(text) == (text, "", "")
    only_negative = text + template_lines("", "{ugly|bad}")
    assert split_templates(only_negative) == (text, "", "{ugly|bad}")
    prompt_line = "Template: a prompt that says so\nSteps: 20, Sampler: Euler, Seed: 5"
    assert split_templates(prompt_line) == (prompt_line, "", "")


def test_pasting_a_template_recipe_paints_the_prompt_that_ran_and_says_so():
    pasted = read_pasted(
        "a red cat\nNegative prompt: ugly\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 5\n"
        "Template: a {red|blue} cat\nNegative Template: ugly"
    )
    assert pasted.options["prompt"] == "a red cat" and pasted.options["negative_prompt"] == "ugly"
    assert pasted.options["seed"] == "5" and pasted.template == "a {red|blue} cat"
    assert pasted.notes == ["Template: painted the prompt that ran, drawn from the template 'a {red|blue} cat'"]
    assert "Template" not in pasted.params and pasted.after_painting("tiny") == pasted.notes
