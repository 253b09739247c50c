"""Flux IP-Adapter units (XLabs' layout) through Engine.generate, against diffusers' own ``load_ip_adapter``.

The reference is diffusers' ``FluxPipeline`` loaded on its own, given the adapter file by
``load_ip_adapter(folder, weight_name=…, image_encoder_pretrained_model_name_or_path=…)`` (diffusers renames XLabs'
keys itself), the same prompt, CPU generators, picture and scale; the window's reference sets the scale from a step
callback by sd-webui-controlnet's formula written here. Ours finds the encoder as ComfyUI keeps it:
``clip_vision/clip_vision_l.safetensors`` (one file of transformers' keys, no config).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.paint_modes import box_mask, generators, init_picture
from helpers.pixels import assert_pixels_close, pixels
from helpers.tiny_flow import make_tiny_flux
from helpers.tiny_flux_ip_adapter import tiny_vit_l_encoder, xlabs_flux_adapter
from helpers.tiny_ip_adapter import reference_picture, save_adapter, save_encoder_file, tiny_adapter_state
from PIL import Image

from jupyter_sd import library
from jupyter_sd.engine import Engine
from jupyter_sd.engine.pictures import Pictures
from jupyter_sd.recipe.control_units import infotext_units, read_units
from jupyter_sd.recipe.request import PaintRequest

PROMPT = "a red circle"
ADAPTER = "flux-ip-adapter.safetensors"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny Flux; ``ipadapter/`` with XLabs' adapter (and an SD1.5 one), the encoder in ``clip_vision/``."""
    from diffusers import FluxPipeline, UNet2DConditionModel

    root = tmp_path_factory.mktemp("flux-ipa")
    flux = make_tiny_flux(root / "flux")
    transformer = FluxPipeline.from_pretrained(flux).transformer
    encoder = tiny_vit_l_encoder()
    encoder.save_pretrained(str(root / "encoder_folder"))  # the reference's, as diffusers loads one
    save_encoder_file(encoder, root / "models" / "clip_vision" / "clip_vision_l.safetensors")
    save_adapter(xlabs_flux_adapter(transformer, 24, seed=1), root / "models" / "ipadapter" / ADAPTER)
    unet = UNet2DConditionModel(block_out_channels=(8, 16), layers_per_block=1, cross_attention_dim=32,
                                norm_num_groups=8, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                attention_head_dim=2,
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), sample_size=8)  # fmt: skip
    save_adapter(tiny_adapter_state(unet, 24), root / "models" / "ipadapter" / "ip-adapter_sd15.safetensors")
    before = library.models_dir()
    library.set_models_dir(root / "models")
    yield {"root": root, "flux": flux}
    library.set_models_dir(before)


@pytest.fixture(scope="module")
def engine():
    return Engine()


def reference(models, scale=0.8, window=None, cls="FluxPipeline", steps=4, **call):
    """diffusers' `cls` with ``load_ip_adapter`` of XLabs' file, seed 5; `window`: (start, end) of the unit."""
    import diffusers

    pipe = getattr(diffusers, cls).from_pretrained(models["flux"])
    pipe.set_progress_bar_config(disable=True)
    pipe.load_ip_adapter(str(models["root"] / "models" / "ipadapter"), weight_name=ADAPTER,
                         image_encoder_pretrained_model_name_or_path=str(models["root"] / "encoder_folder"),
                         image_encoder_dtype=torch.float32)  # fmt: skip
    pipe.set_ip_adapter_scale(scale)

    def step_end(pipe_, i, t, values):  # sd-webui-controlnet: step i+1 applies unless (i+1)/n is outside start..end
        start, end = window
        done = (i + 1) / steps
        pipe_.set_ip_adapter_scale(0.0 if done < start or done > end else scale)
        return values

    base = dict(num_inference_steps=steps, width=32, height=32, guidance_scale=3.5, generator=generators([5]))
    if window:
        base["callback_on_step_end"] = step_end
    return pipe(PROMPT, ip_adapter_image=reference_picture(), **base, **call).images[0]


def paint(engine, models, units, init_image=None, mask_image=None, **changes):
    base = dict(prompt=PROMPT, model=str(models["flux"]), steps=4, seed=5, width=32, height=32, rng="cpu",
                preview="none", save=False, controlnet=read_units(units))  # fmt: skip
    request = PaintRequest(**{**base, **changes})
    return engine.generate(
        request, pictures=Pictures(init_image, mask_image, control=tuple(reference_picture() for _ in units))
    )


def unit(module="ip-adapter_clip_l", model="flux-ip-adapter", **values):
    return {"module": module, "model": model, **values}


def test_flux_unit_equals_diffusers_load_ip_adapter_and_writes_its_infotext(engine, models):
    expected = reference(models)
    result = paint(engine, models, [unit(weight=0.8)])
    assert_pixels_close(result.images[0], expected)
    plain = paint(engine, models, [])
    assert np.abs(pixels(expected) - pixels(plain.images[0])).max() > 10  # the adapter changes the picture
    short = library.short_hash("controlnet", models["root"] / "models" / "ipadapter" / ADAPTER)
    assert result.params["ControlNet 0"] == (
        f"Module: ip-adapter_clip_l, Model: flux-ip-adapter [{short}], Weight: 0.8, Resize Mode: Crop and Resize, "
        "Guidance Start: 0, Guidance End: 1, Pixel Perfect: False, Control Mode: Balanced"
    )
    pasted = infotext_units({"ControlNet 0": result.params["ControlNet 0"]})
    assert (pasted[0].module, pasted[0].model, pasted[0].model_hash, pasted[0].weight) == (
        "ip-adapter_clip_l",
        "flux-ip-adapter",
        short,
        0.8,
    )
    again = paint(engine, models, [unit()], controlnet=(pasted[0],))
    assert np.array_equal(pixels(again.images[0]), pixels(result.images[0]))


