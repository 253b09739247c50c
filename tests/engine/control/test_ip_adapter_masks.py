"""IP-Adapter units' effective region masks (sd-webui-controlnet's ``effective_region_mask``) on the tiny SD 1.5
model, against diffusers' own pipeline given the same adapters, pictures and ``ip_adapter_masks`` made by its
``IPAdapterMaskProcessor`` in the test."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.paint_modes import generators, tiny_request
from helpers.pixels import assert_pixels_close, pixels
from helpers.tiny_ip_adapter import reference_picture, save_adapter, tiny_adapter_state, tiny_image_encoder
from PIL import Image

from jupyter_sd import library
from jupyter_sd.engine import Engine
from jupyter_sd.engine.conditioning import build_conditioning
from jupyter_sd.engine.pictures import Pictures
from jupyter_sd.engine.schedulers import make_scheduler
from jupyter_sd.recipe.control_units import read_units

SIZE = 16  # the tiny model paints 16×16


@pytest.fixture(scope="module")
def engine():
    return Engine()


@pytest.fixture(scope="module")
def models(tiny_model_dir, tmp_path_factory):
    """Two adapters and h94's ``image_encoder/`` in the models folder's ``ipadapter/``."""
    from diffusers import StableDiffusionPipeline

    root = tmp_path_factory.mktemp("ipa-masks") / "models"
    raw = StableDiffusionPipeline.from_pretrained(tiny_model_dir, safety_checker=None)
    raw.set_progress_bar_config(disable=True)
    tiny_image_encoder().save_pretrained(str(root / "ipadapter" / "image_encoder"))
    save_adapter(tiny_adapter_state(raw.unet, 24, seed=1), root / "ipadapter" / "ip-adapter_left.safetensors")
    save_adapter(tiny_adapter_state(raw.unet, 24, seed=2), root / "ipadapter" / "ip-adapter_right.safetensors")
    before = library.models_dir()
    library.set_models_dir(root)
    yield {"root": root, "raw": raw, "config": dict(raw.scheduler.config)}
    library.set_models_dir(before)


def half(side: str, width: int = SIZE, height: int = SIZE) -> Image.Image:
    """A black picture whose `side` half is white (RGB, as a user's mask file is)."""
    mask = Image.new("RGB", (width, height))
    box = (0, 0, width // 2, height) if side == "left" else (width // 2, 0, width, height)
    mask.paste((255, 255, 255), box)
    return mask


def reference(models, pictures, scales, masks):
    """diffusers' pipeline with both adapters by ``load_ip_adapter``, masks by ``IPAdapterMaskProcessor``."""
    from diffusers import StableDiffusionPipeline
    from diffusers.image_processor import IPAdapterMaskProcessor

    pipe = StableDiffusionPipeline(**models["raw"].components)
    pipe.set_progress_bar_config(disable=True)
    names = ["ip-adapter_left.safetensors", "ip-adapter_right.safetensors"][: len(pictures)]
    folder = str(models["root"] / "ipadapter")
    pipe.load_ip_adapter([folder] * len(names), subfolder=[""] * len(names), weight_name=names)
    pipe.set_ip_adapter_scale(list(scales))
    pipe.scheduler = make_scheduler("DPM++ 2M", "Automatic", models["config"])
    processor = IPAdapterMaskProcessor()
    made = [None if m is None else processor.preprocess(m, height=SIZE, width=SIZE) for m in masks]
    embeds = build_conditioning(models["raw"], "a red circle", "", 6).pipeline_kwargs()
    try:
        return pipe(
            **embeds,
            num_inference_steps=6,
            guidance_scale=7.0,
            generator=generators([5]),
            ip_adapter_image=list(pictures),
            cross_attention_kwargs={"ip_adapter_masks": made},
        ).images[0]
    finally:
        pipe.unload_ip_adapter()


def unit(model, weight, **values):
    return {"module": "ip-adapter_clip_sd15", "model": model, "weight": weight, **values}


def paint(engine, tiny_model_dir, units, images, masks=()):
    request = tiny_request(tiny_model_dir, sampler="DPM++ 2M", controlnet=read_units(units))
    return engine.generate(request, pictures=Pictures(control=tuple(images), control_masks=tuple(masks)))


def test_two_units_left_and_right_equal_diffusers_ip_adapter_masks(engine, models, tiny_model_dir):
    first, second = reference_picture(seed=1), reference_picture(seed=2)
    units = [unit("ip-adapter_left", 0.9), unit("ip-adapter_right", 0.8)]
    masks = (half("left"), half("right"))
    expected = reference(models, (first, second), (0.9, 0.8), masks)
    result = paint(engine, tiny_model_dir, units, (first, second), masks)
    assert result.images[0].size == (SIZE, SIZE)
    assert_pixels_close(result.images[0], expected)
    unmasked = paint(engine, tiny_model_dir, units, (first, second)).images[0]
    assert np.abs(pixels(unmasked) - pixels(result.images[0])).max() > 5  # the masks change the picture
    assert "Mask" not in result.params["ControlNet 0"]  # the extension's infotext does not write the mask


def test_a_black_mask_switches_its_unit_off_everywhere(engine, models, tiny_model_dir):
    first, second = reference_picture(seed=1), reference_picture(seed=2)
    black = Image.new("L", (SIZE, SIZE))
    masked = paint(
        engine, tiny_model_dir, [unit("ip-adapter_left", 0.9), unit("ip-adapter_right", 0.8)], (first, second)
    )
    off = paint(
        engine,
        tiny_model_dir,
        [unit("ip-adapter_left", 0.9), unit("ip-adapter_right", 0.8)],
        (first, second),
        (None, black),
    )
    alone = paint(engine, tiny_model_dir, [unit("ip-adapter_left", 0.9), unit("ip-adapter_right", 0)], (first, second))
    assert np.array_equal(pixels(off.images[0]), pixels(alone.images[0]))  # acts nowhere: as if at weight 0
    assert np.abs(pixels(masked.images[0]) - pixels(alone.images[0])).max() > 5


def test_a_mask_of_another_size_is_stretched_to_the_picture(engine, models, tiny_model_dir):
    picture = reference_picture(seed=3)
    small = half("left", width=4, height=8)  # another size and shape: stretched, as the extension stretches it
    stretched = paint(engine, tiny_model_dir, [unit("ip-adapter_left", 1.0)], [picture], [small])
    full = paint(engine, tiny_model_dir, [unit("ip-adapter_left", 1.0)], [picture], [half("left")])
    assert np.array_equal(pixels(stretched.images[0]), pixels(full.images[0]))
    expected = reference(models, (picture,), (1.0,), (small,))
    assert_pixels_close(stretched.images[0], expected)


def test_sdxl_unit_with_a_mask_equals_diffusers(tmp_path):
    from diffusers import StableDiffusionXLPipeline
    from diffusers.image_processor import IPAdapterMaskProcessor
    from helpers.tiny_sdxl import make_tiny_sdxl

    model = make_tiny_sdxl(tmp_path / "sdxl")
    raw = StableDiffusionXLPipeline.from_pretrained(model)
    tiny_image_encoder(projection=20).save_pretrained(str(tmp_path / "xl" / "image_encoder"))
    file = save_adapter(tiny_adapter_state(raw.unet, 20, seed=3), tmp_path / "xl" / "ip-adapter_xl.safetensors")
    picture, mask = reference_picture(seed=5), half("right", 32, 16)  # stretched to the 16² picture
    pipe = StableDiffusionXLPipeline(**raw.components)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_ip_adapter(str(file.parent), subfolder="", weight_name=file.name)
    pipe.set_ip_adapter_scale(0.9)
    pipe.scheduler = make_scheduler("DPM++ 2M", "Automatic", dict(raw.scheduler.config))
    masks = [IPAdapterMaskProcessor().preprocess(mask, height=16, width=16)]
    expected = pipe(
        **build_conditioning(raw, "a red circle", "", 4).pipeline_kwargs(),
        num_inference_steps=4,
        guidance_scale=7.0,
        generator=generators([1]),
        width=16,
        height=16,
        ip_adapter_image=picture,
        cross_attention_kwargs={"ip_adapter_masks": masks},
    ).images[0]
    unit = {"module": "ip-adapter_clip_sdxl", "model": str(file), "weight": 0.9}
    request = tiny_request(model, controlnet=read_units([unit]), steps=4, seed=1, width=16, height=16)
    request = request.replace(sampler="DPM++ 2M")
    engine = Engine()
    result = engine.generate(request, pictures=Pictures(control=(picture,), control_masks=(mask,)))
    assert_pixels_close(result.images[0], expected)
    whole = engine.generate(request, pictures=Pictures(control=(picture,)))
    assert np.abs(pixels(whole.images[0]) - pixels(expected)).max() > 5  # the mask changes the picture


def test_only_masked_inpaint_cuts_a_region_mask_as_it_cuts_the_init():
    from jupyter_sd.engine.control.apply import Control
    from jupyter_sd.engine.control.ip_adapter import Adapter, Adapters
    from jupyter_sd.engine.control.masked_area import cropped
    from jupyter_sd.recipe.control_units import ControlUnit

    mask = half("left", 8, 8)  # drawn over the whole 32² init: stretched to it, its left half white
    adapters = Adapters([Adapter(ControlUnit(module="ip-adapter-auto"), 0, None, "a", None, mask)])
    control = Control([], [], [], [], adapters=adapters)
    for region, white in (
        ((0, 0, 16, 16), True),
        ((16, 16, 32, 32), False),
    ):  # (white: over 0.5, as diffusers binarizes)
        cut = cropped(control, (32, 32), region, (16, 16)).adapters.adapters[0].region_mask
        assert cut.size == (16, 16) and ((np.asarray(cut) > 127) == white).all()
    left_edge = cropped(control, (32, 32), (8, 0, 24, 16), (16, 16)).adapters.adapters[0].region_mask
    assert (np.asarray(left_edge)[:, :7] > 127).all() and (np.asarray(left_edge)[:, 9:] < 128).all()
