"""Per-block weights (sd-webui-controlnet's ``advanced_weighting``) on ControlNet units.

The references are diffusers' own ControlNet pipelines (SD1.5 and SDXL) given conditioning scale 1, with a forward
hook written here that multiplies the ControlNet's raw residual i (down blocks' outputs, then the middle block's) by
the unit's weight i, as the extension's ``hook.py`` replaces its control scales; for "ControlNet is more important"
the negative half of the batch is zeroed too. The tiny SD1.5 ControlNet has 5 residuals, the tiny SDXL one 5.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from helpers.paint_modes import generators, tiny_request
from helpers.pixels import assert_pixels_close, pixels
from helpers.tiny_controlnet import save_folder, tiny_controlnet
from PIL import Image, ImageDraw

from jupyter_sd.engine import Engine
from jupyter_sd.engine.conditioning import build_conditioning
from jupyter_sd.engine.pictures import Pictures
from jupyter_sd.engine.schedulers import make_scheduler
from jupyter_sd.recipe.a1111 import ignored_infotext_keys
from jupyter_sd.recipe.control_units import infotext_units, read_units
from jupyter_sd.recipe.options import build_parser, parse_options
from jupyter_sd.recipe.paste import read_pasted
from jupyter_sd.recipe.request import PaintRequest

WEIGHTS = (0.2, 1.5, 0.0, 0.7, 1.1)


def square_outline():
    """A ready 16×16 control map (module none, the size painted: nothing resized): a white square outline."""
    image = Image.new("RGB", (16, 16))
    ImageDraw.Draw(image).rectangle([3, 3, 12, 12], outline=(255, 255, 255))
    return image


@pytest.fixture(scope="module")
def engine():
    return Engine()


@pytest.fixture(scope="module")
def sd15(tiny_model_dir, tmp_path_factory):
    from diffusers import ControlNetModel, StableDiffusionPipeline

    raw = StableDiffusionPipeline.from_pretrained(tiny_model_dir, safety_checker=None)
    folder = save_folder(tiny_controlnet(raw.unet, seed=3), tmp_path_factory.mktemp("blocks") / "cn_blocks")
    return {"raw": raw, "folder": folder, "net": ControlNetModel.from_pretrained(folder)}


def weights_hook(weights, cond_only=False):
    """Residual i × weight i (exactly as many weights as residuals); with `cond_only` the negative half zeroed."""

    def hook(module, args, output):
        down, mid = output
        residuals = [r * w for r, w in zip([*down, mid], weights, strict=True)]
        if cond_only:
            residuals = [torch.cat([torch.zeros_like(r[:1]), r[1:]]) for r in residuals]
        return tuple(residuals[:-1]), residuals[-1]

    return hook


def reference(raw, net, hook, steps=6, seed=5, **call):
    """diffusers' ControlNet pipeline of `raw`'s family over its components, the residuals reshaped by `hook`."""
    from diffusers import StableDiffusionControlNetPipeline, StableDiffusionXLControlNetPipeline

    xl = "XL" in type(raw).__name__
    cls = StableDiffusionXLControlNetPipeline if xl else StableDiffusionControlNetPipeline
    pipe = cls(**raw.components, controlnet=net)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = make_scheduler("DPM++ 2M", "Automatic", dict(raw.scheduler.config))
    embeddings = build_conditioning(raw, "a red circle", "", steps).pipeline_kwargs()
    base = {"num_inference_steps": steps, "guidance_scale": 7.0, "generator": generators([seed])}
    handle = net.register_forward_hook(hook) if hook else None
    try:
        return pipe(**embeddings, **base, image=square_outline(), **call).images[0]
    finally:
        if handle:
            handle.remove()


def unit(folder, **values):
    return {"module": "none", "model": str(folder), **values}


@pytest.mark.parametrize("mode", ["Balanced", "ControlNet is more important"])
def test_sd15_residuals_take_the_units_weights(engine, sd15, tiny_model_dir, mode):
    cond_only = mode == "ControlNet is more important"
    expected = reference(sd15["raw"], sd15["net"], weights_hook(WEIGHTS, cond_only), controlnet_conditioning_scale=1.0)
    units = [unit(sd15["folder"], weight=0.9, control_mode=mode, advanced_weighting=list(WEIGHTS))]
    request = tiny_request(tiny_model_dir, sampler="DPM++ 2M", controlnet=read_units(units))
    result = engine.generate(request, pictures=Pictures(control=(square_outline(),)))
    assert_pixels_close(result.images[0], expected)
    by_weight = reference(
        sd15["raw"], sd15["net"], weights_hook([0.9] * 5, cond_only), controlnet_conditioning_scale=1.0
    )
    assert np.abs(pixels(expected) - pixels(by_weight)).max() > 5  # the weights change the picture: the test can fail

    assert result.params["ControlNet 0 Advanced Weighting"] == "[0.2, 1.5, 0, 0.7, 1.1]"
    assert "Advanced" not in result.params["ControlNet 0"]  # the unit's text stays as the extension writes it
    pasted = read_pasted(result.infotext(), {"controlnet_image": "edges.png"})
    (unit_back,) = pasted.options["controlnet"]
    assert unit_back.advanced_weighting == WEIGHTS and unit_back.control_mode == mode
    assert "ControlNet 0 Advanced Weighting" in pasted.params
    assert not ignored_infotext_keys(pasted.params)  # read, not named among the keys painted without
    given = read_units(units)[0]  # the unit back, as given (its model by the name written)
    assert dataclasses.replace(unit_back, model=given.model, model_hash=None, image=None) == given


def test_sdxl_residuals_take_the_units_weights(engine, tmp_path):
    from diffusers import StableDiffusionXLPipeline
    from helpers.tiny_sdxl import make_tiny_sdxl

    model = make_tiny_sdxl(tmp_path / "sdxl")
    raw = StableDiffusionXLPipeline.from_pretrained(model)
    net = tiny_controlnet(raw.unet, seed=4)
    folder = save_folder(net, tmp_path / "cn_xl")
    size = {"width": 16, "height": 16}
    expected = reference(raw, net, weights_hook(WEIGHTS), 4, 1, controlnet_conditioning_scale=1.0, **size)
    units = [unit(folder, weight=0.7, advanced_weighting=list(WEIGHTS))]
    request = tiny_request(model, steps=4, seed=1, sampler="DPM++ 2M", controlnet=read_units(units), **size)
    result = engine.generate(request, pictures=Pictures(control=(square_outline(),)))
    assert_pixels_close(result.images[0], expected)
    plain = reference(raw, net, None, 4, 1, controlnet_conditioning_scale=0.7, **size)
    assert np.abs(pixels(expected) - pixels(plain)).max() > 5  # not the unit's weight ladder


def test_a_list_of_another_length_is_one_line(engine, sd15, tiny_model_dir):
    units = [unit(sd15["folder"]), unit(sd15["folder"], advanced_weighting=[1.0] * 13)]
    request = tiny_request(tiny_model_dir, controlnet=read_units(units))
    with pytest.raises(ValueError, match="unit 1's advanced weighting has 13 weights; this model takes 5") as error:
        engine.generate(request, pictures=Pictures(control=(square_outline(),) * 2))
    assert "\n" not in str(error.value) and len(str(error.value)) < 200


def test_the_cell_text_the_saved_recipe_and_pasted_keys_read_the_weights():
    line = "--controlnet 'Module: canny, Model: cn, Weight: 0.8, Advanced Weighting: [1, 0.5, 0], Image: a.png'"
    (cell,) = parse_options(build_parser("%%paint", False), line)["controlnet"]
    assert cell.advanced_weighting == (1.0, 0.5, 0.0) and cell.image == "a.png" and cell.weight == 0.8
    saved = PaintRequest(prompt="x", controlnet=(cell,)).to_json()  # the PNG's JSON chunk, read by load_request
    assert "Advanced Weighting: [1, 0.5, 0], Image: a.png" in saved
    assert PaintRequest.from_dict(json.loads(saved)).controlnet == (cell,)
    (api,) = read_units([{"module": "canny", "model": "cn", "advanced_weighting": [0.75] * 13}])
    assert api.advanced_weighting == (0.75,) * 13
    pasted = infotext_units(
        {"ControlNet 1": "Module: none, Model: cn, Weight: 1", "ControlNet 1 Advanced Weighting": "[0.5, 1]"}
    )
    assert pasted[1].advanced_weighting == (0.5, 1.0)
    for bad, said in (([2.5], "numbers 0-2"), (0.5, "a list of numbers"), ("[1, x]", "must be a number")):
        with pytest.raises(ValueError, match=said) as error:
            read_units([{"module": "none", "advanced_weighting": bad}])
        assert "\n" not in str(error.value)
