"""IP-Adapter units painting through Engine.generate, against diffusers' own ``load_ip_adapter`` of the same files.

The references are diffusers' pipelines built in the test from separately loaded components, the adapter loaded by
``load_ip_adapter(folder, weight_name=…, image_encoder_folder="image_encoder")`` (h94's layout), given the same
prompt embeddings, CPU generators, scheduler, picture and scale; the guidance window's reference sets the scale from
a step callback by sd-webui-controlnet's formula written here.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers.paint_modes import generators, init_picture, tiny_request
from helpers.pixels import assert_pixels_close, pixels
from helpers.tiny_controlnet import save_folder, tiny_controlnet
from helpers.tiny_ip_adapter import (
    reference_picture,
    save_adapter,
    save_encoder_file,
    tiny_adapter_state,
    tiny_image_encoder,
)

from jupyter_sd import library
from jupyter_sd.engine import Engine
from jupyter_sd.engine.conditioning import build_conditioning
from jupyter_sd.engine.pictures import Pictures
from jupyter_sd.engine.schedulers import make_scheduler
from jupyter_sd.recipe.control_units import infotext_units, read_units


@pytest.fixture(scope="module")
def engine():
    return Engine()


@pytest.fixture(scope="module")
def models(tiny_model_dir, tmp_path_factory):
    """A models folder: two adapters and h94's ``image_encoder/`` in ``ipadapter/``, a third adapter in
    ``ControlNet/`` with its encoder as ComfyUI's ``clip_vision/clip_h.safetensors``, a ControlNet, one of width 64."""
    from diffusers import StableDiffusionPipeline

    root = tmp_path_factory.mktemp("ipa") / "models"
    raw = StableDiffusionPipeline.from_pretrained(tiny_model_dir, safety_checker=None)
    raw.set_progress_bar_config(disable=True)
    encoder = tiny_image_encoder()
    encoder.save_pretrained(str(root / "ipadapter" / "image_encoder"))
    first = tiny_adapter_state(raw.unet, 24, seed=1)
    save_adapter(first, root / "ipadapter" / "ip-adapter_tiny.safetensors")
    save_adapter(tiny_adapter_state(raw.unet, 24, seed=2), root / "ipadapter" / "ip-adapter_second.safetensors")
    save_adapter(first, root / "ControlNet" / "ip-adapter_single.safetensors")
    save_encoder_file(encoder, root / "clip_vision" / "clip_h.safetensors")
    save_folder(tiny_controlnet(raw.unet, seed=1), root / "ControlNet" / "cn_tiny")
    wide = {k: v.repeat(1, 2) if k.endswith("_ip.weight") else v for k, v in first.items()}
    save_adapter(wide, root / "ipadapter" / "ip-adapter_wide.safetensors")
    before = library.models_dir()
    library.set_models_dir(root)
    yield {"root": root, "raw": raw, "config": dict(raw.scheduler.config)}
    library.set_models_dir(before)


def embeddings(pipe):
    return build_conditioning(pipe, "a red circle", "", 6).pipeline_kwargs()


