"""X/Y/Z plots: A1111's value syntax, the axis list, plots on real tiny models, the grid, stop, and the front ends."""

from __future__ import annotations

import base64
import importlib
import io
import threading

import numpy as np
import pytest
from IPython.core.error import UsageError
from PIL import Image
from tiny_pipeline import make_tiny_pipeline

from jupyter_sd import painter
from jupyter_sd.infotext import parse_infotext
from jupyter_sd.request import PaintRequest, option_fields
from jupyter_sd.store import read_parameters
from jupyter_sd.xyz import plan, run_plot
from jupyter_sd.xyz_axes import SPECIAL_AXES, find_axis, parse_axis, split_values
from jupyter_sd.xyz_grid import PLACEHOLDER, GridLayout
from jupyter_sd.xyz_views import PlotView

# -- value syntax -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "values", "texts"),
    [
        ("Steps: 10, 20, 30", [10, 20, 30], ["10", "20", "30"]),
        ("Steps: 1-5", [1, 2, 3, 4, 5], None),
        ("Steps: 1-9 (+2)", [1, 3, 5, 7, 9], None),
        ("Steps: 10-1 (-3)", [10, 7, 4, 1], None),  # both ends included, counting down
        ("Steps: 5-1", [5, 4, 3, 2, 1], None),
        ("Steps: 1-10 [5]", [1, 3, 5, 7, 10], None),  # A1111: linspace, then int() (truncates)
        ("Steps: 8, 12-16 (+2), 30", [8, 12, 14, 16, 30], None),
        ("Seed: -5--3", [-5, -4, -3], None),
        ("CFG scale: 3-9 [4]", [3.0, 5.0, 7.0, 9.0], ["3", "5", "7", "9"]),
        ("CFG scale: 0-1 [5]", [0.0, 0.25, 0.5, 0.75, 1.0], ["0", "0.25", "0.5", "0.75", "1"]),
        ("CFG scale: 0.5-1 (+0.1)", [0.5, 0.6, 0.7, 0.8, 0.9, 1.0], ["0.5", "0.6", "0.7", "0.8", "0.9", "1"]),
        ("CFG scale: 1-0 (-0.25)", [1.0, 0.75, 0.5, 0.25, 0.0], ["1", "0.75", "0.5", "0.25", "0"]),
        ("cfg: 0-1 [3]", [0.0, 0.5, 1.0], None),
        ("--guidance: 6.5, 7", [6.5, 7.0], ["6.5", "7"]),
        ("Sampler: Euler a, DPM++ 2M", ["Euler a", "DPM++ 2M"], None),
        ('Prompt S/R: fox, "cat, dog", owl', ["fox", "cat, dog", "owl"], None),
        ('Prompt S/R:fox,"cat, dog"', ["fox", "cat, dog"], None),
        ("Size: 64x64, 128x96", [(64, 64), (128, 96)], ["64x64", "128x96"]),
        ("save: true, no", [True, False], ["true", "false"]),
        ("steps: 3", [3], None),
    ],
)
def test_value_syntax(spec, values, texts):
    axis = parse_axis(spec)
    assert axis.values == values
    assert all(type(a) is type(b) for a, b in zip(axis.values, values))
    if texts is not None:
        assert axis.texts == texts


