"""The magic in a real InteractiveShell: parsing, one-line errors, config, variables."""

import pytest
from helpers.ipython_shell import run
from IPython.core.error import UsageError

from jupyter_sd.magics import HELP
from jupyter_sd.painting.variables import expand_variables


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("--steps 0", "steps: must be 1–1000 (got 0)"),
        ("--steps 1001", "steps: must be 1–1000 (got 1001)"),
        ("--steps many", "steps: expected a whole number (got 'many')"),
        ("--size big", "size: expected WIDTHxHEIGHT such as 512x512 (got 'big')"),
        ('--sampler "Euler b"', "sampler: unknown 'Euler b'"),
        ("--schedule karrass", "did you mean 'Karras'?"),
        ("--guidance 31", "guidance: must be 0–30 (got 31)"),
        ("--stepz 3", "unknown option --stepz; did you mean --steps"),
        ("--hires-upscale 2", "unknown option --hires-upscale; did you mean --hires-upscaler"),
        ("a fox", "unexpected 'a': options start with -- and the prompt goes in the cell body"),
        ("--steps", "argument --steps: expected one argument"),
        ("--sampler 'Euler a", "could not read the options (No closing quotation): check the quotes"),
        ("--model weights.ckpt", "is a pickle checkpoint"),
        ("--preview fast", "preview: unknown 'fast'"),
    ],
)
def test_bad_options_raise_plain_usage_error(shell, tmp_path, line, message):
    with pytest.raises(UsageError) as info:
        run(shell, f"%%paint {line} -o {tmp_path / 'out'}\na fox")
    assert type(info.value) is UsageError  # a subclass would print a traceback
    assert message in str(info.value) and "\n" not in str(info.value) and len(str(info.value)) < 200
    assert not (tmp_path / "out").exists()


def test_an_empty_prompt_paints_as_a1111_paints_it(shell, tiny_model_dir, tmp_path):
    result = run(shell, f"%%paint --model {tiny_model_dir} --steps 1 --seed 2 --rng cpu -o {tmp_path}\n\n")
    assert result.request.prompt == "" and result.paths[0].is_file()


def test_a_size_that_is_no_multiple_of_8_paints_rounded_down_and_says_so(shell, tiny_model_dir, tmp_path, capsys):
    result = run(shell, f"%%paint --model {tiny_model_dir} --steps 1 --size 20x30 -o {tmp_path}\na fox")
    assert result.images[0].size == (16, 24) and (result.request.width, result.request.height) == (16, 24)
    assert "size: 20x30 painted at 16x24 (a multiple of 8, as A1111 paints it)" in capsys.readouterr().out
    assert "Size: 16x24" in result.infotext(0)


def test_the_line_magic_alone_shows_the_help(shell, capsys):
    run(shell, "%paint")
    assert capsys.readouterr().out.startswith("Paint a picture from the cell body")


def test_braces_that_are_no_variable_stay_as_written():
    """IPython's rule: only a notebook variable is filled in; NovelAI's braces reach the encoder as A1111 sends them."""
    body = "{masterpiece}, {{best quality}}, a {colour} fox {\nNegative prompt: blurry} }"
    assert expand_variables(body, {"In": [], "other": 1}) == (body, [])


def test_a_kept_brace_that_looks_like_a_variable_is_named(shell):
    text, notes = expand_variables("a {colur} fox, {masterpiece}", {"colour": "red", "In": []})
    assert text == "a {colur} fox, {masterpiece}"
    assert notes == ["prompt: kept {colur} as written (did you mean the variable {colour}?)"]


def test_variables_fill_with_attributes_items_and_specs():
    class Pet:
        kind = "fox"

    namespace = {"pet": Pet(), "colours": ["red", "blue"], "n": 7}
    assert expand_variables("{pet.kind} {colours[1]} {n:03d} {n!r}", namespace) == ("fox blue 007 7", [])
    text, notes = expand_variables("a {pet.size} one", namespace)
    assert text == "a {pet.size} one" and notes[0].startswith("prompt: kept {pet.size} as written (AttributeError")


