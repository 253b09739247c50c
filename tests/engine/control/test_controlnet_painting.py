"""ControlNet units painting through Engine.generate, against diffusers' own ControlNet pipelines.

The references are diffusers' ``StableDiffusionControlNet*Pipeline`` built in the test from separately loaded
components and ControlNets, given the same prompt, CPU generators and scheduler; the control modes' references add
sd-webui-controlnet's formulas (``weight × 0.825^(12−i)``, the negative half without control) as a hook written here.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from helpers.paint_modes import box_mask, generators, init_picture, outline_map, tiny_request
from helpers.pixels import assert_pixels_close, pixels
from helpers.tiny_controlnet import save_folder, save_single_file, tiny_controlnet
from PIL import Image, ImageDraw

from jupyter_sd import library
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
    """Two tiny ControlNets: one a diffusers folder, one a single file in the original layout; and the raw parts."""
    from diffusers import StableDiffusionPipeline

    root = tmp_path_factory.mktemp("controlnets")
    raw = StableDiffusionPipeline.from_pretrained(tiny_model_dir, safety_checker=None)
    raw.set_progress_bar_config(disable=True)
    from diffusers import ControlNetModel

    first, second = tiny_controlnet(raw.unet, seed=1), tiny_controlnet(raw.unet, seed=2)
    folder = save_folder(first, root / "cn_folder")
    return {
        "raw": raw,
        "folder": folder,
        "file": save_single_file(second, root / "cn_file.safetensors"),
        "first": ControlNetModel.from_pretrained(folder),  # the references' own copies, loaded as users load them
        "second": ControlNetModel.from_pretrained(save_folder(second, root / "cn_second")),
        "config": dict(raw.scheduler.config),
    }


def edges(size: int = 16) -> Image.Image:
    """A ready control map (module none): a white square outline and a diagonal on black, one pixel wide."""
    return outline_map(size, width=1)


def reference(nets, kind, controlnet, sampler="DPM++ 2M", **call):
    """diffusers' own ControlNet pipeline of `kind` over the raw components, painting 'a red circle' with seed 5."""
    from diffusers import (
        StableDiffusionControlNetImg2ImgPipeline,
        StableDiffusionControlNetInpaintPipeline,
        StableDiffusionControlNetPipeline,
    )

    cls = {
        "txt2img": StableDiffusionControlNetPipeline,
        "img2img": StableDiffusionControlNetImg2ImgPipeline,
        "inpaint": StableDiffusionControlNetInpaintPipeline,
    }[kind]
    pipe = cls(**nets["raw"].components, controlnet=controlnet)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = make_scheduler(sampler, "Automatic", nets["config"])
    base = {"num_inference_steps": 6, "guidance_scale": 7.0, "generator": generators([5])}
    base["controlnet_conditioning_scale"] = 1.0  # diffusers' img2img/inpaint default is 0.8; a unit's weight is 1
    return pipe(**embeddings(nets["raw"]), **{**base, **call}).images[0]


def embeddings(pipe):
    """The prompt's embeddings as the engine computes them (A1111's chunks; equal to diffusers' within float noise,
    which a tiny random ControlNet can amplify past 1/255), handed to both sides."""
    return build_conditioning(pipe, "a red circle", "", 6).pipeline_kwargs()


def unit(model, **values):
    return {"module": "none", "model": str(model), **values}


def paint(engine, tiny_model_dir, units, images, **options):
    request = tiny_request(tiny_model_dir, controlnet=read_units(units), **options)
    pictures = Pictures(init=options.get("_init"), control=tuple(images))
    return engine.generate(request, pictures=pictures)


def test_one_unit_equals_diffusers_controlnet_pipeline(engine, nets, tiny_model_dir):
    expected = reference(nets, "txt2img", nets["first"], image=edges(), controlnet_conditioning_scale=0.8)
    call = {"num_inference_steps": 6, "guidance_scale": 7.0, "generator": generators([5])}
    plain = nets["raw"](**embeddings(nets["raw"]), **call).images[0]
    units = [unit(nets["folder"], weight=0.8)]
    result = paint(engine, tiny_model_dir, units, [edges()], sampler="DPM++ 2M", cache="auto")
    assert_pixels_close(result.images[0], expected)
    assert result.request.cache == "off"  # auto's DeepCache would skip the blocks the residuals feed
    assert np.abs(pixels(expected) - pixels(plain)).max() > 20  # the unit changes the picture: the test can fail