def test_csv_splitting_keeps_quoted_commas():
    assert split_values(' a, "b, c" ,d ') == ["a", "b, c", "d"]
    assert split_values("") == []


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("Steps 10, 20", "x: expected 'Name: values' such as 'Steps: 10, 20, 30' (got 'Steps 10, 20')"),
        ("Stepz: 1, 2", "x: unknown axis 'Stepz' (allowed: Seed, "),
        ("Stepz: 1, 2", "Did you mean 'Steps'?"),
        ("Steps: ten", "x: Steps value 'ten': expected a whole number (allowed: numbers, ranges like 1-5"),
        ("Steps: 1.5", "x: Steps value '1.5': expected a whole number"),
        ("CFG scale: high", "x: CFG Scale value 'high': expected a number"),
        ("Steps: 1-10 (-1)", "x: Steps value '1-10 (-1)': the step must be non-zero and go from 1 towards 10"),
        ("Steps: 1-10 (0)", "the step must be non-zero"),
        ("Steps: 1-10 [0]", "a count needs at least 1 value"),
        ("Steps: 1-100000", "makes 100000 values (allowed: at most 1000)"),
        ("Steps:", "x: Steps has no values"),
        ("Size: big", "x: Size value 'big': expected WIDTHxHEIGHT such as 512x768"),
        ("save: maybe", "x: save value 'maybe': expected true or false"),
    ],
)
def test_bad_axis_is_one_line(spec, message):
    with pytest.raises(ValueError) as info:
        parse_axis(spec)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        ({"x": "Steps: 10, 200"}, "x: Steps value '200': steps: must be 1–150 (got 200)"),
        ({"y": "Sampler: Euler b"}, "y: Sampler value 'Euler b': sampler: unknown 'Euler b'"),
        ({"x": "Size: 64x60"}, "x: Size value '64x60': size: width and height must be multiples of 8"),
        ({"z": "Prompt S/R: cat, dog"}, "z: Prompt S/R did not find 'cat' in the prompt or negative prompt"),
        ({"x": "Checkpoint name: /no/such/model"}, "x: Checkpoint name value '/no/such/model': model: no such file"),
        ({"w": "Steps: 1"}, "plot: unknown axis option 'w' (allowed: x, y, z)"),
        ({}, "plot: give at least one axis"),
    ],
)
def test_bad_cells_are_refused_before_anything_runs(specs, message):
    with pytest.raises(ValueError) as info:
        plan(PaintRequest(prompt="a fox"), specs)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_every_flagged_option_is_an_axis_by_each_of_its_names():
    for f in option_fields():
        meta = f.metadata
        if not meta["flags"] or f.name in ("width", "height"):
            continue
        names = [*meta["flags"], f.name] + ([meta["infotext"]] if meta["infotext"] else [])
        for name in names:
            axis = find_axis(name)
            assert axis.option == f.name, (name, axis)


def test_special_axes_without_their_option_say_so_in_one_line():
    fields = {f.name for f in option_fields()}
    for axis in SPECIAL_AXES:
        if axis.missing() is None:
            assert axis.option is None or axis.option in fields
            assert find_axis(axis.label).label == axis.label
        else:
            assert (axis.option and axis.option not in fields) or axis.requires
            with pytest.raises(ValueError, match=rf"^x: axis '{axis.label}' is not available \(it needs [^\n]+\)$"):
                find_axis(axis.label)


def test_seed_axis_fixes_minus_one_and_the_base_seed_is_fixed_once():
    checked = plan(PaintRequest(prompt="a fox", steps=2), {"x": "Seed: -1, 5", "y": "Steps: 1, 2"})
    seeds = [checked.requests[(ix, 0, 0)].seed for ix in range(2)]
    assert seeds[1] == 5 and seeds[0] != -1
    assert checked.requests[(0, 1, 0)].seed == seeds[0]  # the same random seed on every row
    other = plan(PaintRequest(prompt="a fox"), {"x": "Steps: 1, 2"})
    assert other.requests[(0, 0, 0)].seed == other.requests[(1, 0, 0)].seed != -1


def test_costliest_axis_runs_outermost():
    checked = plan(PaintRequest(prompt="a fox"), {"x": "Checkpoint name: tiny, tiny", "y": "Steps: 1, 2"})
    assert checked.order == [(0, 0, 0), (0, 1, 0), (1, 0, 0), (1, 1, 0)]
    plain = plan(PaintRequest(prompt="a fox"), {"x": "Steps: 1, 2", "y": "CFG scale: 5, 7"})
    assert plain.order == [(0, 0, 0), (1, 0, 0), (0, 1, 0), (1, 1, 0)]  # A1111's default: z, then y, then x


