"""X/Y/Z plots from every front end: %%paint and %paint, paint(), the CLI, a real kernel, the example, the panel."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from helpers.ipython_shell import run as _run
from IPython.core.error import UsageError
from PIL import Image

from jupyter_sd.painting import session as painter
from jupyter_sd.plots.grid import PLACEHOLDER

# -- front ends ------------------------------------------------------------------------------------------------------


def test_magic_prompt_sr_missing_is_one_line_and_paints_nothing(shell, tiny_model_dir, tmp_path):
    engine = painter.get_engine()
    loads = engine.load_count
    with pytest.raises(UsageError) as info:
        _run(shell, f'%%paint --model {tiny_model_dir} -o {tmp_path / "out"} --x "Prompt S/R: cat, dog"\na red fox')
    assert type(info.value) is UsageError
    assert str(info.value) == "x: Prompt S/R did not find 'cat' in the prompt or negative prompt"
    assert not (tmp_path / "out").exists() and engine.load_count == loads


def test_magic_bad_axis_is_one_line(shell, tmp_path):
    refusal = r"^y: unknown axis 'Stepz'; did you mean 'Steps'\? \(every axis: docs/plots.md\)$"
    with pytest.raises(UsageError, match=refusal):
        _run(shell, f'%%paint -o {tmp_path} --y "Stepz: 1, 2"\na fox')


def test_cell_and_line_magic_and_paint_make_plots(shell, tiny_model_dir, tmp_path):
    plot = _run(
        shell, f'%%paint --model {tiny_model_dir} --seed 1 -o {tmp_path / "a"} --x "Steps: 1, 2" --y "cfg: 5, 7"\na fox'
    )
    assert type(plot).__name__ == "PlotResult" and len(plot) == 4
    line = _run(shell, f'%paint --model {tiny_model_dir} --seed 1 -o {tmp_path / "b"} --z "Steps: 1, 2" a fox')
    assert len(line) == 2 and line.axes[0].which == "z"
    import jupyter_sd

    called = jupyter_sd.paint("a fox", model=str(tiny_model_dir), seed=1, outdir=str(tmp_path / "c"), x="Steps: 1,2")
    assert len(called) == 2 and (tmp_path / "c" / "00003-xyz.png").exists()
    same = np.asarray(line[2].images[0]) == np.asarray(called[2].images[0])
    assert same.all()


def test_pasted_grid_infotext_paints_the_same_plot_again(shell, tiny_model_dir, tmp_path, capsys):
    first = _run(
        shell, f'%%paint --model {tiny_model_dir} -o {tmp_path / "a"} --x "Seed: -1, 7" --y "Steps: 1, 2"\na fox'
    )
    assert "Fixed X Values" in first.infotext
    capsys.readouterr()
    again = _run(shell, f"%%paint --model {tiny_model_dir} -o {tmp_path / 'b'}\n{first.infotext}")
    assert type(again).__name__ == "PlotResult" and len(again) == 4
    assert [a.text for a in again.axes] == [first.axes[0].texts[0] + ", 7", "1, 2"]
    for index, cell in first.cells.items():
        assert again.cells[index].seeds == cell.seeds
        assert np.array_equal(np.asarray(again.cells[index].images[0]), np.asarray(cell.images[0]))
    assert "Script" not in capsys.readouterr().out  # the grid's own keys are not reported as ignored
    with pytest.raises(UsageError, match="^ui: --ui puts controls under one picture"):
        _run(shell, f'%%paint --ui --model {tiny_model_dir} --x "Steps: 1, 2"\na fox')


def test_cli_plot_prints_every_file(tiny_model_dir, tmp_path, capsys):
    from jupyter_sd.cli import main

    code = main(["a fox", "--model", str(tiny_model_dir), "--seed", "1", "-o", str(tmp_path), "--x", "Steps: 1, 2"])
    assert code == 0
    printed = capsys.readouterr().out.split()
    assert [p.rsplit("/", 1)[-1] for p in printed] == ["00001-1.png", "00002-1.png", "00003-xyz.png"]
    assert main(["a fox", "--x", "Steps: none"]) == 2
    assert "jupyter-sd: x: Steps value 'none': expected a whole number" in capsys.readouterr().err


# -- in a real kernel -----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_kernel_interrupt_mid_plot_shows_the_partial_grid(tiny_model_dir, tmp_path):
    from helpers.kernel_client import of_type, reply_status, running_kernel

    state = {"sent": False}

    def interrupt_in_second_cell(message, messages):
        data = message["content"].get("data", {})
        if not state["sent"] and message["msg_type"] == "update_display_data":
            if "cell 2/3 · step" in data.get("text/plain", ""):
                state["sent"] = True
                kernel.interrupt()

    cell = (
        f'%%paint --model {tiny_model_dir} --seed 9 --size 256x256 -o {tmp_path / "out"} --x "Steps: 2, 150, 2"\n'
        "a long plot"
    )
    with running_kernel(tmp_path) as kernel:
        kernel.execute("%load_ext jupyter_sd")
        messages = kernel.execute(cell, on_message=interrupt_in_second_cell, timeout=300)
        after = kernel.execute(f"%%paint --model {tiny_model_dir} --steps 1 --seed 1 -o {tmp_path / 'next'}\nnext")
    assert state["sent"] and reply_status(messages) == "ok"
    shown = [m["content"]["data"] for m in of_type(messages, "display_data")]
    assert any(d.get("text/plain") == "X/Y/Z grid (placeholders)" and "image/jpeg" in d for d in shown)
    updates = [m["content"]["data"] for m in of_type(messages, "update_display_data")]
    grids = [d for d in updates if d.get("text/plain", "").startswith("X/Y/Z grid, 1/3 cells")]
    assert grids and "image/jpeg" in grids[0]  # the live grid, filled in after the first cell
    statuses = [d.get("text/plain", "") for d in updates]
    assert any(s.startswith("interrupted after 1/3 cells") for s in statuses)
    result = of_type(messages, "execute_result")[0]["content"]["data"]
    assert result["text/plain"].startswith("<PlotResult: 1/3 cells") and "interrupted" in result["text/plain"]
    partial = Image.open(io.BytesIO(base64.b64decode(result["image/png"])))
    first = Image.open(tmp_path / "out" / "00001-9.png").convert("RGB")
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["00001-9.png", "00002-xyz.png"]
    assert partial.size == Image.open(tmp_path / "out" / "00002-xyz.png").size
    pixels, cell = np.asarray(partial.convert("RGB")), np.asarray(first)
    top = partial.height - 256
    left = next(x for x in range(partial.width - 255) if np.array_equal(pixels[top : top + 256, x : x + 256], cell))
    assert (pixels[top + 1 : top + 255, left + 257 : left + 511] == PLACEHOLDER).all()  # the stopped cell
    assert reply_status(after) == "ok" and (tmp_path / "next" / "00001-1.png").exists()


@pytest.mark.slow
def test_example_notebook_runs_top_to_bottom(tmp_path):
    import shutil
    from pathlib import Path

    import nbformat
    from nbclient import NotebookClient

    notebook_file = tmp_path / "xyz_plot.ipynb"
    shutil.copy(Path(__file__).resolve().parents[2] / "examples" / "xyz_plot.ipynb", notebook_file)
    notebook = nbformat.read(notebook_file, as_version=4)
    notebook.cells.insert(0, nbformat.v4.new_code_cell(f"__session__ = {str(notebook_file)!r}"))
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [output for cell in notebook.cells for output in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    folder = tmp_path / "xyz_plot-paint"
    assert (folder / "00019-xyz.png").exists() and (folder / "00029-xyz.png").exists()
    grids = [o for o in outputs if o.get("output_type") == "execute_result" and "image/png" in o.get("data", {})]
    assert len(grids) == 3  # every grid stays in the saved notebook (the last: the Cache axis)
    tables = [o for o in outputs if "text/html" in o.get("data", {}) and "<table" in o["data"]["text/html"]]
    assert tables and "Sampler" in tables[0]["data"]["text/html"]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "Script: X/Y/Z plot, X Type: Prompt S/R" in text and "Fixed Y Values" in text


# -- the panel's section -------------------------------------------------------------------------------------------


@pytest.fixture()
def section(tiny_model_dir, tmp_path, fresh_settings):
    pytest.importorskip("ipywidgets")
    from jupyter_sd.panel import Panel
    from jupyter_sd.panel.xyz_section import XYZSection

    panel = Panel(model=str(tiny_model_dir), outdir=str(tmp_path / "out"), steps=2, seed=5, user_ns={})
    panel.controls.widgets["prompt"].value = "a red circle"
    found = [child for child in panel.children if isinstance(child, XYZSection)]
    assert len(found) == 1
    yield found[0]
    found[0].stop()
    found[0].wait(60)


def test_panel_section_lists_the_generated_axes_and_plots(section, tmp_path):
    from jupyter_sd.plots.axes import axes

    kind, values = section.rows["x"]
    assert set(kind.options) == {"Nothing"} | {a.label for a in axes() if a.missing() is None}
    kind.value, values.value = "Steps", "1, 2"
    section.rows["y"][0].value, section.rows["y"][1].value = "CFG Scale", "5, 7"
    assert section.specs() == {"x": "Steps: 1, 2", "y": "CFG Scale: 5, 7"}
    assert section.plot() is not None and section.wait(120)
    plot = section.result
    assert len(plot) == 4 and plot.path == tmp_path / "out" / "00005-xyz.png"
    shown = Image.open(io.BytesIO(section.grid.value))
    assert np.array_equal(np.asarray(shown.convert("RGB")), np.asarray(plot.grid))
    assert "4/4 cells" in section.status.value and not section.error.value
    assert plot[2, 7].request.prompt == "a red circle" and plot[2, 7].request.seed == 5
    assert not section.plot_button.disabled and section.stop_button.disabled


def test_panel_section_refuses_a_bad_axis_in_one_line(section, tmp_path):
    section.rows["x"][0].value, section.rows["x"][1].value = "Prompt S/R", "cat, dog"
    assert section.plot() is None
    assert "Prompt S/R did not find &#x27;cat&#x27;" in section.error.value
    assert not (tmp_path / "out").exists()


def test_panel_section_stop_keeps_finished_cells(section, tmp_path):
    section.rows["x"][0].value, section.rows["x"][1].value = "Seed", "1, 2, 3"
    section.grid.observe(lambda change: section.stop(), names="value")  # Stop as soon as the first cell shows
    assert section.plot() is not None and section.wait(120)
    plot = section.result
    assert plot.stopped_by == "stop" and len(plot) == 1
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["00001-1.png", "00002-xyz.png"]
    assert "stopped after 1/3 cells" in section.status.value
