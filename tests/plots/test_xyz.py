"""X/Y/Z plots on real tiny models: cells and their files, the grid and its infotext, indexing, loads, stop."""

from __future__ import annotations

import base64
import importlib
import io
import threading

import numpy as np
import pytest
from helpers.pixels import dark_rows
from helpers.tiny_pipeline import make_tiny_pipeline
from PIL import Image

import jupyter_sd
from jupyter_sd.painting import session as painter
from jupyter_sd.painting.store import read_parameters
from jupyter_sd.plots.grid import PLACEHOLDER, GridLayout
from jupyter_sd.plots.plan import plan
from jupyter_sd.plots.run import run_plot
from jupyter_sd.plots.views import PlotView
from jupyter_sd.recipe.infotext import parse_infotext
from jupyter_sd.recipe.request import PaintRequest

# -- plots on real models -------------------------------------------------------------------------------------------


class Recorder(PlotView):
    """Keeps what a plot view is sent, and can stop the plot or raise an interrupt at a chosen cell."""

    def __init__(self, stop_in_cell=None, interrupt_after=None):
        self.events, self.grids, self.statuses, self.previews = [], [], [], 0
        self.stop_in_cell, self.interrupt_after = stop_in_cell, interrupt_after
        self.placeholder = None

    def start(self, plan, placeholder):
        self.placeholder = placeholder
        self.events.append("start")

    def status(self, text, done, total, final=False):
        self.statuses.append(text)
        if self.stop_in_cell and text.startswith(f"cell {self.stop_in_cell}/"):
            painter.get_engine().stop()  # what the panel's Stop button does

    def preview(self, image):
        self.previews += 1

    def cell(self, index, result, grid, number, total):
        self.grids.append(grid.copy())
        self.events.append(("cell", index, number))
        if self.interrupt_after == number:
            raise KeyboardInterrupt  # what a kernel interrupt raises between two cells

    def finish(self, plot):
        self.events.append("finish")