def test_prompt_sr_replaces_in_prompt_and_negative():
    base = PaintRequest(prompt="a red fox", negative_prompt="red blur")
    checked = plan(base, {"x": "Prompt S/R: red, blue"})
    assert [checked.requests[(i, 0, 0)].prompt for i in range(2)] == ["a red fox", "a blue fox"]
    assert checked.requests[(1, 0, 0)].negative_prompt == "blue blur"


def test_lora_weight_rewrites_the_first_tag_only():
    axis = next(a for a in SPECIAL_AXES if a.label == "Lora weight")
    request = PaintRequest(prompt="a fox <lora:ink:0.8> and <lora:paper:1>, <lora:x>")
    assert axis.changes(request, 0.25, [0.25])["prompt"] == "a fox <lora:ink:0.25> and <lora:paper:1>, <lora:x>"
    request = PaintRequest(prompt="<lyco:ink> fox <lora:b:1>")
    assert axis.changes(request, 1.5, [1.5])["prompt"] == "<lyco:ink:1.5> fox <lora:b:1>"
    request = PaintRequest(prompt="<lora:ink:0.8:0.3> fox")  # text encoder and UNet weights alike
    assert axis.changes(request, 0.5, [0.5])["prompt"] == "<lora:ink:0.5> fox"
    if axis.missing() is None:
        from jupyter_sd.prompts import extract_networks

        checked = plan(PaintRequest(prompt="a fox <lora:ink:0.8>"), {"x": "Lora weight: 0-1 [3]"})
        weights = [extract_networks(r.prompt)[1][0].unet_weight for r in checked.requests.values()]
        assert weights == [0.0, 0.5, 1.0]
        with pytest.raises(ValueError, match="^x: Lora weight varies the first <lora:name:weight> tag, and the"):
            plan(PaintRequest(prompt="a fox"), {"x": "Lora weight: 0.5, 1"})


def test_vae_axis_values_must_exist(tmp_path):
    if find_axis("VAE").missing() is not None:
        pytest.skip("this version has no vae option")
    (tmp_path / "ink.safetensors").write_bytes(b"")
    checked = plan(PaintRequest(prompt="a fox"), {"x": f"VAE: None, {tmp_path / 'ink.safetensors'}"})
    assert [r.vae for r in checked.requests.values()] == ["", str(tmp_path / "ink.safetensors")]
    assert checked.axes[0].labels[0] == "VAE: None"
    with pytest.raises(ValueError, match="^x: VAE value 'nosuchvae': vae: no 'nosuchvae' in "):
        plan(PaintRequest(prompt="a fox"), {"x": "VAE: nosuchvae"})


# -- the grid -------------------------------------------------------------------------------------------------------


def _dark_rows(image: Image.Image, box) -> np.ndarray:
    region = np.asarray(image.crop(box).convert("L"))
    return np.nonzero((region < 128).any(axis=1))[0]


@pytest.mark.parametrize("cell", [64, 256, 1024])
def test_labels_are_legible_at_every_cell_size(cell):
    layout = GridLayout((cell, cell), ["Steps: 10", "Steps: 20"], ["CFG Scale: 3", "CFG Scale: 7"], [""])
    pad_left, pad_top = layout.offsets[(0, 0, 0)]
    assert layout.canvas.size == (pad_left + 2 * cell, pad_top + 2 * cell)
    for box in layout.label_boxes["x"] + layout.label_boxes["y"]:
        rows = _dark_rows(layout.canvas, box)
        assert len(rows), box  # text was drawn in each label region
        text_height = rows[-1] - rows[0] + 1
        assert text_height >= 8  # at least a 12 px font on 64 px cells
        assert text_height >= cell // 40  # and growing with the cell
    # the label regions of a 1024 px grid hold text about (w + h) / 25 px high, as A1111's
    if cell == 1024:
        rows = _dark_rows(layout.canvas, layout.label_boxes["x"][0])
        assert rows[-1] - rows[0] > 40


