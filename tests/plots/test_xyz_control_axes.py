"""X/Y/Z axes for ControlNet units, by sd-webui-controlnet's names: each cell's request carries the changed unit."""

from __future__ import annotations

import dataclasses

import pytest

from jupyter_sd.plots.axes import axes, find_axis, parse_axis
from jupyter_sd.recipe.control_units import ControlUnit, units_infotext
from jupyter_sd.recipe.request import PaintRequest

UNITS = (
    "Module: canny, Model: control_v11p_sd15_canny [d14c016b], Weight: 1, Threshold A: 50, Image: edges.png",
    "Module: none, Model: control_v11f1p_sd15_depth, Weight: 0.5, Guidance Start: 0.1, Image: depth.png",
)


def _base() -> PaintRequest:
    return PaintRequest(prompt="a house").replace(controlnet=list(UNITS))


def _cells(base: PaintRequest, *specs: str) -> dict[tuple[int, ...], PaintRequest]:
    """Every cell's request, each axis's value applied in turn (as the plan applies them, before validation)."""
    parsed = [parse_axis(spec, which) for spec, which in zip(specs, "xyz")]
    cells: dict[tuple[int, ...], PaintRequest] = {}

    def walk(index: tuple[int, ...], request: PaintRequest) -> None:
        if len(index) == len(parsed):
            cells[index] = request
            return
        axis = parsed[len(index)]
        for i, value in enumerate(axis.values):
            walk((*index, i), request.replace(**axis.axis.changes(request, value, axis.values)))

    walk((), base)
    return cells


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("[ControlNet] Weight", "[ControlNet] Weight"),
        ("ControlNet weight", "[ControlNet] Weight"),
        ("controlnet guidance end", "[ControlNet] Guidance End"),
        ("[ControlNet] Guidance Start", "[ControlNet] Guidance Start"),
        ("ControlNet model", "[ControlNet] Model"),
        ("ControlNet 0 model", "[ControlNet] Model"),
        ("[ControlNet 1] Weight", "[ControlNet 1] Weight"),
        ("ControlNet 1 weight", "[ControlNet 1] Weight"),
        ("ControlNet 2 guidance end", "[ControlNet 2] Guidance End"),
        ("[ControlNet] Preprocessor", "[ControlNet] Preprocessor"),
        ("ControlNet module", "[ControlNet] Preprocessor"),
        ("[ControlNet] Pre Threshold A", "[ControlNet] Pre Threshold A"),
        ("[ControlNet] Control Mode", "[ControlNet] Control Mode"),
    ],
)
def test_axes_answer_to_sd_webui_controlnets_names(name, label):
    assert find_axis(name).label == label


def test_axis_labels_are_unique():
    labels = [axis.label for axis in axes()]
    assert len(labels) == len(set(labels))
    names = [name for axis in axes() for name in axis.names()]
    assert len(names) == len(set(names))  # no name answers for two axes


def test_weight_and_guidance_end_cells_carry_the_changed_units():
    base = _base()
    first, second = base.controlnet
    cells = _cells(base, "[ControlNet] Weight: 0.25, 0.75", "[ControlNet 1] Guidance End: 0.5, 1")
    assert len(cells) == 4
    for (ix, iy), request in cells.items():
        weight, end = (0.25, 0.75)[ix], (0.5, 1.0)[iy]
        assert request.controlnet == (
            dataclasses.replace(first, weight=weight),
            dataclasses.replace(second, guidance_end=end),
        )
        assert request.prompt == base.prompt and request.seed == base.seed
    infotext = units_infotext(cells[(1, 0)].controlnet)  # as sd-webui-controlnet writes the cell's units
    assert infotext["ControlNet 0"].startswith("Module: canny, Model: control_v11p_sd15_canny [d14c016b], Weight: 0.75")
    assert "Guidance Start: 0.1, Guidance End: 0.5" in infotext["ControlNet 1"]
    assert parse_axis("[ControlNet] Weight: 0.25, 0.75").labels == [
        "[ControlNet] Weight: 0.25",
        "[ControlNet] Weight: 0.75",
    ]


def test_model_axis_changes_the_model_and_drops_the_old_hash():
    cells = _cells(_base(), "[ControlNet] Model: control_v11p_sd15_lineart, t2i_canny [0a1b2c3d]")
    first = [cell.controlnet[0] for cell in cells.values()]
    assert [(unit.model, unit.model_hash) for unit in first] == [
        ("control_v11p_sd15_lineart", None),
        ("t2i_canny", "0a1b2c3d"),
    ]
    assert all(cell.controlnet[1] == _base().controlnet[1] for cell in cells.values())
    assert find_axis("[ControlNet] Model").cost > find_axis("[ControlNet] Weight").cost  # models load outermost


def test_other_unit_fields():
    cells = _cells(
        _base(), "[ControlNet] Control Mode: Balanced, My prompt is more important", "ControlNet 1 module: invert"
    )
    modes = [cell.controlnet[0].control_mode for cell in cells.values()]
    assert modes == ["Balanced", "My prompt is more important"]
    assert {cell.controlnet[1].module for cell in cells.values()} == {"invert"}
    cells = _cells(_base(), "[ControlNet] Pre Threshold A: 20, 80", "[ControlNet] Guidance Start: 0.3")
    assert [(c.controlnet[0].threshold_a, c.controlnet[0].guidance_start) for c in cells.values()] == [
        (20.0, 0.3),
        (80.0, 0.3),
    ]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("[ControlNet 2] Weight: 0.5", "controlnet: the axis varies unit 2, and the request has only 2"),
        ("[ControlNet] Weight: 3", "controlnet: weight must be 0-2, not 3"),
        ("[ControlNet 1] Guidance End: 0.05", "controlnet: guidance start (0.1) is after guidance end (0.05)"),
        ("[ControlNet] Control Mode: loud", "controlnet: unknown control mode 'loud'; one of: Balanced"),
    ],
)
def test_a_bad_cell_is_one_line(spec, message):
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")) as caught:
        _cells(_base(), spec)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 200


def test_a_request_without_units_is_told_to_add_them():
    with pytest.raises(ValueError, match=r"the request has none \(add units with --controlnet\)"):
        _cells(PaintRequest(prompt="a"), "ControlNet weight: 0.5")


def test_a_unit_axis_keeps_the_units_picture_object():
    picture = object.__new__(ControlUnit)  # any object stands for the picture: the axis never touches it
    base = PaintRequest(prompt="a").replace(controlnet=[{"module": "canny", "model": "m", "image": picture}])
    (cell,) = _cells(base, "[ControlNet] Weight: 0.4").values()
    assert cell.controlnet[0].image is picture and cell.controlnet[0].weight == 0.4
