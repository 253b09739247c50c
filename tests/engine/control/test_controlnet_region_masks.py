"""ControlNet units' effective region masks (sd-webui-controlnet's ``effective_region_mask``) on SD 1.5 and SDXL.

The references are diffusers' own ControlNet pipelines built in the test, with a forward hook written here on the
masked unit's ControlNet doing what the extension's ``apply_effective_region_mask`` does: every residual (after the
weight, and the control mode's scales) times the mask's red channel / 255 resized bilinearly to the residual's grid.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.paint_modes import box_mask, generators, init_picture, outline_map, tiny_request
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

    root = tmp_path_factory.mktemp("cn-regions")
    raw = StableDiffusionPipeline.from_pretrained(tiny_model_dir, safety_checker=None)
    raw.set_progress_bar_config(disable=True)
    first = save_folder(tiny_controlnet(raw.unet, seed=1), root / "first")
    second = save_folder(tiny_controlnet(raw.unet, seed=2), root / "second")
    return {
        "raw": raw,
        "first": first,
        "second": second,
        "net1": ControlNetModel.from_pretrained(first),  # the references' own copies
        "net2": ControlNetModel.from_pretrained(second),
        "config": dict(raw.scheduler.config),
    }


def edges(size: int = 16) -> Image.Image:
    """A ready control map (module none): a white square outline and a diagonal on black, one pixel wide."""
    return outline_map(size, width=1)


def left_half(width: int = 16, height: int = 16) -> Image.Image:
    mask = Image.new("RGB", (width, height))
    mask.paste((255, 255, 255), (0, 0, width // 2, height))
    return mask


def soft_mask() -> Image.Image:
    """Another size and shape (stretched), greys kept, colour: the red channel (a ramp) is what counts."""
    ramp = np.tile(np.linspace(0, 255, 12, dtype=np.float32), (6, 1))
    return Image.fromarray(np.stack([ramp, 255 - ramp, np.full_like(ramp, 40)], -1).astype(np.uint8))


def region_hook(mask, weight=None, cond_only=False):
    """The extension's formulas on a ControlNet's outputs: soft scales (`weight`), cond half only, then the mask."""
    grid = torch.from_numpy(np.asarray(mask.convert("RGB"), dtype=np.float32)[:, :, 0] / 255.0)[None, None]

    def hook(module, args, output):
        down, mid = output
        residuals = [*down, mid]
        if weight is not None:
            residuals = [r * (weight * 0.825 ** (12 - i)) for i, r in enumerate(residuals)]
        if cond_only:
            residuals = [torch.cat([torch.zeros_like(r[:1]), r[1:]]) for r in residuals]
        residuals = [r * torch.nn.functional.interpolate(grid, size=r.shape[-2:], mode="bilinear") for r in residuals]
        return tuple(residuals[:-1]), residuals[-1]

    return hook


def reference(nets, kind, controlnet, hooked, hook, **call):
    """diffusers' ControlNet pipeline of `kind` (seed 5, DPM++ 2M, 6 steps), `hook` on the net `hooked`."""
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
    pipe.scheduler = make_scheduler("DPM++ 2M", "Automatic", nets["config"])
    base = {"num_inference_steps": 6, "guidance_scale": 7.0, "generator": generators([5])}
    base["controlnet_conditioning_scale"] = 1.0
    embeds = build_conditioning(nets["raw"], "a red circle", "", 6).pipeline_kwargs()
    handle = hooked.register_forward_hook(hook) if hook else None
    try:
        return pipe(**embeds, **{**base, **call}).images[0]
    finally:
        if handle:
            handle.remove()


def unit(model, **values):
    return {"module": "none", "model": str(model), **values}


def paint(engine, tiny_model_dir, units, images, regions=(), pictures=None, **options):
    request = tiny_request(tiny_model_dir, sampler="DPM++ 2M", controlnet=read_units(units), **options)
    base = pictures or Pictures()
    base.control, base.control_masks = tuple(images), tuple(regions)
    return engine.generate(request, pictures=base)