def test_z_titles_and_sub_grids_side_by_side():
    layout = GridLayout((64, 64), ["a", "b"], ["c"], ["Euler a", "DPM++ 2M"])
    first, second = layout.offsets[(0, 0, 0)], layout.offsets[(0, 0, 1)]
    assert second[1] == first[1] and second[0] - first[0] == layout.canvas.width // 2
    assert len(layout.label_boxes["z"]) == 2
    for box in layout.label_boxes["z"]:
        assert len(_dark_rows(layout.canvas, box))
    assert np.asarray(layout.canvas.crop(layout.cell_box((1, 0, 1))))[32, 32].tolist() == list(PLACEHOLDER)


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
    plot = run_plot(request, {"x": "Steps: 1, 2", "y": "CFG scale: 3, 7", "z": "Sampler: Euler a, DPM++ 2M"}, view)
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
    assert seen == {(s, c, m) for s in ("1", "2") for c in ("3", "7") for m in ("Euler a", "DPM++ 2M")}


def test_bundled_plot_indexing_and_table(bundled_plot):
    plot, _, _, _ = bundled_plot
    cell = plot[2, 7.0, "Euler a"]
    assert (cell.request.steps, cell.request.guidance, cell.request.sampler) == (2, 7.0, "Euler a")
    assert plot[2, 7, "Euler a"] is cell and plot["2", "CFG Scale: 7", "Euler a"] is cell
    _, _, params = parse_infotext(read_parameters(cell.paths[0]))
    assert (params["Steps"], params["CFG scale"], params["Sampler"]) == ("2", "7", "Euler a")
    with pytest.raises(KeyError, match="is not a value of x"):
        plot[3, 7, "Euler a"]
    with pytest.raises(KeyError, match="give one value per axis"):
        plot[2, 7]
    table = plot.table()
    pandas = pytest.importorskip("pandas")
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
    assert len(_dark_rows(plot.grid, (left, 0, left + 64, top)))
    assert len(_dark_rows(plot.grid, (0, top, left, top + 64)))
    # the live grid was sent after every cell, starting from the labelled placeholder
    assert [e[2] for e in view.events if isinstance(e, tuple)] == list(range(1, 9))
    assert view.placeholder is not None and view.placeholder.size == plot.grid.size
    assert view.events[0] == "start" and view.events[-1] == "finish"
    assert any(s.startswith("cell 8/8 · step 2/2 · ETA") for s in view.statuses)