def test_variables_fill_the_prompt(shell, tiny_model_dir, tmp_path):
    shell.user_ns["colour"] = "red"
    result = run(
        shell, f"%%paint --model {tiny_model_dir} --steps 1 --seed 3 -o {tmp_path}\na {{colour}} fox {{{{literal}}}}"
    )
    assert result.request.prompt == "a red fox {{literal}}"
    assert expand_variables("no braces", {}) == ("no braces", [])


def test_quoted_values_and_line_magic(shell, tiny_model_dir, tmp_path):
    result = run(
        shell, f'%paint --model {tiny_model_dir} --steps 2 --sampler "DPM++ 2M SDE" --seed 8 -o {tmp_path} a tiny fox'
    )
    assert result.request.sampler == "DPM++ 2M SDE" and result.request.prompt == "a tiny fox"
    assert [p.name for p in result.paths] == ["00001-8.png"]


def test_magic_line_wins_over_pasted_parameters(shell, tiny_model_dir, tmp_path):
    cell = (
        f"%%paint --model {tiny_model_dir} --steps 2 -o {tmp_path}\n"
        "a cat\nNegative prompt: dog\nSteps: 9, Sampler: Euler, CFG scale: 4, Seed: 77, Size: 64x64"
    )
    result = run(shell, cell)
    request = result.request
    assert (request.steps, request.sampler, request.guidance, request.seed, request.width) == (2, "Euler", 4.0, 77, 64)
    assert request.negative_prompt == "dog"


def test_config_sets_kernel_defaults(shell, tiny_model_dir, tmp_path, fresh_settings, capsys):
    run(shell, f"%paint config model={tiny_model_dir} steps=2 sampler='Euler a' outdir={tmp_path}")
    assert fresh_settings["steps"] == 2 and fresh_settings["model"] == str(tiny_model_dir)
    result = run(shell, "%%paint --seed 4\na cow")
    assert (result.request.steps, result.request.sampler) == (2, "Euler a")
    assert result.paths[0].parent == tmp_path
    run(shell, "%paint config")
    shown = capsys.readouterr().out
    assert "steps = 2 (set)" in shown and "guidance = 7.0\n" in shown
    with pytest.raises(UsageError, match="steps: must be 1–1000"):
        run(shell, "%paint config steps=0")
    with pytest.raises(UsageError, match="unknown option 'stpes'"):
        run(shell, "%paint config stpes=3")
    # %config reaches the same setting through traitlets
    run(shell, "%config PaintMagics.device = 'cpu'")
    assert fresh_settings["device"] == "cpu"
    run(shell, "%config PaintMagics.device = 'auto'")


def test_config_controlnet_units_raises_the_unit_limit(shell, capsys):
    from jupyter_sd.engine.control.apply import max_units, set_max_units

    try:
        run(shell, "%paint config controlnet_units=5")
        assert max_units() == 5
        run(shell, "%paint config")
        assert "controlnet_units = 5 (set)" in capsys.readouterr().out
        for bad in ("0", "11", "two"):
            with pytest.raises(UsageError, match=r"^controlnet_units: a whole number of units 1-10, not") as error:
                run(shell, f"%paint config controlnet_units={bad}")
            assert "\n" not in str(error.value)
        assert max_units() == 5
    finally:
        set_max_units(3)


def test_info_and_unload(shell, tiny_model_dir, tmp_path, capsys):
    run(shell, f"%%paint --model {tiny_model_dir} --steps 1 -o {tmp_path}\nx")
    run(shell, "%paint info")
    out = capsys.readouterr().out
    assert "loaded: True" in out and "device: cpu" in out and "dtype: float32" in out
    run(shell, "%paint unload")
    run(shell, "%paint info")
    assert "no model loaded yet" in capsys.readouterr().out


def test_help_lists_every_option(shell):
    from jupyter_sd.recipe.values import option_fields

    for f in option_fields():
        for flag in f.metadata["flags"]:
            assert flag in HELP, flag
    assert "--size" in HELP and "Negative prompt:" in HELP
    assert shell.find_cell_magic("paint").__doc__ == HELP