def test_two_units_and_a_guidance_window_equal_multicontrolnet(engine, nets, tiny_model_dir):
    from diffusers.models.controlnets import MultiControlNetModel

    second_map = edges().transpose(Image.FLIP_LEFT_RIGHT)
    expected = reference(
        nets,
        "txt2img",
        MultiControlNetModel([nets["first"], nets["second"]]),
        image=[edges(), second_map],
        controlnet_conditioning_scale=[0.7, 1.2],
        control_guidance_start=[0.0, 0.2],
        control_guidance_end=[0.5, 1.0],
    )
    units = [
        unit(nets["folder"], weight=0.7, guidance_end=0.5),
        unit(nets["file"], weight=1.2, guidance_start=0.2),  # the single file, converted offline
    ]
    result = paint(engine, tiny_model_dir, units, [edges(), second_map], sampler="DPM++ 2M")
    assert_pixels_close(result.images[0], expected)


def test_img2img_and_inpaint_with_a_unit_equal_diffusers(engine, nets, tiny_model_dir):
    init, mask = init_picture(), box_mask(16, (4, 4, 12, 12))
    # A1111's strength 0.8 at 6 steps: t_enc = 4, 5 steps from level 1 = diffusers' strength 0.85
    expected = reference(nets, "img2img", nets["first"], image=init, control_image=edges(), strength=0.85)
    request = tiny_request(tiny_model_dir, init="x", strength=0.8, controlnet=read_units([unit(nets["folder"])]))
    result = engine.generate(request, pictures=Pictures(init, control=(edges(),)))
    assert_pixels_close(result.images[0], expected)

    painted = reference(
        nets,
        "inpaint",
        nets["first"],
        image=init,
        mask_image=mask,
        control_image=edges(),
        strength=0.85,
        height=16,
        width=16,
    )
    expected = Image.composite(painted, init, mask)
    request = tiny_request(
        tiny_model_dir, init="x", mask="m", strength=0.8, mask_blur=0, controlnet=read_units([unit(nets["folder"])])
    )
    result = engine.generate(request, pictures=Pictures(init, mask, control=(edges(),)))
    assert_pixels_close(result.images[0], expected)


def soft_hook(weight, cond_only):
    """sd-webui-controlnet's formulas as a forward hook: residual i × weight × 0.825^(12−i); cond half only."""

    def hook(module, args, output):
        down, mid = output
        residuals = [r * (weight * 0.825 ** (12 - i)) for i, r in enumerate([*down, mid])]
        if cond_only:
            residuals = [torch.cat([torch.zeros_like(r[:1]), r[1:]]) for r in residuals]
        return tuple(residuals[:-1]), residuals[-1]

    return hook


@pytest.mark.parametrize("mode", ["My prompt is more important", "ControlNet is more important"])
def test_control_modes_equal_the_extensions_formulas(engine, nets, tiny_model_dir, mode):
    from diffusers import ControlNetModel

    controlnet = ControlNetModel.from_pretrained(nets["folder"])
    handle = controlnet.register_forward_hook(soft_hook(0.9, mode == "ControlNet is more important"))
    try:
        expected = reference(nets, "txt2img", controlnet, image=edges(), controlnet_conditioning_scale=1.0)
    finally:
        handle.remove()
    balanced = reference(nets, "txt2img", controlnet, image=edges(), controlnet_conditioning_scale=0.9)
    result = paint(engine, tiny_model_dir, [unit(nets["folder"], weight=0.9, control_mode=mode)], [edges()])
    assert_pixels_close(result.images[0], expected)
    assert np.abs(pixels(expected) - pixels(balanced)).max() > 2  # the mode changes the picture


def test_models_load_once_by_name_from_the_folder(engine, nets, tiny_model_dir, tmp_path, offline):
    """A file in ControlNet/ is found by its name; painting again (another unit order) loads nothing."""
    import shutil

    folder = tmp_path / "models" / "ControlNet"
    folder.mkdir(parents=True)
    shutil.copy(nets["file"], folder / "control_tiny.safetensors")
    library.set_models_dir(tmp_path / "models")
    try:
        first = paint(engine, tiny_model_dir, [unit("control_tiny")], [edges()])
        from jupyter_sd.engine.control import loading

        def no_load(*_args, **_kwargs):
            raise AssertionError("loaded again")

        original = loading.from_single_file
        loading.from_single_file = no_load
        try:
            again = paint(engine, tiny_model_dir, [unit("control_tiny")], [edges()])
        finally:
            loading.from_single_file = original
    finally:
        library.set_models_dir(None)
    assert np.array_equal(pixels(first.images[0]), pixels(again.images[0]))
    with open(folder / "control_tiny.safetensors", "rb") as file:  # A1111's old hash: 64 KiB at 1 MiB
        file.seek(0x100000)
        short = hashlib.sha256(file.read(0x10000)).hexdigest()[:8]
    written = (
        f'ControlNet 0: "Module: none, Model: control_tiny [{short}], Weight: 1, Resize Mode: Crop and Resize, '
        'Guidance Start: 0, Guidance End: 1, Pixel Perfect: False, Control Mode: Balanced"'
    )
    assert written in first.infotext(0)


