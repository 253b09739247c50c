"""IP-Adapter units beside ControlNet units in one Flux or SD3 picture, against diffusers' own ControlNet pipelines.

The references are diffusers' ``FluxControlNetPipeline`` / ``StableDiffusion3ControlNetPipeline`` built here over
separately loaded components and the unit's ControlNet, given the adapter by ``load_ip_adapter`` (XLabs' Flux file
with its CLIP ViT-L folder; InstantX's SD3.5 pickle with its SigLIP folder), the same prompt, CPU generators, map,
conditioning scale, picture and adapter scale. Ours finds everything in a temporary models folder as users keep it.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from helpers.paint_modes import box_mask, generators, init_picture
from helpers.paint_modes import square_outline as edges
from helpers.pixels import assert_pixels_close, pixels
from helpers.tiny_flow import make_tiny_flux, make_tiny_sd3
from helpers.tiny_flow_controlnet import tiny_flux_controlnet, tiny_sd3_controlnet
from helpers.tiny_flux_ip_adapter import tiny_vit_l_encoder, xlabs_flux_adapter
from helpers.tiny_ip_adapter import reference_picture, save_adapter, save_encoder_file
from helpers.tiny_sd3_ip_adapter import instantx_sd3_adapter, save_pickle, save_siglip_folder, tiny_siglip
from PIL import Image

from jupyter_sd import library
from jupyter_sd.engine import Engine
from jupyter_sd.engine.pictures import Pictures
from jupyter_sd.recipe.control_units import read_units
from jupyter_sd.recipe.request import PaintRequest

PROMPT = "a red circle"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Tiny Flux and SD3, their ControlNets in ``ControlNet/``, their adapters in ``ipadapter/`` with encoders."""
    from diffusers import FluxPipeline, StableDiffusion3Pipeline

    root = tmp_path_factory.mktemp("ipa-cn")
    flux, sd3 = make_tiny_flux(root / "flux"), make_tiny_sd3(root / "sd3", layers=2)
    tiny_flux_controlnet(seed=1).save_pretrained(root / "models" / "ControlNet" / "flux_cn")
    tiny_sd3_controlnet(seed=5).save_pretrained(root / "models" / "ControlNet" / "sd3_cn")
    adapters = root / "models" / "ipadapter"
    vit_l, siglip = tiny_vit_l_encoder(), tiny_siglip()
    vit_l.save_pretrained(str(root / "vit_l"))
    save_encoder_file(vit_l, root / "models" / "clip_vision" / "clip_vision_l.safetensors")
    save_adapter(
        xlabs_flux_adapter(FluxPipeline.from_pretrained(flux).transformer, 24, seed=1), adapters / "flux.safetensors"
    )
    save_siglip_folder(siglip, adapters / "image_encoder")  # h94's layout: the encoder beside the adapter
    save_pickle(instantx_sd3_adapter(StableDiffusion3Pipeline.from_pretrained(sd3).transformer, 32, seed=1),
                adapters / "sd3.bin")  # fmt: skip
    before = library.models_dir()
    library.set_models_dir(root / "models")
    yield {"root": root, "flux": flux, "sd3": sd3, "adapters": adapters}
    library.set_models_dir(before)


@pytest.fixture(scope="module")
def engine():
    return Engine()


def raw(models, family, scale):
    """diffusers' ControlNet txt2img pipeline of `family` with its ControlNet and ``load_ip_adapter`` of the adapter."""
    import diffusers

    names = {
        "flux": ("FluxPipeline", "FluxControlNetPipeline", "FluxControlNetModel"),
        "sd3": ("StableDiffusion3Pipeline", "StableDiffusion3ControlNetPipeline", "SD3ControlNetModel"),
    }
    base, cls, net = (getattr(diffusers, name) for name in names[family])
    takes = inspect.signature(cls.__init__).parameters
    components = {k: v for k, v in base.from_pretrained(models[family]).components.items() if k in takes}
    controlnet = net.from_pretrained(models["root"] / "models" / "ControlNet" / f"{family}_cn")
    pipe = cls(**components, controlnet=controlnet)
    pipe.set_progress_bar_config(disable=True)
    if family == "flux":
        pipe.load_ip_adapter(str(models["adapters"]), weight_name="flux.safetensors",
                             image_encoder_pretrained_model_name_or_path=str(models["root"] / "vit_l"),
                             image_encoder_dtype=torch.float32)  # fmt: skip
    else:
        pipe.load_ip_adapter(str(models["adapters"]), weight_name="sd3.bin",
                             image_encoder_folder=str(models["adapters"] / "image_encoder"))  # fmt: skip
    pipe.set_ip_adapter_scale(scale)
    return pipe