def test_a_masked_unit_beside_an_unmasked_one_equals_diffusers_with_the_mask_hook(engine, nets, tiny_model_dir):
    from diffusers.models.controlnets import MultiControlNetModel

    flipped = edges().transpose(Image.FLIP_LEFT_RIGHT)
    mask = soft_mask()
    expected = reference(
        nets,
        "txt2img",
        MultiControlNetModel([nets["net1"], nets["net2"]]),
        nets["net1"],
        region_hook(mask),
        image=[edges(), flipped],
        controlnet_conditioning_scale=[0.8, 0.6],
    )
    units = [unit(nets["first"], weight=0.8), unit(nets["second"], weight=0.6)]
    result = paint(engine, tiny_model_dir, units, [edges(), flipped], [mask, None])
    assert_pixels_close(result.images[0], expected)
    unmasked = paint(engine, tiny_model_dir, units, [edges(), flipped])
    assert np.abs(pixels(unmasked.images[0]) - pixels(expected)).max() > 3  # the mask changes the picture
    hard = paint(engine, tiny_model_dir, units, [edges(), flipped], [left_half(), None])
    assert np.abs(pixels(hard.images[0]) - pixels(expected)).max() > 3  # greys are kept: another picture
    assert "Mask" not in result.params["ControlNet 0"]  # the extension's infotext does not write it


@pytest.mark.parametrize("mode", ["My prompt is more important", "ControlNet is more important"])
def test_soft_injection_modes_with_a_mask_equal_the_extensions_formulas(engine, nets, tiny_model_dir, mode):
    cond_only = mode == "ControlNet is more important"
    hook = region_hook(left_half(), weight=0.9, cond_only=cond_only)
    expected = reference(nets, "txt2img", nets["net1"], nets["net1"], hook, image=edges())
    units = [unit(nets["first"], weight=0.9, control_mode=mode)]
    result = paint(engine, tiny_model_dir, units, [edges()], [left_half()])
    assert_pixels_close(result.images[0], expected)
    white = paint(engine, tiny_model_dir, units, [edges()], [Image.new("L", (16, 16), 255)])
    assert np.array_equal(pixels(white.images[0]), pixels(paint(engine, tiny_model_dir, units, [edges()]).images[0]))
    assert np.abs(pixels(white.images[0]) - pixels(expected)).max() > 3


def test_an_all_white_mask_paints_as_the_unmasked_unit(engine, nets, tiny_model_dir):
    units = [unit(nets["first"], weight=0.8)]
    plain = paint(engine, tiny_model_dir, units, [edges()])
    white = paint(engine, tiny_model_dir, units, [edges()], [Image.new("RGB", (5, 9), (255, 255, 255))])
    assert np.array_equal(pixels(white.images[0]), pixels(plain.images[0]))
    black = paint(engine, tiny_model_dir, units, [edges()], [Image.new("L", (16, 16))])
    nothing = paint(engine, tiny_model_dir, [unit(nets["first"], weight=0.0)], [edges()])
    assert np.array_equal(pixels(black.images[0]), pixels(nothing.images[0]))  # black: no control anywhere


def test_img2img_and_inpaint_with_a_masked_unit_equal_diffusers(engine, nets, tiny_model_dir):
    init, mask = init_picture(), box_mask(16, (4, 4, 12, 12))
    hook = region_hook(left_half())
    expected = reference(
        nets, "img2img", nets["net1"], nets["net1"], hook, image=init, control_image=edges(), strength=0.85
    )
    units = [unit(nets["first"])]
    result = paint(engine, tiny_model_dir, units, [edges()], [left_half()], Pictures(init), init="x", strength=0.8)
    assert_pixels_close(result.images[0], expected)

    painted = reference(
        nets,
        "inpaint",
        nets["net1"],
        nets["net1"],
        hook,
        image=init,
        mask_image=mask,
        control_image=edges(),
        strength=0.85,
        height=16,
        width=16,
    )
    options = {"init": "x", "mask": "m", "strength": 0.8, "mask_blur": 0}
    result = paint(engine, tiny_model_dir, units, [edges()], [left_half()], Pictures(init, mask), **options)
    assert_pixels_close(result.images[0], Image.composite(painted, init, mask))