def reference(models, pipe_class=None, weight_names=("ip-adapter_tiny.safetensors",), scales=(1.0,), **call):
    """diffusers' own pipeline with ``load_ip_adapter`` of the files in ``ipadapter/``, painting with seed 5."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(**models["raw"].components)
    pipe = pipe if pipe_class is None else pipe_class(**pipe.components, **call.pop("extra", {}))
    pipe.set_progress_bar_config(disable=True)
    count = len(weight_names)
    folder = str(models["root"] / "ipadapter")
    pipe.load_ip_adapter([folder] * count, subfolder=[""] * count, weight_name=list(weight_names))
    pipe.set_ip_adapter_scale(list(scales))
    pipe.scheduler = make_scheduler("DPM++ 2M", "Automatic", models["config"])
    base = {"num_inference_steps": 6, "guidance_scale": 7.0, "generator": generators([5])}
    try:
        return pipe(**embeddings(models["raw"]), **{**base, **call}).images[0]
    finally:
        pipe.unload_ip_adapter()


def unit(model="ip-adapter_tiny", module="ip-adapter_clip_sd15", **values):
    return {"module": module, "model": model, **values}


def paint(engine, tiny_model_dir, units, images, init_image=None, **options):
    request = tiny_request(tiny_model_dir, sampler="DPM++ 2M", controlnet=read_units(units), **options)
    return engine.generate(request, pictures=Pictures(init=init_image, control=tuple(images)))


def test_a_unit_equals_diffusers_load_ip_adapter_and_writes_its_infotext(engine, models, tiny_model_dir):
    picture = reference_picture()
    expected = reference(models, ip_adapter_image=picture, scales=(0.8,))
    result = paint(engine, tiny_model_dir, [unit(weight=0.8)], [picture])
    assert_pixels_close(result.images[0], expected)
    plain = paint(engine, tiny_model_dir, [], [])
    assert np.abs(pixels(expected) - pixels(plain.images[0])).max() > 20  # the adapter changes the picture
    short = library.short_hash("controlnet", models["root"] / "ipadapter" / "ip-adapter_tiny.safetensors")
    assert result.params["ControlNet 0"] == (
        f"Module: ip-adapter_clip_sd15, Model: ip-adapter_tiny [{short}], Weight: 0.8, Resize Mode: Crop and Resize, "
        "Guidance Start: 0, Guidance End: 1, Pixel Perfect: False, Control Mode: Balanced"
    )
    pasted = infotext_units({"ControlNet 0": result.params["ControlNet 0"]})[0]
    assert (pasted.module, pasted.model, pasted.model_hash, pasted.weight) == (
        "ip-adapter_clip_sd15",
        "ip-adapter_tiny",
        short,
        0.8,
    )
    again = paint(engine, tiny_model_dir, [unit(model=f"renamed [{short}]", weight=0.8)], [picture])  # by its hash
    assert np.array_equal(pixels(again.images[0]), pixels(result.images[0]))


def test_weight_zero_and_plain_pictures_after_equal_a_fresh_plain_paint(engine, models, tiny_model_dir):
    fresh = paint(Engine(), tiny_model_dir, [], []).images[0]
    zero = paint(engine, tiny_model_dir, [unit(weight=0)], [reference_picture()]).images[0]
    after = paint(engine, tiny_model_dir, [], []).images[0]
    assert np.array_equal(pixels(zero), pixels(fresh))
    assert np.array_equal(pixels(after), pixels(fresh))  # the UNet's own attention is back
    state = engine._pipe.__dict__["_jupyter_sd_ip_adapters"]
    assert len(state.installed) == 1 and state.current is None  # loaded once, kept, not installed now
    first = paint(engine, tiny_model_dir, [unit(weight=0.8)], [reference_picture()]).images[0]

    def no_load(*args, **kwargs):
        raise AssertionError("loaded again")

    engine._pipe.load_ip_adapter = no_load
    try:
        again = paint(engine, tiny_model_dir, [], [])  # out …
        again = paint(engine, tiny_model_dir, [unit(weight=0.8)], [reference_picture()]).images[0]  # … and back in
    finally:
        del engine._pipe.load_ip_adapter
    assert np.array_equal(pixels(again), pixels(first))


def test_guidance_window_follows_sd_webui_controlnets_formula(engine, models, tiny_model_dir):
    picture, start, end, weight = reference_picture(seed=3), 0.3, 0.7, 1.2
    active = [not (i / 6 < start or i / 6 > end) for i in range(7)]
    assert active[:6] == [False, False, True, True, True, False]

    def window(pipe, i, timestep, tensors):
        pipe.set_ip_adapter_scale(weight if active[i + 1] else 0.0)
        return tensors

    expected = reference(models, ip_adapter_image=picture, scales=(0.0,), callback_on_step_end=window)
    units = [unit(weight=weight, guidance_start=start, guidance_end=end)]
    result = paint(engine, tiny_model_dir, units, [picture])
    assert_pixels_close(result.images[0], expected)
    whole = reference(models, ip_adapter_image=picture, scales=(weight,))
    assert np.abs(pixels(whole) - pixels(expected)).max() > 5  # the window changes the picture


def test_two_adapters_beside_a_controlnet_unit_equal_diffusers(engine, models, tiny_model_dir):
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline
    from PIL import Image

    first, second, edges = reference_picture(seed=1), reference_picture(seed=2), Image.new("RGB", (16, 16))
    edges.paste((255, 255, 255), (4, 4, 12, 6))
    net = ControlNetModel.from_pretrained(models["root"] / "ControlNet" / "cn_tiny")
    expected = reference(
        models,
        StableDiffusionControlNetPipeline,
        ("ip-adapter_tiny.safetensors", "ip-adapter_second.safetensors"),
        (0.7, 0.5),
        extra={"controlnet": net},
        ip_adapter_image=[first, second],
        image=edges,
        controlnet_conditioning_scale=0.9,
    )
    units = [
        unit(weight=0.7),
        {"module": "none", "model": "cn_tiny", "weight": 0.9},
        unit("ip-adapter_second", weight=0.5),
    ]
    result = paint(engine, tiny_model_dir, units, [first, edges, second])
    assert_pixels_close(result.images[0], expected)
    assert [result.params[f"ControlNet {i}"].split(",")[0] for i in range(3)] == [
        "Module: ip-adapter_clip_sd15",
        "Module: none",
        "Module: ip-adapter_clip_sd15",
    ]


def test_img2img_unit_equals_diffusers_img2img(engine, models, tiny_model_dir):
    from diffusers import StableDiffusionImg2ImgPipeline

    picture, init = reference_picture(seed=4), init_picture()
    expected = reference(models, StableDiffusionImg2ImgPipeline, ip_adapter_image=picture, image=init, strength=0.85)
    result = paint(engine, tiny_model_dir, [unit()], [picture], init_image=init, init="x", strength=0.8)
    assert_pixels_close(result.images[0], expected)


def test_inpaint_unit_equals_diffusers_inpaint(engine, models, tiny_model_dir):
    from diffusers import StableDiffusionInpaintPipeline
    from helpers.paint_modes import box_mask
    from PIL import Image

    picture, init, mask = reference_picture(seed=5), init_picture(), box_mask(16, (4, 4, 12, 12))
    call = {"image": init, "mask_image": mask, "strength": 0.85, "height": 16, "width": 16}
    painted = reference(models, StableDiffusionInpaintPipeline, ip_adapter_image=picture, **call)
    expected = Image.composite(painted, init, mask)
    units = [unit()]
    options = {"init": "x", "mask": "m", "strength": 0.8, "mask_blur": 0}
    result = engine.generate(
        tiny_request(tiny_model_dir, sampler="DPM++ 2M", controlnet=read_units(units), **options),
        pictures=Pictures(init, mask, control=(picture,)),
    )
    assert_pixels_close(result.images[0], expected)


def test_hires_pass_takes_units_by_their_hr_option(engine, models, tiny_model_dir):
    picture = reference_picture(seed=7)
    hires = {"hires": 2, "hires_steps": 3, "hires_denoise": 0.6, "width": 16, "height": 16}
    both = paint(engine, tiny_model_dir, [unit()], [picture], **hires)
    low = paint(engine, tiny_model_dir, [unit(hr_option="Low res only")], [picture], **hires)
    none = paint(engine, tiny_model_dir, [], [], **hires)
    assert both.images[0].size == (32, 32) and both.params["ControlNet 0"].endswith("Hr Option: Both")
    differs = lambda a, b: np.abs(pixels(a.images[0]) - pixels(b.images[0])).max() > 5  # noqa: E731
    assert differs(both, low) and differs(low, none)  # the adapter acts in the hires pass, and in the first one


def test_clip_vision_file_and_auto_module_paint_the_same(engine, models, tiny_model_dir):
    picture = reference_picture()
    folder = paint(engine, tiny_model_dir, [unit()], [picture]).images[0]
    single = paint(engine, tiny_model_dir, [unit("ip-adapter_single", "ip-adapter-auto")], [picture]).images[0]
    assert_pixels_close(single, folder)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"model": "ip-adapter_wide"}, "ip-adapter_wide is an IP-Adapter for width 64; this model is width 32"),
        ({"model": "nothing-here"}, "no IP-Adapter 'nothing-here'"),
        ({"module": "ip-adapter_face_id_plus"}, "needs insightface"),
        ({"module": "ip-adapter_clip_l"}, "ip-adapter_clip_l feeds Flux's IP-Adapter; SD1.5/SDXL ones take"),
        (
            {"module": "ip-adapter_clip_sdxl", "model": "ip-adapter_single"},
            "no ViT-bigG image encoder for ip-adapter_single",
        ),
        ({"model": "ip-adapter_tiny", "other": "ip-adapter_single"}, "need different image encoders"),
    ],
)
def test_refusals_are_one_line(engine, models, tiny_model_dir, values, message):
    other = values.pop("other", None)
    units = [unit(**values)] + ([unit(other)] if other else [])
    with pytest.raises(ValueError, match="^controlnet: ") as error:
        paint(engine, tiny_model_dir, units, [reference_picture()] * len(units))
    assert message in str(error.value) and "\n" not in str(error.value) and len(str(error.value)) < 200


def test_a_family_without_ip_adapters_is_refused_in_one_line(tmp_path):
    from diffusers import ChromaPipeline
    from helpers.tiny_families import make_tiny_chroma

    from jupyter_sd.engine.control.ip_adapter import adapters_for
    from jupyter_sd.recipe.control_units import ControlUnit

    pipe = ChromaPipeline.from_pretrained(make_tiny_chroma(tmp_path / "chroma"))
    with pytest.raises(ValueError, match="IP-Adapter units paint on SD1.5, SDXL, Flux and SD3 models for now, not Chr"):
        adapters_for(pipe, [ControlUnit(module="ip-adapter_clip_sd15", model="x")], [reference_picture()], False)