def test_refusals_are_one_line(engine, nets, tiny_model_dir, tmp_path):
    from diffusers import ControlNetModel

    wide = ControlNetModel.from_config({**nets["first"].config, "cross_attention_dim": 64})
    save_single_file(wide, tmp_path / "wide.safetensors")
    save_folder(wide, tmp_path / "wide")
    cases = [
        ([unit(tmp_path / "wide.safetensors")], [edges()], "is a width 64 ControlNet"),
        ([unit(tmp_path / "wide")], [edges()], "is a width 64 ControlNet"),
        ([unit("no_such_controlnet")], [edges()], "controlnet: no 'no_such_controlnet'"),
        ([unit(nets["folder"])], [None], "controlnet: unit 0 has no image"),
        ([unit(nets["folder"])] * 4, [edges()] * 4, "controlnet: 4 units, at most 3"),
    ]
    for units, images, text in cases:
        with pytest.raises(ValueError, match=text) as error:
            paint(engine, tiny_model_dir, units, images)
        assert "\n" not in str(error.value) and len(str(error.value)) < 200
    with pytest.raises(ValueError, match="cache: deepcache skips the deep UNet blocks") as error:
        paint(engine, tiny_model_dir, [unit(nets["folder"])], [edges()], cache="deepcache")
        assert "\n" not in str(error.value) and len(str(error.value)) < 200


def test_only_masked_inpaint_crops_the_units_picture_as_the_init(engine, nets, tiny_model_dir):
    """sd-webui-controlnet cuts the unit's picture to the init's crop region: here (4, 4, 20, 20) of 32×32 (the
    mask's box (8, 8, 16, 16) grown by the padding of 4), painted at 16×16 — so no resize on either side."""
    init, mask = init_picture(32), box_mask(32, (8, 8, 16, 16))
    control = Image.new("RGB", (32, 32))
    ImageDraw.Draw(control).line([0, 31, 31, 0], fill=(255, 255, 255), width=3)
    ImageDraw.Draw(control).rectangle([6, 10, 18, 14], outline=(255, 255, 255))
    region = (4, 4, 20, 20)

    def expected_with(control_image):
        painted = reference(
            nets,
            "inpaint",
            nets["first"],
            image=init.crop(region),
            mask_image=mask.crop(region),
            control_image=control_image,
            strength=0.85,
            height=16,
            width=16,
        )
        placed = init.copy()
        placed.paste(painted, region[:2])
        return Image.composite(placed, init, mask)  # A1111's paste back, mask blur 0

    options = {"init": "x", "mask": "m", "strength": 0.8, "mask_blur": 0, "inpaint_area": "masked", "padding": 4}
    units = read_units([unit(nets["folder"])])
    request = tiny_request(tiny_model_dir, width=16, height=16, controlnet=units, **options)
    result = engine.generate(request, pictures=Pictures(init, mask, control=(control,)))
    expected = expected_with(control.crop(region))
    assert_pixels_close(result.images[0], expected)
    uncropped = expected_with(control.resize((16, 16), Image.LANCZOS))  # the whole map squeezed: another picture
    assert np.abs(pixels(uncropped) - pixels(expected)).max() > 3
    assert result.detected_maps[0].size == (16, 16)


def test_the_unit_limit_follows_config_controlnet_units(engine, nets, tiny_model_dir):
    """``%paint config controlnet_units=4`` (set_max_units): four units paint as diffusers' MultiControlNetModel of
    four; five are refused naming the limit."""
    from diffusers.models.controlnets import MultiControlNetModel

    from jupyter_sd.engine.control.apply import set_max_units

    maps = [edges(), edges().transpose(Image.FLIP_LEFT_RIGHT), edges().transpose(Image.FLIP_TOP_BOTTOM), edges()]
    weights = [0.5, 0.6, 0.7, 0.4]
    expected = reference(
        nets,
        "txt2img",
        MultiControlNetModel([nets["first"], nets["second"], nets["first"], nets["second"]]),
        image=maps,
        controlnet_conditioning_scale=weights,
    )
    units = [unit(nets["folder" if i % 2 == 0 else "file"], weight=w) for i, w in enumerate(weights)]
    with pytest.raises(ValueError, match=r"controlnet: 4 units, at most 3 \(%paint config controlnet_units=N"):
        paint(engine, tiny_model_dir, units, maps)
    try:
        set_max_units(4)
        assert_pixels_close(paint(engine, tiny_model_dir, units, maps, sampler="DPM++ 2M").images[0], expected)
        with pytest.raises(ValueError, match="controlnet: 5 units, at most 4"):
            paint(engine, tiny_model_dir, [*units, units[0]], [*maps, maps[0]])
    finally:
        set_max_units(3)