def test_weight_zero_and_the_plain_picture_after_equal_a_fresh_plain_paint(engine, models):
    fresh = paint(Engine(), models, []).images[0]
    zero = paint(engine, models, [unit(module="ip-adapter-auto", weight=0)]).images[0]
    after = paint(engine, models, []).images[0]
    assert np.array_equal(pixels(zero), pixels(fresh))
    assert np.array_equal(pixels(after), pixels(fresh))


def test_true_cfg_and_a_window_equal_diffusers(engine, models):
    """CFG 2 with a negative prompt: diffusers' true CFG (two transformer calls a step, a black negative picture)."""
    expected = reference(models, window=(0.0, 0.5), true_cfg_scale=2.0, negative_prompt="blue")
    result = paint(engine, models, [unit(weight=0.8, guidance_end=0.5)], guidance=2.0, negative_prompt="blue")
    assert_pixels_close(result.images[0], expected)
    whole = reference(models, true_cfg_scale=2.0, negative_prompt="blue")
    assert np.abs(pixels(expected) - pixels(whole)).max() > 2  # the window changes the picture


@pytest.mark.parametrize("mode", ["img2img", "inpaint"])
def test_img2img_and_inpaint_equal_diffusers(engine, models, mode):
    init, mask = init_picture(32), box_mask(32, (8, 8, 24, 24))
    cls, extra = ("FluxImg2ImgPipeline", {}) if mode == "img2img" else ("FluxInpaintPipeline", {"mask_image": mask})
    expected = reference(models, cls=cls, steps=6, image=init, strength=0.65, **extra)
    if mode == "inpaint":
        expected = Image.composite(expected, init, mask)
    changes = dict(init="x", strength=0.6, steps=6, mask="m" if mode == "inpaint" else "", mask_blur=0)
    result = paint(engine, models, [unit(weight=0.8)], init, mask if mode == "inpaint" else None, **changes)
    assert_pixels_close(result.images[0], expected)


def test_the_hires_pass_takes_the_unit_by_its_hr_option(engine, models):
    """Both passes, or the first only: the hires pass (Flux img2img on latents) paints with the adapter or without."""
    hires = {"hires": 2, "hires_steps": 2, "hires_denoise": 0.6}
    both = paint(engine, models, [unit(weight=0.8)], **hires).images[0]
    first = paint(engine, models, [unit(weight=0.8, hr_option="Low res only")], **hires).images[0]
    assert both.size == first.size == (64, 64)
    assert np.abs(pixels(both) - pixels(first)).max() > 2  # the hires pass sees the adapter only with "Both"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (unit(model="ip-adapter_sd15", module="ip-adapter-auto"), "is an SD1.5/SDXL IP-Adapter (h94's layout)"),
        (unit(module="ip-adapter_clip_h"), "Flux's IP-Adapter takes ip-adapter_clip_l"),
        (unit(model="nowhere"), "no IP-Adapter 'nowhere'"),
    ],
)
def test_refusals_are_one_line(engine, models, values, message):
    with pytest.raises(ValueError, match="^controlnet: ") as error:
        paint(engine, models, [values])
    assert message in str(error.value) and "\n" not in str(error.value) and len(str(error.value)) < 200


def test_a_missing_encoder_is_one_line(engine, models):
    path = models["root"] / "models" / "clip_vision" / "clip_vision_l.safetensors"
    hidden = path.rename(path.with_suffix(".off"))
    try:
        with pytest.raises(ValueError, match="^controlnet: no ViT-L image encoder for flux-ip-adapter") as error:
            paint(Engine(), models, [unit()])
    finally:
        hidden.rename(path)
    assert "clip-vit-large-patch14.safetensors" in str(error.value) and len(str(error.value)) < 200


def test_a_single_file_vit_l_encoder_loads_as_openais_config_says(models):
    """ComfyUI's ``clip_vision/`` file has no config: ViT-L is OpenAI's build (quick GELU), GELU would differ."""
    from transformers import CLIPVisionModelWithProjection

    from jupyter_sd.engine.control.ip_adapter_files import load_encoder
    from jupyter_sd.engine.control.ip_adapter_flow import load_vit_l

    path = models["root"] / "models" / "clip_vision" / "clip_vision_l.safetensors"
    folder = CLIPVisionModelWithProjection.from_pretrained(str(models["root"] / "encoder_folder"))
    picture = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 3
    with torch.no_grad():
        expected = folder(picture).image_embeds
        assert torch.allclose(load_vit_l(path, False)(picture).image_embeds, expected, atol=1e-6)
        assert (load_encoder(path, False, act="gelu")(picture).image_embeds - expected).abs().max() > 1e-4


def test_a_flux_adapter_on_an_sd_model_is_one_line(engine, models, tiny_model_dir):
    request = PaintRequest(prompt=PROMPT, model=str(tiny_model_dir), steps=2, width=32, height=32, preview="none",
                           save=False, controlnet=read_units([unit(module="ip-adapter-auto")]))  # fmt: skip
    with pytest.raises(ValueError, match="^controlnet: flux-ip-adapter is a Flux IP-Adapter") as error:
        engine.generate(request, pictures=Pictures(control=(reference_picture(),)))
    assert "\n" not in str(error.value) and len(str(error.value)) < 200