def paint(engine, models, family, units, mask_image=None, **changes):
    base = dict(prompt=PROMPT, model=str(models[family]), steps=4, seed=5, width=32, height=32, rng="cpu",
                preview="none", save=False, allow_pickle=True, controlnet=read_units(units))  # fmt: skip
    request = PaintRequest(**{**base, **changes})
    pictures = [reference_picture() if unit["module"].startswith("ip-adapter") else edges() for unit in units]
    return engine.generate(
        request, pictures=Pictures(changes.get("init") and init_picture(32), mask_image, control=tuple(pictures))
    )


def units(family, adapter_weight=0.8, control_weight=0.7, **adapter):
    ip = {"flux": ("ip-adapter_clip_l", "flux"), "sd3": ("ip-adapter_siglip", "sd3")}[family]
    return [
        {"module": "none", "model": f"{family}_cn", "weight": control_weight},
        {"module": ip[0], "model": ip[1], "weight": adapter_weight, **adapter},
    ]


def test_flux_controlnet_and_ip_adapter_units_equal_diffusers_flux_controlnet_pipeline(engine, models):
    pipe = raw(models, "flux", 0.8)
    call = dict(num_inference_steps=4, width=32, height=32, guidance_scale=3.5, control_image=edges(),
                controlnet_conditioning_scale=0.7, ip_adapter_image=reference_picture())  # fmt: skip
    expected = pipe(PROMPT, **call, generator=generators([5])).images[0]
    result = paint(engine, models, "flux", units("flux"))
    assert_pixels_close(result.images[0], expected)
    controlnet_only = paint(engine, models, "flux", units("flux")[:1]).images[0]
    assert np.abs(pixels(expected) - pixels(controlnet_only)).max() > 10  # the adapter changes the picture
    assert "Module: none, Model: flux_cn" in result.params["ControlNet 0"]
    assert result.params["ControlNet 1"].startswith("Module: ip-adapter_clip_l, Model: flux [")


def test_flux_true_cfg_and_an_adapter_window_count_steps_not_calls(engine, models):
    """CFG 2 with a negative prompt: two transformer calls a step; the window ends at half the steps, not calls."""
    pipe = raw(models, "flux", 0.8)

    def step_end(pipe_, i, t, values):  # sd-webui-controlnet: step i+1 applies unless (i+1)/n is past the end
        pipe_.set_ip_adapter_scale(0.0 if (i + 1) / 4 > 0.5 else 0.8)
        return values

    call = dict(num_inference_steps=4, width=32, height=32, guidance_scale=3.5, control_image=edges(),
                controlnet_conditioning_scale=0.7, ip_adapter_image=reference_picture(), true_cfg_scale=2.0,
                negative_prompt="blue", callback_on_step_end=step_end)  # fmt: skip
    expected = pipe(PROMPT, **call, generator=generators([5])).images[0]
    result = paint(engine, models, "flux", units("flux", guidance_end=0.5), guidance=2.0, negative_prompt="blue")
    assert_pixels_close(result.images[0], expected)


def test_sd3_controlnet_and_ip_adapter_units_equal_diffusers_sd3_controlnet_pipeline(engine, models):
    """(The tiny SD3 ControlNet's residuals outweigh the adapter at higher weights: 0.1 keeps both visible.)"""
    pipe = raw(models, "sd3", 0.8)
    call = dict(num_inference_steps=4, width=32, height=32, guidance_scale=7.0, control_image=edges(),
                controlnet_conditioning_scale=0.1, ip_adapter_image=reference_picture())  # fmt: skip
    torch.manual_seed(5)  # diffusers samples the map's latents from torch's generator: the engine seeds it so
    expected = pipe(PROMPT, **call, generator=generators([5])).images[0]
    result = paint(engine, models, "sd3", units("sd3", control_weight=0.1))
    assert_pixels_close(result.images[0], expected)
    controlnet_only = paint(engine, models, "sd3", units("sd3", control_weight=0.1)[:1]).images[0]
    assert np.abs(pixels(expected) - pixels(controlnet_only)).max() > 5  # the adapter changes the picture
    plain = paint(engine, models, "sd3", []).images[0]
    assert np.abs(pixels(controlnet_only) - pixels(plain)).max() > 5  # and so does the ControlNet