def test_bundled_plot_grid_infotext_is_a1111s(bundled_plot):
    plot, folder, _, _ = bundled_plot
    first = read_parameters(plot[1, 3, "Euler a"].paths[0])
    tail = (
        ', Script: X/Y/Z plot, X Type: Steps, X Values: "1, 2", Y Type: CFG Scale, Y Values: "3, 7", '
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
    plot = importlib.import_module("jupyter_sd.xyz").last_plot  # (jupyter_sd.xyz is the function)
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
    plot = importlib.import_module("jupyter_sd.xyz").last_plot
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


# -- front ends ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shell():
    from IPython.testing import globalipapp

    ip = globalipapp.start_ipython() or globalipapp.get_ipython()  # started once per process, maybe by another module
    ip.run_line_magic("load_ext", "jupyter_sd")
    return ip


def _run(shell, cell):
    result = shell.run_cell(cell)
    if result.error_before_exec:
        raise result.error_before_exec
    if result.error_in_exec:
        raise result.error_in_exec
    return result.result


def test_magic_prompt_sr_missing_is_one_line_and_paints_nothing(shell, tiny_model_dir, tmp_path):
    engine = painter.get_engine()
    loads = engine.load_count
    with pytest.raises(UsageError) as info:
        _run(shell, f'%%paint --model {tiny_model_dir} -o {tmp_path / "out"} --x "Prompt S/R: cat, dog"\na red fox')
    assert type(info.value) is UsageError
    assert str(info.value) == "x: Prompt S/R did not find 'cat' in the prompt or negative prompt"
    assert not (tmp_path / "out").exists() and engine.load_count == loads


def test_magic_bad_axis_is_one_line(shell, tmp_path):
    with pytest.raises(UsageError, match=r"^y: unknown axis 'Stepz' .*Did you mean 'Steps'\?$"):
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
    from kernel_client import of_type, reply_status, running_kernel

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
    shutil.copy(Path(__file__).resolve().parents[1] / "examples" / "xyz_plot.ipynb", notebook_file)
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
    assert len(grids) == 2  # both grids stay in the saved notebook
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
    from jupyter_sd.xyz_axes import axes

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


# -- axes of other modules' options (skipped where this version lacks them) ---------------------------------------


def _available(label):
    try:
        return find_axis(label).missing() is None
    except ValueError:
        return False


@pytest.mark.skipif(not _available("Clip skip"), reason="no clip_skip option in this version")
def test_clip_skip_axis_changes_the_picture_and_is_recorded(tiny_model_dir, tmp_path):
    request = PaintRequest(prompt="a fox", model=str(tiny_model_dir), seed=3, steps=2, outdir=str(tmp_path))
    plot = run_plot(request, {"x": "Clip skip: 1, 2"}, Recorder())
    first, second = plot[1], plot[2]
    assert second.request.clip_skip == 2
    assert "Clip skip: 2" in read_parameters(second.paths[0])
    assert not np.array_equal(np.asarray(first.images[0]), np.asarray(second.images[0]))
    alone = painter.render(request.replace(clip_skip=2, outdir=str(tmp_path / "alone")), reraise_interrupt=False)
    assert np.abs(np.asarray(alone.images[0], dtype=int) - np.asarray(second.images[0], dtype=int)).max() <= 1


@pytest.mark.skipif(not (_available("Lora weight") and _available("VAE")), reason="no LoRA/VAE support here")
def test_lora_weight_and_vae_axes_on_real_files(tiny_model_dir, tmp_path):
    pytest.importorskip("peft")
    import torch
    from diffusers import StableDiffusionPipeline
    from ldm_checkpoint import vae_to_ldm
    from safetensors.torch import save_file
    from test_networks import kohya_lora
    from tiny_pipeline import tiny_vae

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


def test_axis_grid_and_result_modules_sit_at_the_bottom():
    from pathlib import Path

    from test_package import ABOVE, _imported_modules

    root = Path(__file__).resolve().parents[1] / "jupyter_sd"
    for name in ("xyz_axes", "xyz_grid", "xyz_result"):
        imported = _imported_modules(root / f"{name}.py")
        upward = {m for m in imported if m.startswith("jupyter_sd.") and m.split(".")[1] in (*ABOVE, "xyz_views")}
        heavy = {m for m in imported if m.split(".")[0] in ("torch", "diffusers", "IPython", "ipywidgets")}
        assert not upward and not heavy, (name, upward, heavy)


@pytest.mark.skipif(not (_available("Hires upscale") and _available("Hires steps")), reason="no hires fix here")
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


@pytest.mark.skipif(not _available("Denoising"), reason="no img2img here")
def test_denoising_axis_on_an_init_picture(tiny_model_dir, tmp_path):
    init = tmp_path / "init.png"
    Image.fromarray(np.tile(np.array([200, 40, 40], dtype=np.uint8), (16, 16, 1))).save(init)
    request = PaintRequest(
        prompt="a fox", model=str(tiny_model_dir), seed=3, steps=4, init=str(init), outdir=str(tmp_path / "out")
    )
    plot = run_plot(request, {"x": "Denoising: 0.25, 1"}, Recorder())
    low, high = plot[0.25], plot[1.0]
    assert parse_infotext(read_parameters(low.paths[0]))[2]["Denoising strength"] == "0.25"
    reference = np.asarray(Image.open(init).convert("RGB"), dtype=int)
    closer = np.abs(np.asarray(low.images[0], dtype=int) - reference).mean()
    farther = np.abs(np.asarray(high.images[0], dtype=int) - reference).mean()
    assert closer < farther  # less denoising keeps more of the init picture


@pytest.mark.skipif(not _available("Var. seed"), reason="no variation seeds here")
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