def test_the_hires_pass_masks_its_residuals_at_the_hires_size(engine, nets, tiny_model_dir):
    """Hr Option Both: diffusers' ControlNet txt2img to latents, a bilinear ×2, its ControlNet img2img at 32×32,
    the mask hook on the net in both passes (the mask resized to each pass's residual grids)."""
    from diffusers import StableDiffusionControlNetImg2ImgPipeline, StableDiffusionControlNetPipeline

    parts, net = nets["raw"].components, nets["net1"]
    embeds = build_conditioning(nets["raw"], "a red circle", "", 6).pipeline_kwargs()
    small = Image.new("RGB", (16, 16))  # blocks: its map at 16×16 is this, at 32×32 the picture (2×2 blocks)
    ImageDraw.Draw(small).rectangle([2, 2, 9, 9], fill=(255, 255, 255))
    ImageDraw.Draw(small).rectangle([11, 4, 13, 14], fill=(255, 255, 255))
    big = small.resize((32, 32), Image.NEAREST)
    handle = net.register_forward_hook(region_hook(left_half(8, 8)))
    try:
        first = StableDiffusionControlNetPipeline(**parts, controlnet=net)
        first.scheduler = make_scheduler("DPM++ 2M", "Automatic", nets["config"])
        call = {"num_inference_steps": 6, "guidance_scale": 7.0, "generator": generators([5]), "width": 16}
        latents = first(**embeds, **call, height=16, image=small, output_type="latent").images
        enlarged = torch.nn.functional.interpolate(latents, size=(16, 16), mode="bilinear", antialias=False)
        second = StableDiffusionControlNetImg2ImgPipeline(**parts, controlnet=net)
        second.set_progress_bar_config(disable=True)
        second.scheduler = make_scheduler("DPM++ 2M", "Automatic", nets["config"])
        call = {"num_inference_steps": 8, "strength": 0.5, "guidance_scale": 7.0, "generator": generators([5])}
        call.update(control_image=big, controlnet_conditioning_scale=1.0, height=32, width=32)
        expected = second(**embeds, image=enlarged, **call).images[0]
    finally:
        handle.remove()
    hires = {"hires": 2, "hires_steps": 4, "hires_denoise": 0.5, "width": 16, "height": 16}
    result = paint(engine, tiny_model_dir, [unit(nets["first"])], [big], [left_half(8, 8)], **hires)
    assert result.images[0].size == (32, 32)
    assert_pixels_close(result.images[0], expected)


