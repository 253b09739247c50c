"""An IP-Adapter unit's effective region mask from a cell, a dict or a picture: read, refused in one line when its
file is bad, recorded in the PNG's JSON chunk and repainted by load_request()."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import numpy as np
import pytest
from helpers.paint_modes import tiny_request
from helpers.tiny_ip_adapter import reference_picture, save_adapter, tiny_adapter_state, tiny_image_encoder
from PIL import Image

from jupyter_sd.painting.session import render
from jupyter_sd.painting.store import load_request
from jupyter_sd.recipe.control_units import format_unit, format_unit_option, parse_unit_text, read_units


def test_the_cell_form_and_the_api_field_name_the_mask():
    cell = parse_unit_text("Module: ip-adapter-auto, Model: ip-adapter_sd15, Image: a.png, Mask: m.png")
    long = parse_unit_text("Module: ip-adapter-auto, Model: ip-adapter_sd15, Effective Region Mask: m.png")
    (api,) = read_units([{"module": "ip-adapter-auto", "model": "ip-adapter_sd15", "effective_region_mask": "m.png"}])
    assert cell.effective_region_mask == long.effective_region_mask == api.effective_region_mask == "m.png"
    assert format_unit_option(cell).endswith(", Image: a.png, Effective Region Mask: m.png")
    assert parse_unit_text(format_unit_option(cell)) == cell
    assert "Mask" not in format_unit(cell)  # the infotext, as the extension writes it: no mask


def _adapter(tiny_model_dir, tmp_path):
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(tiny_model_dir, subfolder="unet")
    tiny_image_encoder().save_pretrained(str(tmp_path / "ipa" / "image_encoder"))
    return save_adapter(tiny_adapter_state(unet, 24, seed=5), tmp_path / "ipa" / "ip-adapter_masked.safetensors")


def test_a_bad_mask_file_is_one_line(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "broken.png").write_bytes(b"not a picture")
    for name, why in (("missing.png", "no such file 'missing.png'"), ("broken.png", "could not read 'broken.png'")):
        unit = parse_unit_text(f"Module: ip-adapter-auto, Model: x, Mask: {name}")
        request = tiny_request(tiny_model_dir, controlnet=(replace(unit, image=reference_picture()),))
        with pytest.raises(ValueError, match=f"controlnet unit 0 mask: {why}") as error:
            render(request, reraise_interrupt=False)
        assert "\n" not in str(error.value) and len(str(error.value)) < 200


def test_masks_are_recorded_and_load_request_repaints_them(tiny_model_dir, tmp_path):
    file = _adapter(tiny_model_dir, tmp_path)
    left = tmp_path / "left.png"
    Image.new("RGB", (8, 16)).save(left)  # a narrow black mask file …
    mask = Image.new("L", (16, 16), 255)
    mask.paste(0, (0, 0, 8, 16))  # … and an in-memory right-half one
    units = read_units(
        [
            {"module": "ip-adapter-auto", "model": str(file), "image": reference_picture(seed=8), "weight": 0.6},
            {"module": "ip-adapter-auto", "model": str(file), "image": reference_picture(seed=9)},
        ]
    )
    units = (replace(units[0], effective_region_mask=str(left)), replace(units[1], effective_region_mask=mask))
    request = tiny_request(tiny_model_dir, controlnet=units, save=True, outdir=str(tmp_path / "out"))
    result = render(request, reraise_interrupt=False)
    with Image.open(result.paths[0]) as png:
        payload = json.loads(png.text["jupyter_sd"])
    records = payload["controlnet_masks"]
    assert records[0]["path"] == str(left.resolve())
    for record in records:
        assert hashlib.sha256(open(record["path"], "rb").read()).hexdigest() == record["sha256"]
    again = load_request(result.paths[0])
    assert [u.effective_region_mask for u in again.controlnet] == [r["path"] for r in records]
    repainted = render(again.replace(save=False), reraise_interrupt=False)
    assert np.array_equal(np.asarray(repainted.images[0]), np.asarray(result.images[0]))
    unmasked = tuple(replace(unit, effective_region_mask=None) for unit in units)
    plain = render(request.replace(controlnet=unmasked, save=False), reraise_interrupt=False)
    assert np.abs(np.asarray(plain.images[0], dtype=int) - np.asarray(result.images[0], dtype=int)).max() > 5
