"""X/Y/Z axes: A1111's value syntax, the generated axis list, and the checks a plan makes before anything runs."""

from __future__ import annotations

import pytest

from jupyter_sd.plots.axes import SPECIAL_AXES, find_axis, parse_axis, split_values
from jupyter_sd.plots.plan import plan
from jupyter_sd.recipe.request import PaintRequest
from jupyter_sd.recipe.values import option_fields

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
        ("Stepz: 1, 2", "x: unknown axis 'Stepz'; did you mean 'Steps'? (every axis: docs/plots.md)"),
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
        ({"x": "Steps: 10, 1001"}, "x: Steps value '1001': steps: must be 1–1000 (got 1001)"),
        ({"y": "Sampler: Euler b"}, "y: Sampler value 'Euler b': sampler: unknown 'Euler b'"),
        ({"x": "Size: 64x4"}, "x: Size value '64x4': height: must be 8–4096 (got 4)"),
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


def test_every_special_axis_is_available():
    fields = {f.name for f in option_fields()}
    for axis in SPECIAL_AXES:
        assert axis.missing() is None, axis.label
        assert axis.option is None or axis.option in fields
        assert find_axis(axis.label).label == axis.label


def test_an_axis_whose_option_is_missing_says_so_in_one_line(monkeypatch):
    from jupyter_sd.plots import axes as axes_module

    future = axes_module.Axis("Future knob", "int", option="future_knob")
    helper = axes_module.Axis("Helper knob", "int", requires="jupyter_sd.engine.no_such_module.thing")
    monkeypatch.setattr(axes_module, "SPECIAL_AXES", (*axes_module.SPECIAL_AXES, future, helper))
    for axis in (future, helper):
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
        from jupyter_sd.recipe.prompts import extract_networks

        checked = plan(PaintRequest(prompt="a fox <lora:ink:0.8>"), {"x": "Lora weight: 0-1 [3]"})
        weights = [extract_networks(r.prompt)[1][0].unet_weight for r in checked.requests.values()]
        assert weights == [0.0, 0.5, 1.0]
        with pytest.raises(ValueError, match="^x: Lora weight varies the first <lora:name:weight> tag, and the"):
            plan(PaintRequest(prompt="a fox"), {"x": "Lora weight: 0.5, 1"})


def test_vae_axis_values_must_exist(tmp_path):
    assert find_axis("VAE").missing() is None
    (tmp_path / "ink.safetensors").write_bytes(b"")
    checked = plan(PaintRequest(prompt="a fox"), {"x": f"VAE: None, {tmp_path / 'ink.safetensors'}"})
    assert [r.vae for r in checked.requests.values()] == ["", str(tmp_path / "ink.safetensors")]
    assert checked.axes[0].labels[0] == "VAE: None"
    with pytest.raises(ValueError, match="^x: VAE value 'nosuchvae': vae: no 'nosuchvae' in "):
        plan(PaintRequest(prompt="a fox"), {"x": "VAE: nosuchvae"})
