"""ControlNet units: sd-webui-controlnet's API dicts, its infotext (current and older form) and the cell's text."""

import dataclasses

import pytest

from jupyter_sd.recipe.a1111 import ignored_infotext_keys
from jupyter_sd.recipe.control_units import (
    ControlUnit,
    format_unit,
    format_unit_option,
    infotext_units,
    parse_unit_text,
    read_units,
    unit_from_dict,
    units_infotext,
    units_text,
)
from jupyter_sd.recipe.infotext import format_infotext, parse_infotext
from jupyter_sd.recipe.options import build_parser, parse_options
from jupyter_sd.recipe.request import PaintRequest

POSTED = {
    # https://github.com/JIHyeongJun/AI_Project/blob/main/ControlNet/README.md (A1111 1.8.0-RC)
    "depth_leres": (
        "Module: depth_leres, Model: control_v11f1p_sd15_depth [cfd03158], Weight: 1, Resize Mode: Crop and Resize, "
        "Low Vram: False, Processor Res: 512, Threshold A: 0, Threshold B: 0, Guidance Start: 0, Guidance End: 1, "
        "Pixel Perfect: False, Control Mode: Balanced, Hr Option: Both, Save Detected Map: True"
    ),
    # https://github.com/parechae123/StableDiffusion2024_3/blob/main/ControlNet/README.md (A1111 v1.7.0)
    "none_openpose": (
        "Module: none, Model: control_v11p_sd15_openpose [cab727d4], Weight: 1, Resize Mode: Resize and Fill, "
        "Low Vram: False, Guidance Start: 0, Guidance End: 1, Pixel Perfect: False, Control Mode: Balanced, "
        "Hr Option: Both, Save Detected Map: True"
    ),
    # https://github.com/ghosthamlet/cn_v2v/blob/main/README.md (A1111 v1.2.1, the older form), units 1 and 4
    "old_softedge": (
        "preprocessor: softedge_hedsafe, model: control_v11p_sd15_softedge_fp16 [f616a34f], weight: 1, "
        "starting/ending: (0, 1), resize mode: Crop and Resize, pixel perfect: True, control mode: ControlNet is more "
        "important, preprocessor params: (512, 1, 64)"
    ),
    "old_temporalnet": (
        "preprocessor: none, model: diff_control_sd15_temporalnet_fp16 [adc6bd97], weight: 0.5, starting/ending: "
        "(0, 1), resize mode: Crop and Resize, pixel perfect: True, control mode: Balanced, preprocessor params: "
        "(512, 1, 64)"
    ),
}


def test_posted_current_form():
    unit = parse_unit_text(POSTED["depth_leres"], strict=False)
    assert (unit.module, unit.model, unit.model_hash) == ("depth_leres", "control_v11f1p_sd15_depth", "cfd03158")
    assert (unit.weight, unit.processor_res, unit.threshold_a, unit.threshold_b) == (1.0, 512.0, 0.0, 0.0)
    assert (unit.guidance_start, unit.guidance_end, unit.pixel_perfect) == (0.0, 1.0, False)
    assert (unit.resize_mode, unit.control_mode, unit.hr_option) == ("Crop and Resize", "Balanced", "Both")
    none = parse_unit_text(POSTED["none_openpose"], strict=False)
    assert (none.module, none.resize_mode, none.processor_res) == ("none", "Resize and Fill", -1)


def test_posted_older_form():
    unit = parse_unit_text(POSTED["old_softedge"], strict=False)
    assert (unit.module, unit.model, unit.model_hash) == (
        "softedge_hedsafe",
        "control_v11p_sd15_softedge_fp16",
        "f616a34f",
    )
    assert (unit.processor_res, unit.threshold_a, unit.threshold_b) == (512, 1, 64)
    assert (unit.guidance_start, unit.guidance_end) == (0, 1)
    assert unit.pixel_perfect is True and unit.control_mode == "ControlNet is more important"
    assert parse_unit_text(POSTED["old_temporalnet"], strict=False).weight == 0.5


def test_written_as_the_extension_writes_it():
    unit = unit_from_dict(
        {
            "module": "canny",
            "model": "control_v11p_sd15_canny [d14c016b]",
            "weight": 0.8,
            "processor_res": 512,
            "threshold_a": 100,
            "threshold_b": 200,
        }
    )
    assert format_unit(unit) == (
        "Module: canny, Model: control_v11p_sd15_canny [d14c016b], Weight: 0.8, Resize Mode: Crop and Resize, "
        "Processor Res: 512, Threshold A: 100, Threshold B: 200, Guidance Start: 0, Guidance End: 1, "
        "Pixel Perfect: False, Control Mode: Balanced"
    )


@pytest.mark.parametrize("name", sorted(POSTED))
def test_round_trip_through_a_parameters_line(name):
    unit = parse_unit_text(POSTED[name], strict=False)
    text = format_infotext("a cat", "", {"Steps": 20, **units_infotext((unit, unit))})
    _, _, params = parse_infotext(text)
    assert params["ControlNet 1"] == format_unit(unit)
    assert infotext_units(params) == {0: unit, 1: unit}
    assert parse_unit_text(format_unit(unit)) == unit


