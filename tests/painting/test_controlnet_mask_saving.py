"""A ControlNet unit's effective region mask through render(): recorded in the PNG's JSON chunk, named by the recipe,
and repainted by load_request()."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import numpy as np
from helpers.paint_modes import tiny_request
from helpers.tiny_controlnet import save_folder, tiny_controlnet
from PIL import Image, ImageDraw

from jupyter_sd.painting.session import render
from jupyter_sd.painting.store import load_request
from jupyter_sd.recipe.control_units import format_unit_option, parse_unit_text, read_units


def test_a_units_mask_is_recorded_and_load_request_repaints_it(tiny_model_dir, tmp_path):
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(tiny_model_dir, subfolder="unet")
    folder = save_folder(tiny_controlnet(unet, seed=3), tmp_path / "cn")
    hint = Image.new("RGB", (16, 16))
    ImageDraw.Draw(hint).rectangle([3, 3, 12, 12], outline=(255, 255, 255))
    mask_file = tmp_path / "top.png"
    top = Image.new("L", (16, 16))
    top.paste(255, (0, 0, 16, 8))
    top.save(mask_file)
    in_memory = Image.new("RGB", (16, 16), (255, 255, 255))
    in_memory.paste((0, 0, 0), (0, 0, 8, 16))  # the right half
    units = read_units(
        [
            {"module": "none", "model": str(folder), "image": hint, "effective_region_mask": str(mask_file)},
            {"module": "none", "model": str(folder), "image": hint.rotate(90), "weight": 0.7},
        ]
    )
    units = (units[0], replace(units[1], effective_region_mask=in_memory))
    request = tiny_request(tiny_model_dir, controlnet=units, save=True, outdir=str(tmp_path / "out"))
    result = render(request, reraise_interrupt=False)
    with Image.open(result.paths[0]) as png:
        payload = json.loads(png.text["jupyter_sd"])
    records = payload["controlnet_masks"]
    assert records[0]["path"] == str(mask_file.resolve()) and records[1]["path"] != records[0]["path"]
    for record in records:
        assert hashlib.sha256(open(record["path"], "rb").read()).hexdigest() == record["sha256"]
    again = load_request(result.paths[0])
    assert [u.effective_region_mask for u in again.controlnet] == [r["path"] for r in records]
    repainted = render(again.replace(save=False), reraise_interrupt=False)
    assert np.array_equal(np.asarray(repainted.images[0]), np.asarray(result.images[0]))
    unmasked = tuple(replace(unit, effective_region_mask=None) for unit in units)
    plain = render(request.replace(controlnet=unmasked, save=False), reraise_interrupt=False)
    assert np.abs(np.asarray(plain.images[0], dtype=int) - np.asarray(result.images[0], dtype=int)).max() > 3
    cell = parse_unit_text(f"Module: none, Model: {folder}, Image: a.png, Mask: {mask_file}")
    assert format_unit_option(cell).endswith(f"Effective Region Mask: {mask_file}")
