"""IP-Adapter units on SDXL and in the "plus" layout (a Resampler), against diffusers' ``load_ip_adapter``.

Each reference loads the same file with diffusers' own loader (h94's layout, ``image_encoder/`` beside it) and paints
with the same prompt embeddings, CPU generator, scheduler, picture and scale.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers.paint_modes import generators
from helpers.pixels import assert_pixels_close, pixels
from helpers.tiny_ip_adapter import (
    reference_picture,
    save_adapter,
    tiny_adapter_state,
    tiny_image_encoder,
    tiny_plus_adapter_state,
)

from jupyter_sd.engine import Engine
from jupyter_sd.engine.conditioning import build_conditioning
from jupyter_sd.engine.pictures import Pictures
from jupyter_sd.engine.schedulers import make_scheduler
from jupyter_sd.recipe.control_units import read_units
from jupyter_sd.recipe.request import PaintRequest


def reference(raw, file, weight, picture, steps, **call):
    """diffusers' pipeline of `raw`'s components with ``load_ip_adapter`` of `file`, painting with seed 1."""
    pipe = type(raw)(**raw.components)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_ip_adapter(str(file.parent), subfolder="", weight_name=file.name)
    pipe.set_ip_adapter_scale(weight)
    pipe.scheduler = make_scheduler("DPM++ 2M", "Automatic", dict(raw.scheduler.config))
    embeddings = build_conditioning(raw, "a red circle", "", steps).pipeline_kwargs()
    base = {"num_inference_steps": steps, "guidance_scale": 7.0, "generator": generators([1])}
    try:
        return pipe(**embeddings, **base, ip_adapter_image=picture, **call).images[0]
    finally:
        pipe.unload_ip_adapter()


def request(model, file, weight, steps, module="ip-adapter_clip_sd15", **options):
    unit = {"module": module, "model": str(file), "weight": weight}
    base = dict(prompt="a red circle", model=str(model), steps=steps, seed=1, rng="cpu", preview="none", save=False)
    return PaintRequest(**base, sampler="DPM++ 2M", controlnet=read_units([unit]), **options)


def test_sdxl_unit_by_path_equals_diffusers_and_an_sd15_adapter_is_refused(tmp_path, tiny_model_dir):
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
    from helpers.tiny_sdxl import make_tiny_sdxl

    model = make_tiny_sdxl(tmp_path / "sdxl")
    raw = StableDiffusionXLPipeline.from_pretrained(model)
    tiny_image_encoder(projection=20).save_pretrained(str(tmp_path / "xl" / "image_encoder"))
    file = save_adapter(tiny_adapter_state(raw.unet, 20, seed=3), tmp_path / "xl" / "ip-adapter_xl.safetensors")
    picture = reference_picture(seed=5)
    size = {"width": 16, "height": 16}
    expected = reference(raw, file, 0.9, picture, 4, **size)
    engine = Engine()
    result = engine.generate(
        request(model, file, 0.9, 4, "ip-adapter_clip_sdxl", **size), pictures=Pictures(control=(picture,))
    )
    assert_pixels_close(result.images[0], expected)
    plain = engine.generate(
        request(model, file, 0.0, 4, "ip-adapter_clip_sdxl", **size), pictures=Pictures(control=(picture,))
    )
    assert np.abs(pixels(plain.images[0]) - pixels(expected)).max() > 5  # the adapter changes the picture

    sd15 = StableDiffusionPipeline.from_pretrained(tiny_model_dir, safety_checker=None)
    narrow = save_adapter(tiny_adapter_state(sd15.unet, 20), tmp_path / "xl" / "ip-adapter_sd15.safetensors")
    with pytest.raises(ValueError, match="ip-adapter_sd15 is an IP-Adapter for width 32; this model is width 80"):
        engine.generate(request(model, narrow, 1.0, 4, **size), pictures=Pictures(control=(picture,)))


def test_plus_adapter_equals_diffusers(tmp_path, tiny_model_dir):
    from diffusers import StableDiffusionPipeline

    raw = StableDiffusionPipeline.from_pretrained(tiny_model_dir, safety_checker=None)
    tiny_image_encoder().save_pretrained(str(tmp_path / "plus" / "image_encoder"))
    state = tiny_plus_adapter_state(raw.unet, 32, seed=4)
    assert "image_proj.layers.0.0.to_kv.weight" in state and "image_proj.latents" in state  # h94's plus layout
    file = save_adapter(state, tmp_path / "plus" / "ip-adapter-plus_sd15.safetensors")
    picture = reference_picture(seed=6)
    expected = reference(raw, file, 1.0, picture, 5)
    result = Engine().generate(
        request(tiny_model_dir, file, 1.0, 5, "ip-adapter-auto"), pictures=Pictures(control=(picture,))
    )
    assert_pixels_close(result.images[0], expected)
    plain = Engine().generate(request(tiny_model_dir, file, 0.0, 5), pictures=Pictures(control=(picture,)))
    assert np.abs(pixels(plain.images[0]) - pixels(expected)).max() > 5
