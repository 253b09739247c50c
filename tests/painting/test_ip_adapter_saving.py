"""A picture painted with an IP-Adapter unit records the unit's picture in the JSON chunk, writes the unit as
sd-webui-controlnet does, and load_request() paints the same picture again."""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
from helpers.paint_modes import tiny_request
from helpers.tiny_ip_adapter import reference_picture, save_adapter, tiny_adapter_state, tiny_image_encoder

from jupyter_sd.painting.session import render
from jupyter_sd.painting.store import load_request
from jupyter_sd.recipe.control_units import read_units


def test_ip_adapter_unit_picture_is_recorded_and_repainted(tiny_model_dir, tmp_path):
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(tiny_model_dir, subfolder="unet")
    tiny_image_encoder().save_pretrained(str(tmp_path / "ipa" / "image_encoder"))
    file = save_adapter(tiny_adapter_state(unet, 24, seed=5), tmp_path / "ipa" / "ip-adapter_saved.safetensors")
    picture = reference_picture(seed=8)
    units = read_units([{"module": "ip-adapter-auto", "model": str(file), "image": picture, "weight": 0.6}])
    request = tiny_request(tiny_model_dir, controlnet=units, save=True, outdir=str(tmp_path / "out"))
    result = render(request, reraise_interrupt=False)
    with open(result.paths[0], "rb") as handle:
        from PIL import Image

        text = dict(Image.open(handle).text)
    (record,) = json.loads(text["jupyter_sd"])["controlnet_images"]
    assert hashlib.sha256(open(record["path"], "rb").read()).hexdigest() == record["sha256"]
    pattern = r'ControlNet 0: "Module: ip-adapter-auto, Model: ip-adapter_saved \[[0-9a-f]{8}\], Weight: 0.6, '
    assert re.search(pattern + r"Resize Mode: Crop and Resize, Guidance Start: 0,", text["parameters"])
    again = load_request(result.paths[0])
    assert again.controlnet[0].image == record["path"] and again.controlnet[0].module == "ip-adapter-auto"
    repainted = render(again.replace(save=False), reraise_interrupt=False)
    assert np.array_equal(np.asarray(repainted.images[0]), np.asarray(result.images[0]))
