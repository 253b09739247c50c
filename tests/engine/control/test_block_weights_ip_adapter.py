"""Per-block weights (sd-webui-controlnet's ``advanced_weighting``) on IP-Adapter units.

The references are diffusers' own pipelines with ``load_ip_adapter`` of the same files and
``set_ip_adapter_scale(<a per-block dict written here>)``, the InstantStyle way. The list is one weight per
cross-attention transformer in the extension's order (down blocks', middle, up blocks'); the tiny UNets have four:
``down.block_1`` (one), ``mid``, ``up.block_0`` (two). The tiny SDXL's transformers hold two layers each, which take
their transformer's one weight.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers.paint_modes import generators, tiny_request
from helpers.pixels import assert_pixels_close, pixels
from helpers.tiny_ip_adapter import reference_picture, save_adapter, tiny_adapter_state, tiny_image_encoder

from jupyter_sd.engine import Engine
from jupyter_sd.engine.conditioning import build_conditioning
from jupyter_sd.engine.pictures import Pictures
from jupyter_sd.engine.schedulers import make_scheduler
from jupyter_sd.recipe.control_units import infotext_units, read_units

WEIGHTS = [0.0, 1.4, 0.3, 1.1]
AS_BLOCKS = {"down": {"block_1": [0.0]}, "mid": 1.4, "up": {"block_0": [0.3, 1.1]}}
"""`WEIGHTS` in diffusers' per-block form."""


@pytest.fixture(scope="module")
def engine():
    return Engine()


@pytest.fixture(scope="module")
def sd15(tiny_model_dir, tmp_path_factory):
    """Two adapters with h94's ``image_encoder/`` beside them, and the raw pipeline."""
    from diffusers import StableDiffusionPipeline

    folder = tmp_path_factory.mktemp("blocks") / "ipadapter"
    raw = StableDiffusionPipeline.from_pretrained(tiny_model_dir, safety_checker=None)
    tiny_image_encoder().save_pretrained(str(folder / "image_encoder"))
    first = save_adapter(tiny_adapter_state(raw.unet, 24, seed=1), folder / "ip-adapter_first.safetensors")
    second = save_adapter(tiny_adapter_state(raw.unet, 24, seed=2), folder / "ip-adapter_second.safetensors")
    return {"raw": raw, "files": [first, second]}


def reference(raw, files, scales, pictures, steps=6, seed=5, **call):
    """diffusers' pipeline of `raw`'s components, ``load_ip_adapter`` of `files`, ``set_ip_adapter_scale(scales)``."""
    pipe = type(raw)(**raw.components)
    pipe.set_progress_bar_config(disable=True)
    count = len(files)
    pipe.load_ip_adapter([str(files[0].parent)] * count, subfolder=[""] * count, weight_name=[f.name for f in files])
    pipe.set_ip_adapter_scale(scales)
    pipe.scheduler = make_scheduler("DPM++ 2M", "Automatic", dict(raw.scheduler.config))
    embeddings = build_conditioning(raw, "a red circle", "", steps).pipeline_kwargs()
    base = {"num_inference_steps": steps, "guidance_scale": 7.0, "generator": generators([seed])}
    try:
        return pipe(**embeddings, **base, ip_adapter_image=pictures, **call).images[0]
    finally:
        pipe.unload_ip_adapter()


def unit(file, module="ip-adapter_clip_sd15", **values):
    return {"module": module, "model": str(file), **values}


def test_sd15_layers_take_the_units_weights_beside_a_plain_unit(engine, sd15, tiny_model_dir):
    pictures = [reference_picture(seed=1), reference_picture(seed=2)]
    expected = reference(sd15["raw"], sd15["files"], [AS_BLOCKS, 0.5], pictures)
    units = [unit(sd15["files"][0], weight=0.8, advanced_weighting=WEIGHTS), unit(sd15["files"][1], weight=0.5)]
    request = tiny_request(tiny_model_dir, sampler="DPM++ 2M", controlnet=read_units(units))
    result = engine.generate(request, pictures=Pictures(control=tuple(pictures)))
    assert_pixels_close(result.images[0], expected)
    by_weight = reference(sd15["raw"], sd15["files"], [0.8, 0.5], pictures)
    assert np.abs(pixels(expected) - pixels(by_weight)).max() > 5  # the weights change the picture

    assert result.params["ControlNet 0 Advanced Weighting"] == "[0, 1.4, 0.3, 1.1]"
    assert "ControlNet 1 Advanced Weighting" not in result.params
    pasted = infotext_units(result.params)
    assert pasted[0].advanced_weighting == tuple(WEIGHTS) and pasted[1].advanced_weighting is None


def test_sdxl_transformers_of_several_layers_take_one_weight(engine, tmp_path):
    from diffusers import StableDiffusionXLPipeline
    from helpers.tiny_sdxl import make_tiny_sdxl

    model = make_tiny_sdxl(tmp_path / "sdxl")
    raw = StableDiffusionXLPipeline.from_pretrained(model)
    tiny_image_encoder(projection=20).save_pretrained(str(tmp_path / "xl" / "image_encoder"))
    file = save_adapter(tiny_adapter_state(raw.unet, 20, seed=3), tmp_path / "xl" / "ip-adapter_xl.safetensors")
    picture, size = reference_picture(seed=5), {"width": 16, "height": 16}
    expected = reference(raw, [file], AS_BLOCKS, picture, 4, 1, **size)
    units = [unit(file, "ip-adapter_clip_sdxl", advanced_weighting=WEIGHTS)]
    request = tiny_request(model, steps=4, seed=1, sampler="DPM++ 2M", controlnet=read_units(units), **size)
    result = engine.generate(request, pictures=Pictures(control=(picture,)))
    assert_pixels_close(result.images[0], expected)
    plain = reference(raw, [file], 1.0, picture, 4, 1, **size)
    assert np.abs(pixels(expected) - pixels(plain)).max() > 5  # not the unit's weight 1 everywhere


def test_a_list_of_another_length_is_one_line(engine, sd15, tiny_model_dir):
    units = [unit(sd15["files"][0], advanced_weighting=[1.0] * 16)]  # SD1.5's 16: the tiny UNet has 4
    request = tiny_request(tiny_model_dir, controlnet=read_units(units))
    with pytest.raises(ValueError, match="unit 0's advanced weighting has 16 weights; this model takes 4") as error:
        engine.generate(request, pictures=Pictures(control=(reference_picture(),)))
    assert "\n" not in str(error.value) and len(str(error.value)) < 200


def test_transformer_families_refuse_per_block_weights(tmp_path):
    from helpers.tiny_flow import make_tiny_flux

    flux = make_tiny_flux(tmp_path / "flux")
    engine = Engine()
    for module in ("ip-adapter_clip_l", "canny"):
        units = [{"module": module, "model": "anything", "advanced_weighting": [1.0] * 19}]
        request = tiny_request(flux, steps=2, guidance=1.0, controlnet=read_units(units))
        with pytest.raises(ValueError, match="unit 0's advanced weighting works on SD1.5, SD2 and SDXL ") as error:
            engine.generate(request, pictures=Pictures(control=(reference_picture(),)))
        assert "not Flux" in str(error.value) and "\n" not in str(error.value)
