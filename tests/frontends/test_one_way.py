"""One way through: a cell, the CLI and ``paint()`` take the same dispatch, validate once and read pasted data once."""

import pytest
from helpers.ipython_shell import run

import jupyter_sd
from jupyter_sd.recipe import paste
from jupyter_sd.recipe.request import PaintRequest


@pytest.fixture()
def counted(monkeypatch):
    """Count the request checks that run (they read the disk) and the readings of pasted generation data."""
    counts = {"checks": 0, "reads": 0}
    check, parse = PaintRequest._check, paste.parse_infotext

    def counting_check(self):
        counts["checks"] += 1
        return check(self)

    def counting_parse(text):
        counts["reads"] += 1
        return parse(text)

    monkeypatch.setattr(PaintRequest, "_check", counting_check)
    monkeypatch.setattr(paste, "parse_infotext", counting_parse)
    return counts


def test_a_cell_validates_once_and_reads_its_pasted_data_once(shell, tiny_model_dir, tmp_path, counted):
    body = "a red circle\nNegative prompt: blue\nSteps: 3, Sampler: Euler, CFG scale: 7, Seed: 5, Size: 16x16"
    result = run(shell, f"%%paint --model {tiny_model_dir} -o {tmp_path}\n{body}")
    assert result.seeds == [5] and result.request.steps == 3 and result.request.negative_prompt == "blue"
    assert counted == {"checks": 1, "reads": 1}


def test_paint_validates_once(tiny_model_dir, tmp_path, counted):
    result = jupyter_sd.paint("a red circle", model=str(tiny_model_dir), steps=2, seed=1, outdir=str(tmp_path))
    assert result.paths and counted["checks"] == 1


def test_a_changed_request_is_checked_again(counted):
    request = PaintRequest(prompt="a fox").validate().validate()
    assert counted["checks"] == 1
    request.steps = 5000
    with pytest.raises(ValueError, match="steps"):
        request.validate()
    assert counted["checks"] == 2


def test_the_magic_and_the_cli_take_the_one_dispatch():
    """Neither front end paints by itself: both hand their options to `api.dispatch` (one place to change)."""
    from pathlib import Path

    package = Path(jupyter_sd.__file__).parent
    for front in ("magics.py", "cli.py"):
        text = (package / front).read_text()
        assert "dispatch(" in text and "render(" not in text and "run_plot(" not in text, front
