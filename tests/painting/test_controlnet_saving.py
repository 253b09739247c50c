"""A picture painted with a ControlNet unit saves the unit's picture as a file, records it (path, sha256) in the
JSON chunk, writes the unit into A1111's parameters, and load_request() paints the same picture again."""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
from helpers.paint_modes import tiny_request
from helpers.tiny_controlnet import save_folder, tiny_controlnet
from PIL import Image, ImageDraw

from jupyter_sd.painting.session import render
from jupyter_sd.painting.store import load_request
from jupyter_sd.recipe.control_units import read_units


def test_unit_picture_is_saved_recorded_and_repainted(tiny_model_dir, tmp_path):
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(tiny_model_dir, subfolder="unet")
    folder = save_folder(tiny_controlnet(unet, seed=3), tmp_path / "cn")
    hint = Image.new("RGB", (16, 16))
    ImageDraw.Draw(hint).rectangle([3, 3, 12, 12], outline=(255, 255, 255))
    units = read_units([{"module": "none", "model": str(folder), "image": hint, "weight": 0.6}])
    request = tiny_request(tiny_model_dir, controlnet=units, save=True, outdir=str(tmp_path / "out"))
    result = render(request.replace(save_detected=True), reraise_interrupt=False)
    detected = result.paths[0].with_name(f"{result.paths[0].stem}-control0.png")  # NNNNN-SEED-control0.png
    assert np.array_equal(np.asarray(Image.open(detected)), np.asarray(hint))  # module none: the map is the picture
    assert np.array_equal(np.asarray(result.detected_maps[0]), np.asarray(hint))
    with Image.open(result.paths[0]) as png:
        text = dict(png.text)
    payload = json.loads(text["jupyter_sd"])
    (record,) = payload["controlnet_images"]
    assert hashlib.sha256(open(record["path"], "rb").read()).hexdigest() == record["sha256"]
    assert np.array_equal(np.asarray(Image.open(record["path"]).convert("RGB")), np.asarray(hint))
    # a diffusers folder's hash is its weights file's (A1111's old hash)
    assert re.search(r'ControlNet 0: "Module: none, Model: cn \[[0-9a-f]{8}\], Weight: 0.6,', text["parameters"])
    again = load_request(result.paths[0])
    assert again.controlnet[0].image == record["path"] and again.controlnet[0].weight == 0.6
    repainted = render(again.replace(save=False), reraise_interrupt=False)
    assert np.array_equal(np.asarray(repainted.images[0]), np.asarray(result.images[0]))