def test_cell_form_with_image_and_repeatable_flag():
    parser = build_parser("%%paint", False)
    line = (
        "--controlnet 'Module: canny, Model: control_v11p_sd15_canny, Weight: 0.8, Image: edges.png' "
        "--controlnet 'Module: tile_resample, Model: control_v11f1e_sd15_tile, Threshold A: 2, "
        'Control Mode: My prompt is more important, Image: "my pics/a, b.png"\''
    )
    first, second = parse_options(parser, line)["controlnet"]
    assert (first.module, first.weight, first.image, first.model_hash) == ("canny", 0.8, "edges.png", None)
    assert (second.threshold_a, second.control_mode, second.image) == (
        2.0,
        "My prompt is more important",
        "my pics/a, b.png",
    )
    assert format_unit_option(first) == (
        "Module: canny, Model: control_v11p_sd15_canny, Weight: 0.8, Resize Mode: Crop and Resize, "
        "Guidance Start: 0, Guidance End: 1, Pixel Perfect: False, Control Mode: Balanced, Image: edges.png"
    )
    assert parse_unit_text(format_unit_option(first)) == first


def test_api_dicts_aliases_and_numbers():
    units = read_units(
        [
            {"module": "canny", "model": "m", "resize_mode": 2, "control_mode": 1, "guidance": 0.6, "lowvram": True},
            {"module": "canny", "model": "m", "enabled": False},
            {"module": "invert", "model": "m", "resize_mode": "Inner Fit (Scale to Fit)", "input_image": "x.png"},
        ]
    )
    assert len(units) == 2
    assert (units[0].resize_mode, units[0].control_mode, units[0].guidance_end) == (
        "Resize and Fill",
        "My prompt is more important",
        0.6,
    )
    assert (units[1].resize_mode, units[1].image) == ("Crop and Resize", "x.png")
    assert read_units(None) == read_units("") == ()
    assert read_units(units[0]) == (units[0],)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ({"module": "canny", "weight": 3}, ["weight", "0-2"]),
        ({"module": "canny", "guidance_start": 0.8, "guidance_end": 0.5}, ["guidance start", "after"]),
        ({"module": "canny", "guidance_end": 1.5}, ["guidance end", "0-1"]),
        ({"module": "canny", "wieght": 1}, ["unknown unit field 'wieght'"]),
        ({"module": "canny", "resize_mode": "Stretch"}, ["resize mode", "Just Resize"]),
        ({"module": "canny", "control_mode": 5}, ["control mode", "Balanced"]),
        ({"module": "canny", "pixel_perfect": "maybe"}, ["pixel perfect"]),
        ("Module canny", ["Key: value"]),
        (3, ["a unit is a dict"]),
    ],
)
def test_refusals_are_one_line(value, words):
    with pytest.raises(ValueError) as caught:
        read_units([value])
    message = str(caught.value)
    assert "\n" not in message and len(message) < 200, message
    for word in words:
        assert word in message, message


def test_a_request_with_units_validates_and_round_trips_its_dict():
    request = PaintRequest(prompt="a cat", controlnet=({"module": "canny", "model": "m [d14c016b]", "image": "e.png"},))
    request = request.replace(controlnet=request.controlnet)
    assert isinstance(request.controlnet[0], ControlUnit)
    request.validate()
    assert PaintRequest.from_dict(request.to_dict()).controlnet == request.controlnet  # the JSON chunk's form
    request.replace(hires=2.0).validate()  # the hires pass takes units (Hr Option)
    request.replace(sd_upscale=2.0).validate()  # tiled SD upscale and the refiner take units too (painted in
    request.replace(refiner="sdxl_refiner").validate()  # tests/engine/control/test_controlnet_passes.py)
    union = request.replace(controlnet=({"module": "none", "model": "u", "union_control_type": "hard edge"},))
    assert union.controlnet[0].union_control_type == "Hard Edge"
    assert PaintRequest.from_dict(union.to_dict()).controlnet == union.controlnet
    assert PaintRequest(prompt="a cat").validate().controlnet == ()
    assert PaintRequest.from_dict(dataclasses.asdict(PaintRequest(prompt="x"))).controlnet == ()


def test_pasted_units_are_not_named_as_ignored():
    _, _, params = parse_infotext(f'a cat\nSteps: 20, Seed: 1, ControlNet 0: "{POSTED["depth_leres"]}"')
    assert "ControlNet 0" not in ignored_infotext_keys(params)  # read as units (tests/recipe/test_pasted_units.py)


def test_one_unit_a_line_in_the_panels_box():
    first, second = (parse_unit_text(POSTED[name], strict=False) for name in ("depth_leres", "old_temporalnet"))
    box = units_text((first, second))
    assert box.count("\n") == 1
    assert read_units(box) == (first, second)
