"""A pasted recipe's ControlNet units: applied when the cell names their pictures, else named as needing one."""

from __future__ import annotations

from jupyter_sd.recipe.a1111 import ignored_infotext_keys
from jupyter_sd.recipe.control_units import unit_images, with_images
from jupyter_sd.recipe.paste import read_pasted
from jupyter_sd.recipe.request import PaintRequest

UNIT_0 = (
    '"Module: canny, Model: control_v11p_sd15_canny [d14c016b], Weight: 0.8, Resize Mode: Crop and Resize, '
    "Processor Res: 512, Threshold A: 100, Threshold B: 200, Guidance Start: 0, Guidance End: 1, "
    'Pixel Perfect: False, Control Mode: Balanced"'
)
PASTED = f'a house\nSteps: 20, Sampler: Euler, Seed: 1, ControlNet 0: {UNIT_0}, ControlNet 1: "Module: none, Model: x"'


def test_units_without_pictures_are_named_and_painted_around():
    pasted = read_pasted(PASTED)
    assert "controlnet" not in pasted.options
    assert pasted.notes == [
        "ControlNet 0, ControlNet 1: needs a picture (--controlnet-image N=FILE); painted without it"
    ]
    assert not any(key.startswith("ControlNet") for key in ignored_infotext_keys(pasted.params))


def test_controlnet_image_gives_pictures_by_unit_number_or_to_all():
    pasted = read_pasted(PASTED, {"controlnet_image": "1=depth.png"})
    (unit,) = pasted.options["controlnet"]
    assert (unit.module, unit.model, unit.image) == ("none", "x", "depth.png")
    assert pasted.notes == ["ControlNet 0: needs a picture (--controlnet-image N=FILE); painted without it"]
    pasted = read_pasted(PASTED, {"controlnet_image": "edges.png"})
    first, second = pasted.options["controlnet"]
    assert (first.module, first.model, first.model_hash, first.weight, first.threshold_b) == (
        "canny",
        "control_v11p_sd15_canny",
        "d14c016b",
        0.8,
        200.0,
    )
    assert first.image == second.image == "edges.png" and pasted.notes == []
    PaintRequest(prompt="x", **{"controlnet": pasted.options["controlnet"]}).validate()


def test_unit_images_reads_pairs_or_one_file():
    assert unit_images("0=a.png, 2=b.png", 3) == {0: "a.png", 2: "b.png"}
    assert unit_images("c.png", 2) == {0: "c.png", 1: "c.png"}
    assert unit_images("", 2) == {}
    (unit,) = with_images(read_pasted(PASTED, {"controlnet_image": "1=d.png"}).options["controlnet"], "0=e.png")
    assert unit.image == "d.png"  # a unit's own picture is kept
