"""A pose JSON as a unit's picture, through a painting: JSON → pose map → paint. The openpose unit skips detection
and paints as the map drawn from the JSON given as a plain picture; --save-detected writes the map and the JSON
beside the picture; the JSON chunk records the JSON file (a dict's saved once) and load_request() repaints it.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from helpers.paint_modes import tiny_request
from helpers.tiny_controlnet import save_folder, tiny_controlnet
from PIL import Image

from jupyter_sd.engine.control.pose_render import render_pose_map
from jupyter_sd.painting.session import render
from jupyter_sd.painting.store import load_request
from jupyter_sd.recipe.control_units import read_units

POSE = {
    "people": [
        {
            "pose_keypoints_2d": [v for i in range(18) for v in (8.0 + 2.5 * i, 10.0 + 2.0 * (i % 7), 1.0)],
            "hand_left_keypoints_2d": [v for i in range(21) for v in (30.0 + i, 40.0 + (i % 4), 1.0)],
            "hand_right_keypoints_2d": None,
            "face_keypoints_2d": None,
        }
    ],
    "canvas_width": 64,
    "canvas_height": 48,
}


@pytest.fixture()
def controlnet_folder(tiny_model_dir, tmp_path):
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(tiny_model_dir, subfolder="unet")
    return save_folder(tiny_controlnet(unet, seed=3), tmp_path / "cn")


def _paint(tiny_model_dir, folder, image, module, out, **options):
    units = read_units([{"module": module, "model": str(folder), "image": image, "weight": 0.8}])
    request = tiny_request(tiny_model_dir, controlnet=units, outdir=str(out), steps=2, **options)
    return render(request, reraise_interrupt=False)


def test_a_pose_json_file_paints_as_its_map(tiny_model_dir, tmp_path, controlnet_folder):
    path = tmp_path / "pose.json"
    path.write_text(json.dumps(POSE))
    result = _paint(tiny_model_dir, controlnet_folder, str(path), "openpose", tmp_path / "out", save=True)
    result.request.validate()
    drawn = render_pose_map(POSE)
    assert drawn.shape == (48, 64, 3) and drawn.any()
    plain = _paint(tiny_model_dir, controlnet_folder, Image.fromarray(drawn), "none", tmp_path / "o2", save=False)
    np.testing.assert_array_equal(np.asarray(result.images[0]), np.asarray(plain.images[0]))
    np.testing.assert_array_equal(np.asarray(result.detected_maps[0]), drawn)  # no detection ran on it
    assert result.detected_poses == [POSE]
    with Image.open(result.paths[0]) as png:
        text = dict(png.text)
    assert re.search(r'ControlNet 0: "Module: openpose, Model: cn \[[0-9a-f]{8}\], Weight: 0.8,', text["parameters"])
    assert json.loads(text["jupyter_sd"])["controlnet_images"][0]["path"] == str(path.resolve())
    again = load_request(result.paths[0])
    repainted = render(again.replace(save=False), reraise_interrupt=False)
    np.testing.assert_array_equal(np.asarray(repainted.images[0]), np.asarray(result.images[0]))


def test_save_detected_writes_the_json_beside_the_map_and_a_dict_is_recorded_as_json(
    tiny_model_dir, tmp_path, controlnet_folder
):
    out = tmp_path / "out"
    result = _paint(tiny_model_dir, controlnet_folder, POSE, "none", out, save=True, save_detected=True)
    stem = result.paths[0].stem  # NNNNN-SEED
    np.testing.assert_array_equal(np.asarray(Image.open(out / f"{stem}-control0.png")), render_pose_map(POSE))
    assert json.loads((out / f"{stem}-control0.json").read_text()) == POSE
    with Image.open(result.paths[0]) as png:
        record = json.loads(png.text["jupyter_sd"])["controlnet_images"][0]
    assert record["path"].endswith(".json") and json.loads(open(record["path"]).read()) == POSE
    repainted = render(load_request(result.paths[0]).replace(save=False), reraise_interrupt=False)
    np.testing.assert_array_equal(np.asarray(repainted.images[0]), np.asarray(result.images[0]))


def test_no_json_is_written_for_a_unit_without_poses(tiny_model_dir, tmp_path, controlnet_folder):
    picture = Image.fromarray(render_pose_map(POSE))
    result = _paint(tiny_model_dir, controlnet_folder, picture, "none", tmp_path / "out", save=True, save_detected=True)
    assert result.detected_poses == [None]
    assert not list((tmp_path / "out").glob("*-control0.json"))


@pytest.mark.parametrize(
    ("image", "module", "expected"),
    [
        ("{broken", "openpose", "is not JSON"),
        ({"people": "x", "canvas_width": 8, "canvas_height": 8}, "none", "no people or animals"),
        (POSE, "canny", "its module is none or an openpose one (got canny)"),
        ("missing.json", "none", "no such file 'missing.json'"),
    ],
)
def test_bad_pose_json_is_refused_in_one_line(tiny_model_dir, tmp_path, image, module, expected):
    if image == "{broken":
        (tmp_path / "bad.json").write_text(image)
        image = str(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="controlnet unit 0 image") as refused:
        _paint(tiny_model_dir, "unused", image, module, tmp_path / "out", save=False)
    line = str(refused.value)
    assert expected in line and "\n" not in line and len(line) < 200, line


def test_controlnet_image_names_a_pose_json_for_a_unit(tiny_model_dir, tmp_path):
    (tmp_path / "pose.json").write_text('{"people": [{"pose_keypoints_2d": [1, 2]}], "canvas_width": 8}')
    units = read_units(["Module: openpose, Model: unused"])
    request = tiny_request(tiny_model_dir, controlnet=units, controlnet_image=f"0={tmp_path / 'pose.json'}")
    with pytest.raises(ValueError, match=r"controlnet unit 0 image: canvas_height and canvas_width must be 1\.\.16384"):
        render(request, reraise_interrupt=False)
