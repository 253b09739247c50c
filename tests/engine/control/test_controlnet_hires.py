"""ControlNet units in the hires pass (sd-webui-controlnet's "Hr Option"), against diffusers' own pipelines.

The reference is built from diffusers calls in the test: the first pass by ``StableDiffusionControlNetPipeline`` (or
the plain pipeline, "High res only") to latents, a bilinear ×2, then ``StableDiffusionControlNetImg2ImgPipeline``
(or the plain img2img, "Low res only") from fresh generators of the same seed. The unit's picture is 32×32 of
2×2 blocks, so its map at the first pass's 16×16 is the picture drawn at 16×16, and at the hires size the picture.
"""

from __future__ import annotations

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
from jupyter_sd.recipe.control_units import read_units


@pytest.fixture(scope="module")
def engine():
    return Engine()


@pytest.fixture(scope="module")
def nets(tiny_model_dir, tmp_path_factory):
    from diffusers import ControlNetModel, StableDiffusionPipeline

    raw = StableDiffusionPipeline.from_pretrained(tiny_model_dir, safety_checker=None)
    raw.set_progress_bar_config(disable=True)
    folder = save_folder(tiny_controlnet(raw.unet, seed=1), tmp_path_factory.mktemp("cn") / "cn_folder")
    return {
        "raw": raw,
        "folder": folder,
        "net": ControlNetModel.from_pretrained(folder),
        "config": raw.scheduler.config,
    }


def small_map() -> Image.Image:
    image = Image.new("RGB", (16, 16))
    draw = ImageDraw.Draw(image)
    draw.rectangle([2, 2, 9, 9], fill=(255, 255, 255))
    draw.rectangle([11, 4, 13, 14], fill=(255, 255, 255))
    return image


def big_map() -> Image.Image:
    return small_map().resize((32, 32), Image.NEAREST)


def reference(nets, low: bool, high: bool) -> Image.Image:
    """diffusers' hires fix with the ControlNet in the passes named: 6 steps at 16×16, then 4 of 8 at 32×32."""
    from diffusers import (
        StableDiffusionControlNetImg2ImgPipeline,
        StableDiffusionControlNetPipeline,
        StableDiffusionImg2ImgPipeline,
        StableDiffusionPipeline,
    )

    parts, embeds = nets["raw"].components, build_conditioning(nets["raw"], "a red circle", "", 6).pipeline_kwargs()
    with_net = {"controlnet": nets["net"]}
    first = StableDiffusionControlNetPipeline(**parts, **with_net) if low else StableDiffusionPipeline(**parts)
    first.scheduler = make_scheduler("DPM++ 2M", "Automatic", nets["config"])
    call = {"num_inference_steps": 6, "guidance_scale": 7.0, "generator": generators([5]), "width": 16, "height": 16}
    latents = first(**embeds, **call, **({"image": small_map()} if low else {}), output_type="latent").images
    big = torch.nn.functional.interpolate(latents, size=(16, 16), mode="bilinear", antialias=False)
    second = StableDiffusionControlNetImg2ImgPipeline(**parts, **with_net) if high else None
    second = second or StableDiffusionImg2ImgPipeline(**parts)
    second.set_progress_bar_config(disable=True)
    second.scheduler = make_scheduler("DPM++ 2M", "Automatic", nets["config"])
    call = {"num_inference_steps": 8, "strength": 0.5, "guidance_scale": 7.0, "generator": generators([5])}
    if high:
        call.update(control_image=big_map(), controlnet_conditioning_scale=1.0, height=32, width=32)
    return second(**embeds, image=big, **call).images[0]


@pytest.mark.parametrize(
    ("option", "low", "high"), [("Both", True, True), ("Low res only", True, False), ("High res only", False, True)]
)
def test_hr_option_puts_the_unit_in_its_passes_as_diffusers(engine, nets, tiny_model_dir, option, low, high):
    expected = reference(nets, low, high)
    units = read_units([{"module": "none", "model": str(nets["folder"]), "hr_option": option}])
    hires = {"hires": 2, "hires_steps": 4, "hires_denoise": 0.5, "width": 16, "height": 16}
    request = tiny_request(tiny_model_dir, sampler="DPM++ 2M", controlnet=units, **hires)
    result = engine.generate(request, pictures=Pictures(control=(big_map(),)))
    assert result.images[0].size == (32, 32)
    assert_pixels_close(result.images[0], expected)
    assert result.params["ControlNet 0"].endswith(f"Control Mode: Balanced, Hr Option: {option}")
    if option == "Both":  # without the unit in either pass the picture differs by well over the 1/255 allowed
        for low_only, high_only in ((True, False), (False, True)):
            assert np.abs(pixels(expected) - pixels(reference(nets, low_only, high_only))).max() > 3