def flux_init_reference(models, mode, window=None):
    """diffusers' ``FluxControlNetImg2ImgPipeline`` / ``…InpaintPipeline`` (no IP-Adapter arguments) over the
    transformer of `raw`'s pipeline (the adapter installed by ``load_ip_adapter``), the picture's embeddings computed
    here by its encoder and handed to the transformer in ``joint_attention_kwargs``, as ``FluxPipeline`` hands them;
    `window`: the unit's guidance end, its scale set from a step callback by sd-webui-controlnet's formula."""
    import diffusers

    pipe = raw(models, "flux", 0.8)
    with torch.no_grad():
        pixels_in = pipe.feature_extractor(reference_picture(), return_tensors="pt").pixel_values
        embeds = pipe.image_encoder(pixels_in).image_embeds[None]  # (1 picture painted, 1 picture, width)
    cls = "FluxControlNetImg2ImgPipeline" if mode == "img2img" else "FluxControlNetInpaintPipeline"
    init, mask = init_picture(32), box_mask(32, (8, 8, 24, 24))
    extra = {"mask_image": mask} if mode == "inpaint" else {}
    if window is not None:
        steps = 4  # denoise 0.65 of 6 steps: the last 4

        def step_end(pipe_, i, t, values):  # step i+1 applies unless (i+1)/n is past the end
            pipe.set_ip_adapter_scale(0.0 if (i + 1) / steps > window else 0.8)  # (the shared transformer's)
            return values

        extra["callback_on_step_end"] = step_end
    derived = getattr(diffusers, cls).from_pipe(pipe)
    derived.set_progress_bar_config(disable=True)
    expected = derived(
        PROMPT, image=init, control_image=edges(), strength=0.65, num_inference_steps=6, width=32, height=32,
        guidance_scale=3.5, controlnet_conditioning_scale=0.7, generator=generators([5]),
        joint_attention_kwargs={"ip_adapter_image_embeds": [embeds]}, **extra,
    ).images[0]  # fmt: skip
    return Image.composite(expected, init, mask) if mode == "inpaint" else expected


@pytest.mark.parametrize(("mode", "window"), [("img2img", None), ("inpaint", None), ("inpaint", 0.5)])
def test_flux_controlnet_img2img_and_inpaint_with_an_adapter_equal_diffusers_given_its_embeddings(
    engine, models, mode, window
):
    expected = flux_init_reference(models, mode, window)
    changes = dict(init="x", strength=0.6, steps=6, guidance=1.0, mask="m" if mode == "inpaint" else "", mask_blur=0)
    mask = box_mask(32, (8, 8, 24, 24)) if mode == "inpaint" else None
    end = {} if window is None else {"guidance_end": window}
    result = paint(engine, models, "flux", units("flux", **end), mask_image=mask, **changes)
    assert_pixels_close(result.images[0], expected)
    controlnet_only = paint(engine, models, "flux", units("flux")[:1], mask_image=mask, **changes).images[0]
    assert np.abs(pixels(expected) - pixels(controlnet_only)).max() > 5  # the adapter changes the picture
    if window is not None:
        whole = flux_init_reference(models, mode)
        assert np.abs(pixels(expected) - pixels(whole)).max() > 2  # and the window changes it


def test_the_flux_hires_pass_paints_both_kinds_by_their_hr_option(engine, models):
    """The hires pass (Flux's ControlNet img2img) takes the adapter with the ControlNet unit (Hr Option Both)."""
    hires = dict(width=16, height=16, hires=2, hires_steps=2, hires_denoise=0.6, guidance=1.0)
    both = paint(engine, models, "flux", units("flux"), **hires).images[0]
    first = paint(engine, models, "flux", units("flux", hr_option="Low res only"), **hires).images[0]
    assert both.size == first.size == (32, 32)
    assert np.abs(pixels(both) - pixels(first)).max() > 2  # the hires pass sees the adapter only with "Both"