@pytest.fixture(scope="module")
def bundled_plot(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plot")
    view = Recorder()
    engine = painter.get_engine()
    request = PaintRequest(
        prompt="a red circle on a blue background", model="tiny", seed=3, width=64, height=64, outdir=str(folder)
    )
    loads = engine.load_count
    plot = run_plot(request, {"x": "Steps: 2, 3", "y": "CFG scale: 3, 7", "z": "Sampler: Euler a, DPM++ 2M"}, view)
    return plot, folder, view, engine.load_count - loads


def test_bundled_plot_saves_eight_cells_with_their_own_infotext(bundled_plot):
    plot, folder, _, _ = bundled_plot
    assert len(plot) == plot.total == 8 and not plot.interrupted
    cells = sorted(folder.glob("0000[1-8]-3.png"))
    assert len(cells) == 8
    seen = set()
    for path in cells:
        prompt, _, params = parse_infotext(read_parameters(path))
        assert prompt == "a red circle on a blue background"
        assert params["Seed"] == "3" and params["Size"] == "64x64" and params["Model"] == "tiny"
        seen.add((params["Steps"], params["CFG scale"], params["Sampler"]))
    assert seen == {(s, c, m) for s in ("2", "3") for c in ("3", "7") for m in ("Euler a", "DPM++ 2M")}


def test_bundled_plot_indexing_and_table(bundled_plot):
    plot, _, _, _ = bundled_plot
    cell = plot[2, 7.0, "Euler a"]
    assert (cell.request.steps, cell.request.guidance, cell.request.sampler) == (2, 7.0, "Euler a")
    assert plot[2, 7, "Euler a"] is cell and plot["2", "CFG Scale: 7", "Euler a"] is cell
    _, _, params = parse_infotext(read_parameters(cell.paths[0]))
    assert (params["Steps"], params["CFG scale"], params["Sampler"]) == ("2", "7", "Euler a")
    with pytest.raises(KeyError, match="is not a value of x"):
        plot[4, 7, "Euler a"]
    with pytest.raises(KeyError, match="give one value per axis"):
        plot[2, 7]
    table = plot.table()
    import pandas

    assert isinstance(table, pandas.DataFrame)
    assert list(table.columns) == ["Steps", "CFG Scale", "Sampler", "seed", "path", "seconds"]
    assert len(table) == 8 and set(table["seed"]) == {3}
    assert sorted(table["path"]) == sorted(str(p) for p in plot.paths)


def test_bundled_plot_grid_holds_each_cell_under_its_labels(bundled_plot):
    plot, folder, view, loads = bundled_plot
    assert loads <= 1  # one model, loaded at most once for the whole plot
    grid_file = folder / "00009-xyz.png"
    assert plot.path == grid_file
    saved = Image.open(grid_file)
    assert np.array_equal(np.asarray(saved.convert("RGB")), np.asarray(plot.grid))
    png = Image.open(io.BytesIO(plot._repr_png_()))
    assert png.size == plot.grid.size
    bundle = plot._repr_mimebundle_()
    assert Image.open(io.BytesIO(base64.b64decode(bundle["image/png"]))).size == plot.grid.size
    grid = np.asarray(plot.grid)
    layout_x, layout_y = [], []
    for (ix, iy, iz), cell in plot.cells.items():
        picture = np.asarray(Image.open(cell.paths[0]).convert("RGB"))
        match = np.argwhere((grid[:-63, :-63] == picture[0, 0]).all(axis=2))
        found = [(y, x) for y, x in match if np.array_equal(grid[y : y + 64, x : x + 64], picture)]
        assert found, (ix, iy, iz)
        y, x = found[0]
        layout_x.append((iz, ix, x))
        layout_y.append((iy, y))
    # X runs left to right inside each Z sub-grid, Z sub-grids side by side, Y top to bottom
    for iz in (0, 1):
        xs = {ix: x for z, ix, x in layout_x if z == iz}
        assert xs[1] - xs[0] == 64
    assert min(x for z, _, x in layout_x if z == 1) > max(x for z, _, x in layout_x if z == 0)
    ys = {}
    for iy, y in layout_y:
        ys.setdefault(iy, set()).add(y)
    assert len(ys[0]) == len(ys[1]) == 1 and ys[1].pop() - ys[0].pop() == 64
    # labels: dark text above the first column and left of the first row; titles above each sub-grid
    top = min(y for _, y in layout_y)
    left = min(x for z, _, x in layout_x if z == 0)
    assert top > 0 and left > 0
    assert plot.grid.size == (2 * (left + 2 * 64), top + 2 * 64)  # two sub-grids of Y labels + 2×2 cells, under titles
    assert len(dark_rows(plot.grid, (left, 0, left + 64, top)))
    assert len(dark_rows(plot.grid, (0, top, left, top + 64)))
    # the live grid was sent after every cell, starting from the labelled placeholder
    assert [e[2] for e in view.events if isinstance(e, tuple)] == list(range(1, 9))
    assert view.placeholder is not None and view.placeholder.size == plot.grid.size
    assert view.events[0] == "start" and view.events[-1] == "finish"
    assert any(s.startswith("cell 8/8 · step 3/3 · ETA") for s in view.statuses)


def test_bundled_plot_grid_infotext_is_a1111s(bundled_plot):
    plot, folder, _, _ = bundled_plot
    first = read_parameters(plot[2, 3, "Euler a"].paths[0])
    tail = (
        ', Script: X/Y/Z plot, X Type: Steps, X Values: "2, 3", Y Type: CFG Scale, Y Values: "3, 7", '
        'Z Type: Sampler, Z Values: "Euler a, DPM++ 2M"'
    )
    assert plot.infotext == first + tail
    assert read_parameters(folder / "00009-xyz.png") == plot.infotext


def test_a_cell_is_the_same_picture_as_painting_it_alone(bundled_plot, tmp_path):
    plot, _, _, _ = bundled_plot
    cell = plot[2, 7, "DPM++ 2M"]
    alone = painter.render(cell.request.replace(outdir=str(tmp_path)), reraise_interrupt=False)
    difference = np.abs(np.asarray(alone.images[0], dtype=int) - np.asarray(cell.images[0], dtype=int))
    assert difference.max() <= 1


def test_checkpoint_axis_loads_each_model_once(tmp_path):
    first = make_tiny_pipeline(tmp_path / "model-a", seed=1)
    second = make_tiny_pipeline(tmp_path / "model-b", seed=2)
    engine = painter.get_engine()
    engine.unload()
    loads = engine.load_count
    request = PaintRequest(prompt="a fox", steps=1, seed=4, outdir=str(tmp_path / "out"), preview="none")
    plot = run_plot(request, {"x": "Steps: 1, 2", "y": f"Checkpoint name: {first}, {second}"}, Recorder())
    assert engine.load_count - loads == 2
    assert len(plot) == 4
    assert plot.axes[1].labels == ["model-a", "model-b"]
    assert plot[2, str(second)].request.model == str(second.resolve())
    assert "Y Type: Checkpoint name" in plot.infotext


def test_engine_stop_half_way_keeps_finished_cells(tiny_model_dir, tmp_path):
    view = Recorder(stop_in_cell=3)
    request = PaintRequest(prompt="a fox", model=str(tiny_model_dir), seed=2, outdir=str(tmp_path), steps=3)
    plot = run_plot(request, {"x": "Steps: 2, 3", "y": "CFG scale: 5, 7"}, view)
    assert plot.stopped_by == "stop" and len(plot) == 2 and plot.total == 4
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["00001-2.png", "00002-2.png", "00003-xyz.png"]
    assert plot.path.name == "00003-xyz.png"
    grid = np.asarray(plot.grid)
    layout = GridLayout((16, 16), plot.axes[0].labels, plot.axes[1].labels, [""])
    for index in [(0, 0, 0), (1, 0, 0)]:
        left, top, right, bottom = layout.cell_box(index)
        assert np.array_equal(grid[top:bottom, left:right], np.asarray(plot.cells[index].images[0]))
    for index in [(0, 1, 0), (1, 1, 0)]:  # not painted: still placeholders
        left, top, right, bottom = layout.cell_box(index)
        assert (grid[top + 1 : bottom - 1, left + 1 : right - 1] == PLACEHOLDER).all()
    with pytest.raises(KeyError, match="was not painted"):
        plot[2, 7]
    again = painter.render(request.replace(outdir=str(tmp_path / "after")), reraise_interrupt=False)
    assert not again.interrupted  # the engine is ready for the next cell


def test_interrupt_between_cells_shows_the_partial_grid(tiny_model_dir, tmp_path):
    view = Recorder(interrupt_after=1)
    request = PaintRequest(prompt="a fox", model=str(tiny_model_dir), seed=2, outdir=str(tmp_path), steps=2)
    with pytest.raises(KeyboardInterrupt):
        run_plot(request, {"x": "Seed: 1, 2, 3"}, view)
    plot = importlib.import_module("jupyter_sd.plots.run").last_plot  # (jupyter_sd.xyz is the function)
    assert plot.stopped_by == "interrupt" and len(plot) == 1 and view.events[-1] == "finish"
    assert 'Fixed X Values: "1, 2, 3"' in plot.infotext
    assert plot.grid is not None and (tmp_path / "00002-xyz.png").exists()


def test_a_failing_cell_keeps_the_finished_ones_and_raises(tiny_model_dir, tmp_path):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')  # no components
    view = Recorder()
    request = PaintRequest(prompt="a fox", seed=2, steps=1, outdir=str(tmp_path / "out"), preview="none")
    with pytest.raises(Exception):  # noqa: B017 (whatever the loader raises reaches the caller)
        run_plot(request, {"x": f"Checkpoint name: {tiny_model_dir}, {broken}"}, view)
    plot = importlib.import_module("jupyter_sd.plots.run").last_plot
    assert plot.stopped_by == "error" and len(plot) == 1 and view.events[-1] == "finish"
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["00001-2.png", "00002-xyz.png"]
    assert "failed" in repr(plot)


def test_stop_event_before_start_paints_nothing(tiny_model_dir, tmp_path):
    stop = threading.Event()
    stop.set()
    request = PaintRequest(prompt="a fox", model=str(tiny_model_dir), seed=2, outdir=str(tmp_path))
    plot = run_plot(request, {"x": "Steps: 1, 2"}, Recorder(), stop=stop)
    assert len(plot) == 0 and plot.stopped_by == "stop" and plot.grid is None
    assert not tmp_path.exists() or not list(tmp_path.iterdir())


# -- axes of other rooms' options: each must paint (a broken axis fails here, it never skips) ---------------------


def test_clip_skip_axis_changes_the_picture_and_is_recorded(tiny_model_dir, tmp_path):
    request = PaintRequest(prompt="a fox", model=str(tiny_model_dir), seed=3, steps=2, outdir=str(tmp_path))
    plot = run_plot(request, {"x": "Clip skip: 1, 2"}, Recorder())
    first, second = plot[1], plot[2]
    assert second.request.clip_skip == 2
    assert "Clip skip: 2" in read_parameters(second.paths[0])
    assert not np.array_equal(np.asarray(first.images[0]), np.asarray(second.images[0]))
    alone = painter.render(request.replace(clip_skip=2, outdir=str(tmp_path / "alone")), reraise_interrupt=False)
    assert np.abs(np.asarray(alone.images[0], dtype=int) - np.asarray(second.images[0], dtype=int)).max() <= 1


def test_lora_weight_and_vae_axes_on_real_files(tiny_model_dir, tmp_path):
    import torch
    from diffusers import StableDiffusionPipeline
    from helpers.ldm_checkpoint import vae_to_ldm
    from helpers.lora_files import kohya_lora
    from helpers.tiny_pipeline import tiny_vae
    from safetensors.torch import save_file

    from jupyter_sd import library

    root = tmp_path / "models"
    for folder in library.SUBFOLDERS.values():
        (root / folder).mkdir(parents=True)
    kohya_lora(StableDiffusionPipeline.from_pretrained(tiny_model_dir), root / "Lora" / "ink.safetensors")
    torch.manual_seed(7)
    vae = tiny_vae(16)
    save_file(
        {k: v.contiguous() for k, v in vae_to_ldm(vae.state_dict(), dict(vae.config)).items()},
        str(root / "VAE" / "alt-vae.safetensors"),
    )
    library.set_models_dir(root)
    try:
        request = PaintRequest(
            prompt="a fox <lora:ink:0.8>", model=str(tiny_model_dir), seed=3, steps=2, outdir=str(tmp_path / "out")
        )
        checked = plan(request, {"x": "Lora weight: 0, 1", "y": "VAE: None, alt-vae"})
        assert checked.order == [(0, 0, 0), (1, 0, 0), (0, 1, 0), (1, 1, 0)]
        assert checked.requests[(1, 0, 0)].prompt == "a fox <lora:ink:1>"
        loads = painter.get_engine().load_count
        plot = run_plot(request, {"y": "Lora weight: 0, 1", "x": "VAE: None, alt-vae"}, Recorder())
        assert plot.axes[0].which == "x" and len(plot) == 4
        assert painter.get_engine().load_count - loads <= 1  # the model itself loads at most once
        none, weighted = plot["None", 0], plot["None", 1]
        assert not np.array_equal(np.asarray(none.images[0]), np.asarray(weighted.images[0]))
        plain = painter.render(request.replace(prompt="a fox", outdir=str(tmp_path / "plain")), reraise_interrupt=False)
        assert np.abs(np.asarray(plain.images[0], dtype=int) - np.asarray(none.images[0], dtype=int)).max() <= 1
        assert not np.array_equal(np.asarray(plot["alt-vae", 0].images[0]), np.asarray(none.images[0]))
        assert "VAE: alt-vae" in read_parameters(plot["alt-vae", 1].paths[0])
    finally:
        library.set_models_dir(None)


def test_hires_axes_grow_the_grid_to_the_upscaled_cells(tiny_model_dir, tmp_path):
    request = PaintRequest(prompt="a fox", model=str(tiny_model_dir), seed=3, steps=2, outdir=str(tmp_path))
    plot = run_plot(request, {"x": "Hires upscale: 0, 2", "y": "Hires steps: 1, 2"}, Recorder())
    assert len(plot) == 4
    small, big = plot[0, 1], plot[2, 2]
    assert small.images[0].size == (16, 16) and big.images[0].size == (32, 32)
    params = parse_infotext(read_parameters(big.paths[0]))[2]
    assert (params["Hires upscale"], params["Hires steps"]) == ("2", "2")
    layout = GridLayout((32, 32), plot.axes[0].labels, plot.axes[1].labels, [""])
    assert plot.grid.size == layout.canvas.size  # laid out again for the upscaled cells
    grid = np.asarray(plot.grid)
    left, top, right, bottom = layout.cell_box((1, 1, 0))
    assert np.array_equal(grid[top:bottom, left:right], np.asarray(big.images[0]))
    left, top, _, _ = layout.cell_box((0, 0, 0))  # the 16 px picture sits in the middle of its 32 px box
    assert np.array_equal(grid[top + 8 : top + 24, left + 8 : left + 24], np.asarray(plot[0, 1].images[0]))


def test_denoising_axis_on_an_init_picture(tiny_model_dir, tmp_path):
    init = tmp_path / "init.png"
    Image.fromarray(np.tile(np.array([200, 40, 40], dtype=np.uint8), (16, 16, 1))).save(init)
    options = {"prompt": "a fox", "model": str(tiny_model_dir), "seed": 3, "steps": 4, "init": str(init)}
    plot = run_plot(PaintRequest(**options, outdir=str(tmp_path / "out")), {"x": "Denoising: 0.25, 1"}, Recorder())
    low, high = plot[0.25], plot[1.0]
    assert parse_infotext(read_parameters(low.paths[0]))[2]["Denoising strength"] == "0.25"
    # each cell is the picture painted directly at its strength (this random model's VAE does not keep the init's
    # colours, so closeness to the init would tell nothing)
    for strength, cell in ((0.25, low), (1.0, high)):
        direct = jupyter_sd.paint(**{**options, "strength": strength, "save": False}).images[0]
        assert np.array_equal(np.asarray(direct), np.asarray(cell.images[0])), strength
    assert not np.array_equal(np.asarray(low.images[0]), np.asarray(high.images[0]))


def test_variation_seed_axis(tiny_model_dir, tmp_path):
    request = PaintRequest(
        prompt="a fox", model=str(tiny_model_dir), seed=3, steps=2, variation_strength=0.5, outdir=str(tmp_path)
    )
    plot = run_plot(request, {"x": "Var. seed: -1, 5"}, Recorder())
    fixed = plot.axes[0].values[0]
    assert fixed != -1 and f'Fixed X Values: "{fixed}, 5"' in plot.infotext
    params = parse_infotext(read_parameters(plot[5].paths[0]))[2]
    assert (params["Seed"], params["Variation seed"], params["Variation seed strength"]) == ("3", "5", "0.5")
    assert not np.array_equal(np.asarray(plot[5].images[0]), np.asarray(plot[fixed].images[0]))