def test_sdxl_and_union_masked_units_equal_diffusers_with_the_mask_hook(tmp_path):
    from diffusers import StableDiffusionXLControlNetPipeline, StableDiffusionXLPipeline
    from helpers.tiny_sdxl import make_tiny_sdxl

    model = make_tiny_sdxl(tmp_path / "sdxl")
    raw = StableDiffusionXLPipeline.from_pretrained(model)
    controlnet = tiny_controlnet(raw.unet, seed=4)
    folder = save_folder(controlnet, tmp_path / "cn_xl")
    mask = soft_mask()
    pipe = StableDiffusionXLControlNetPipeline(**raw.components, controlnet=controlnet)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = make_scheduler("DPM++ 2M", "Automatic", dict(raw.scheduler.config))
    call = {"num_inference_steps": 4, "guidance_scale": 7.0, "width": 16, "height": 16, "generator": generators([1])}
    handle = controlnet.register_forward_hook(region_hook(mask, weight=0.7))  # My prompt is more important
    try:
        embeds = build_conditioning(raw, "a red circle", "", 4).pipeline_kwargs()
        expected = pipe(**embeds, **call, image=edges(), controlnet_conditioning_scale=1.0).images[0]
    finally:
        handle.remove()
    spec = unit(folder, weight=0.7, control_mode="My prompt is more important")
    request = tiny_request(model, controlnet=read_units([spec]), steps=4, seed=1, width=16, height=16)
    engine = Engine()
    request = request.replace(sampler="DPM++ 2M")
    result = engine.generate(request, pictures=Pictures(control=(edges(),), control_masks=(mask,)))
    assert_pixels_close(result.images[0], expected)
    whole = engine.generate(request, pictures=Pictures(control=(edges(),)))
    assert np.abs(pixels(whole.images[0]) - pixels(expected)).max() > 3  # the mask changes the picture

    from diffusers import ControlNetUnionModel, StableDiffusionXLControlNetUnionPipeline
    from helpers.tiny_controlnet import tiny_union

    union = save_folder(tiny_union(raw.unet, seed=3), tmp_path / "union")  # a union (ProMax) model: the same hook
    net = ControlNetUnionModel.from_pretrained(union)
    pipe = StableDiffusionXLControlNetUnionPipeline(**raw.components, controlnet=net)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = make_scheduler("DPM++ 2M", "Automatic", dict(raw.scheduler.config))
    handle = net.register_forward_hook(region_hook(left_half()))
    try:
        call.update(generator=generators([1]), control_image=[edges()], control_mode=[3])
        expected = pipe(**embeds, **call, controlnet_conditioning_scale=0.8).images[0]
    finally:
        handle.remove()
    call.update(generator=generators([1]))
    unmasked = pipe(**embeds, **call, controlnet_conditioning_scale=0.8).images[0]
    assert np.abs(pixels(unmasked) - pixels(expected)).max() > 3  # the mask changes the union's picture
    spec = unit(union, weight=0.8, union_control_type="Hard Edge")
    request = request.replace(controlnet=read_units([spec]))
    result = engine.generate(request, pictures=Pictures(control=(edges(),), control_masks=(left_half(),)))
    assert_pixels_close(result.images[0], expected)


def test_a_mask_on_a_global_pooling_controlnet_is_refused_in_one_line(engine, nets, tiny_model_dir, tmp_path):
    from diffusers import ControlNetModel

    pooled = ControlNetModel.from_config({**nets["net1"].config, "global_pool_conditions": True})
    folder = save_folder(pooled, tmp_path / "shuffle")
    with pytest.raises(ValueError, match="unit 0's effective region mask cannot limit shuffle") as error:
        paint(engine, tiny_model_dir, [unit(folder)], [edges()], [left_half()])
    assert "\n" not in str(error.value) and len(str(error.value)) < 200


def test_only_masked_inpaint_cuts_a_units_region_mask_as_the_init():
    from jupyter_sd.engine.control.apply import Control
    from jupyter_sd.engine.control.masked_area import cropped
    from jupyter_sd.recipe.control_units import ControlUnit

    red = Image.new("RGB", (8, 8), (0, 255, 255))
    red.paste((255, 0, 0), (0, 0, 4, 8))  # the red channel: the left half white
    control = Control([ControlUnit()], [None], [edges(32)], [None], regions=[red])
    for region, white in (((0, 0, 16, 16), True), ((16, 16, 32, 32), False)):
        cut = cropped(control, (32, 32), region, (16, 16)).regions[0]
        assert cut.size == (16, 16) and cut.mode == "L" and ((np.asarray(cut) > 127) == white).all()
    unmasked = Control([ControlUnit()], [None], [edges(32)], [None])
    assert cropped(unmasked, (32, 32), (0, 0, 16, 16), (16, 16)).regions is None
