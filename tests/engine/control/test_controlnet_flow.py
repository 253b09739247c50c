"""ControlNet units on Flux and SD3 through Engine.generate, against diffusers' own ControlNet pipelines.

The references are diffusers' ``FluxControlNet*Pipeline`` / ``StableDiffusion3ControlNetPipeline`` built here over
separately loaded components and ControlNets (loaded as users load them), with the same prompt, CPU generators,
weight and window. The ControlNets live in a temporary models folder's ``ControlNet/`` and are named as users name
them: a diffusers folder, an InstantX-layout file, an XLabs-layout file.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from helpers.paint_modes import box_mask, generators, init_picture, outline_map
from helpers.pixels import assert_pixels_close, pixels
from helpers.progress_recorder import Recorder
from helpers.tiny_flow import make_tiny_flux, make_tiny_sd3
from helpers.tiny_flow_controlnet import (
    make_tiny_flux_8x,
    save_diffusers_file,
    save_xlabs_file,
    tiny_flux_controlnet,
    tiny_qwenimage_controlnet,
    tiny_sd3_controlnet,
    tiny_zimage_controlnet,
)
from PIL import Image, ImageDraw

from jupyter_sd import library
from jupyter_sd.engine import Engine
from jupyter_sd.engine.pictures import Pictures
from jupyter_sd.recipe.control_units import infotext_units, read_units
from jupyter_sd.recipe.paste import read_pasted
from jupyter_sd.recipe.request import PaintRequest

PROMPT = "a red circle"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Tiny Flux and SD3 folders and a models folder whose ControlNet/ holds their ControlNets, as users keep them."""
    root = tmp_path_factory.mktemp("flow-controlnets")
    folder = root / "models" / "ControlNet"
    folder.mkdir(parents=True)
    tiny_flux_controlnet(seed=1).save_pretrained(folder / "flux_cn_a")
    save_diffusers_file(tiny_flux_controlnet(seed=2), folder / "flux_cn_b.safetensors")
    save_xlabs_file(tiny_flux_controlnet(seed=3, hint=True), folder / "flux_xlabs.safetensors")
    tiny_flux_controlnet(seed=4, modes=7).save_pretrained(folder / "flux_union")
    tiny_sd3_controlnet(seed=5).save_pretrained(folder / "sd3_cn")
    library.set_models_dir(root / "models")
    flux, flux_8x, sd3 = (
        make_tiny_flux(root / "flux"),
        make_tiny_flux_8x(root / "flux_8x"),
        make_tiny_sd3(root / "sd3", layers=2),
    )
    yield {"flux": flux, "flux_8x": flux_8x, "sd3": sd3, "cn": folder}
    library.set_models_dir(None)


@pytest.fixture(scope="module")
def engine():
    return Engine()


def edges(size: int = 32) -> Image.Image:
    """A ready control map (module none): a white square outline and a diagonal on black."""
    return outline_map(size)


def raw(models, family, cls_name, controlnet):
    """diffusers' ControlNet pipeline `cls_name` over the family's components, loaded on their own."""
    import diffusers

    bases = {"sd3": "StableDiffusion3Pipeline", "qwen": "QwenImagePipeline", "zimage": "ZImagePipeline"}
    base = getattr(diffusers, bases.get(family, "FluxPipeline"))
    cls = getattr(diffusers, cls_name)
    takes = inspect.signature(cls.__init__).parameters
    components = {k: v for k, v in base.from_pretrained(models[family]).components.items() if k in takes}
    pipe = cls(**components, controlnet=controlnet)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def flux_net(models, name):
    from diffusers import FluxControlNetModel

    return FluxControlNetModel.from_pretrained(models["cn"] / name)


def request(models, family, units, **changes):
    base = dict(prompt=PROMPT, model=str(models[family]), steps=4, seed=5, width=32, height=32, rng="cpu",
                preview="none", save=False, controlnet=read_units(units))  # fmt: skip
    return PaintRequest(**{**base, **changes})


def unit(model, **values):
    return {"module": "none", "model": model, **values}


def test_flux_unit_equals_diffusers_flux_controlnet_pipeline(engine, models):
    pipe = raw(models, "flux", "FluxControlNetPipeline", flux_net(models, "flux_cn_a"))
    call = dict(num_inference_steps=4, width=32, height=32, guidance_scale=3.5, control_image=edges())
    expected = pipe(PROMPT, **call, controlnet_conditioning_scale=0.8, generator=generators([5])).images[0]
    plain = pipe(PROMPT, **call, controlnet_conditioning_scale=0.0, generator=generators([5])).images[0]
    result = engine.generate(
        request(models, "flux", [unit("flux_cn_a", weight=0.8)]), pictures=Pictures(control=(edges(),))
    )
    assert_pixels_close(result.images[0], expected)
    assert np.abs(pixels(expected) - pixels(plain)).max() > 5  # the unit changes the picture: the test can fail


def test_two_flux_units_a_window_and_the_infotext_round_trip(engine, models):
    """A folder and an InstantX-layout single file as ``FluxMultiControlNetModel``, the second unit's window 0-0.5."""
    from diffusers import FluxMultiControlNetModel

    second = flux_net(models, "flux_cn_a").__class__(**flux_net(models, "flux_cn_a").config)
    from safetensors.torch import load_file

    second.load_state_dict(load_file(models["cn"] / "flux_cn_b.safetensors"))
    maps = [edges(), edges().transpose(Image.FLIP_LEFT_RIGHT)]
    pipe = raw(
        models, "flux", "FluxControlNetPipeline", FluxMultiControlNetModel([flux_net(models, "flux_cn_a"), second])
    )
    expected = pipe(
        PROMPT, num_inference_steps=4, width=32, height=32, guidance_scale=3.5, control_image=maps,
        controlnet_conditioning_scale=[0.7, 1.2], control_guidance_start=[0.0, 0.0], control_guidance_end=[1.0, 0.5],
        generator=generators([5]),
    ).images[0]  # fmt: skip
    units = [unit("flux_cn_a", weight=0.7), unit("flux_cn_b", weight=1.2, guidance_end=0.5)]
    first = engine.generate(request(models, "flux", units), pictures=Pictures(control=tuple(maps)))
    assert_pixels_close(first.images[0], expected)
    text = first.infotext(0)
    assert 'ControlNet 1: "Module: none, Model: flux_cn_b [' in text and "Guidance End: 0.5" in text
    pasted = infotext_units(read_pasted(text).params)
    again = request(models, "flux", [], controlnet=tuple(pasted.values()))
    repainted = engine.generate(again, pictures=Pictures(control=tuple(maps)))
    assert np.array_equal(pixels(repainted.images[0]), pixels(first.images[0]))


def test_an_xlabs_file_equals_diffusers_with_its_hint_block(engine, models):
    """XLabs' layout: a hint block bringing the map down 8× (a Flux with an 8× VAE, at 64 px), double blocks only."""
    reference = tiny_flux_controlnet(seed=3, hint=True)
    pipe = raw(models, "flux_8x", "FluxControlNetPipeline", reference)
    call = dict(num_inference_steps=4, width=64, height=64, guidance_scale=3.5, control_image=edges(64))
    expected = pipe(PROMPT, **call, generator=generators([5])).images[0]
    plain = pipe(PROMPT, **call, controlnet_conditioning_scale=0.0, generator=generators([5])).images[0]
    xlabs = request(models, "flux_8x", [unit("flux_xlabs")], width=64, height=64)
    result = engine.generate(xlabs, pictures=Pictures(control=(edges(64),)))
    assert_pixels_close(result.images[0], expected)
    assert np.abs(pixels(expected) - pixels(plain)).max() > 5


def test_flux_union_takes_its_control_type_from_the_preprocessor(engine, models):
    """A Union ControlNet (InstantX / Shakker-Labs) gets ``control_mode`` from the unit's module: tile → 1."""
    from diffusers import FluxControlNetModel

    pipe = raw(
        models, "flux", "FluxControlNetPipeline", FluxControlNetModel.from_pretrained(models["cn"] / "flux_union")
    )
    result = engine.generate(
        request(models, "flux", [unit("flux_union", module="tile_resample")]), pictures=Pictures(control=(edges(),))
    )
    detected = result.detected_maps[0]
    call = dict(num_inference_steps=4, width=32, height=32, guidance_scale=3.5, control_image=detected)
    expected = pipe(PROMPT, **call, control_mode=1, generator=generators([5])).images[0]
    other = pipe(PROMPT, **call, control_mode=0, generator=generators([5])).images[0]
    # the mode is one token among the picture's: on this tiny model it moves pixels by one level, so exactly equal
    assert np.array_equal(pixels(result.images[0]), pixels(expected))
    assert not np.array_equal(pixels(expected), pixels(other))
    recorder = Recorder()  # tile_colorfix: tile's control type, the picture as its map, its colour fix not (a UNet's)
    colorfix = request(models, "flux", [unit("flux_union", module="tile_colorfix")])
    fixed = engine.generate(colorfix, progress=recorder, pictures=Pictures(control=(edges(),)))
    assert np.array_equal(pixels(fixed.images[0]), pixels(expected))
    said = "controlnet: tile_colorfix's colour fix acts on UNet models; on Flux the picture is the map"
    assert said in recorder.notices
    with pytest.raises(ValueError, match="is a Union ControlNet; pick a preprocessor") as error:
        engine.generate(request(models, "flux", [unit("flux_union")]), pictures=Pictures(control=(edges(),)))
    assert "\n" not in str(error.value) and len(str(error.value)) < 200


@pytest.mark.parametrize("mode", ["img2img", "inpaint"])
def test_flux_img2img_and_inpaint_equal_diffusers(engine, models, mode):
    init, mask = init_picture(32), box_mask(32, (8, 8, 24, 24))
    cls_name = "FluxControlNetImg2ImgPipeline" if mode == "img2img" else "FluxControlNetInpaintPipeline"
    pipe = raw(models, "flux", cls_name, flux_net(models, "flux_cn_a"))
    extra = {"mask_image": mask} if mode == "inpaint" else {}
    expected = pipe(
        PROMPT, image=init, control_image=edges(), strength=0.65, num_inference_steps=6, width=32, height=32,
        guidance_scale=3.5, controlnet_conditioning_scale=0.9, generator=generators([5]), **extra,
    ).images[0]  # fmt: skip
    if mode == "inpaint":
        expected = Image.composite(expected, init, mask)
    changes = dict(init="x", strength=0.6, steps=6, mask="m" if mode == "inpaint" else "", mask_blur=0)
    result = engine.generate(
        request(models, "flux", [unit("flux_cn_a", weight=0.9)], **changes),
        pictures=Pictures(init, mask if mode == "inpaint" else None, control=(edges(),)),
    )
    assert_pixels_close(result.images[0], expected)


def test_sd3_unit_equals_diffusers_sd3_controlnet_pipeline(engine, models):
    from diffusers import SD3ControlNetModel

    pipe = raw(
        models, "sd3", "StableDiffusion3ControlNetPipeline", SD3ControlNetModel.from_pretrained(models["cn"] / "sd3_cn")
    )
    call = dict(num_inference_steps=4, width=32, height=32, guidance_scale=7.0, control_image=edges())
    torch.manual_seed(5)  # diffusers samples the map's latents from torch's generator: the engine seeds it so
    expected = pipe(PROMPT, **call, controlnet_conditioning_scale=0.8, generator=generators([5])).images[0]
    plain = pipe(PROMPT, **call, controlnet_conditioning_scale=0.0, generator=generators([5])).images[0]
    result = engine.generate(
        request(models, "sd3", [unit("sd3_cn", weight=0.8)]), pictures=Pictures(control=(edges(),))
    )
    assert_pixels_close(result.images[0], expected)
    assert np.abs(pixels(expected) - pixels(plain)).max() > 5


def test_refusals_are_one_line(engine, models, tiny_model_dir, tmp_path):
    from diffusers import StableDiffusionPipeline
    from helpers.tiny_controlnet import save_single_file, tiny_controlnet

    sd15 = StableDiffusionPipeline.from_pretrained(tiny_model_dir, safety_checker=None)
    save_single_file(tiny_controlnet(sd15.unet), models["cn"] / "sd15_cn.safetensors")
    tiny_controlnet(sd15.unet).save_pretrained(models["cn"] / "sd15_folder")
    init, mask = init_picture(32), box_mask(32, (8, 8, 24, 24))
    cases = [
        ("flux", [unit("sd15_cn")], {}, "sd15_cn is a width 32 ControlNet; this model is Flux"),
        ("flux", [unit("sd15_folder")], {}, "sd15_folder is a width 32 ControlNet; this model is Flux"),
        ("flux", [unit("sd3_cn")], {}, "sd3_cn is a SD3 ControlNet; this model is Flux"),
        ("sd3", [unit("flux_cn_a")], {}, "flux_cn_a is a Flux ControlNet; this model is SD3"),
        ("sd3", [unit("flux_cn_b")], {}, "SD3 ControlNets load from diffusers folders or hub ids"),
        (
            "flux",
            [unit("flux_cn_a", control_mode=2)],
            {},
            r"paint Balanced only \(the weight\), not 'ControlNet is more",
        ),
        ("flux", [unit("flux_cn_a")], {"init": "x", "guidance": 3.0}, "Flux's ControlNet img2img has no CFG; use CFG"),
        ("flux", [unit("flux_cn_a", module="inpaint_only")], {}, "feeds the inpaint ControlNets of SD1.5, SD3"),
        ("flux", [unit("flux_cn_a"), unit("flux_xlabs")], {}, "cannot mix XLabs ControlNets"),
    ]
    for family, units, changes, message in cases:
        with pytest.raises(ValueError, match=message) as error:  # (regular expressions)
            engine.generate(
                request(models, family, units, **changes), pictures=Pictures(init, mask, control=(edges(),) * 2)
            )
        assert "\n" not in str(error.value) and len(str(error.value)) < 200, str(error.value)


def test_a_qwenimage_unit_equals_diffusers_qwenimage_controlnet_pipeline(engine, models, tmp_path):
    """A unit with the window 0.25-1, CFG 4 against the card's " "; then two units sharing the Union ControlNet (each
    its own map, weight and window) against diffusers' Multi model holding it once; two models refused. Its img2img,
    inpaint and hires units: test_controlnet_flow_modes.py."""
    from diffusers import QwenImageControlNetModel, QwenImageMultiControlNetModel
    from helpers.tiny_families import make_tiny_qwenimage

    models["qwen"] = make_tiny_qwenimage(tmp_path / "qwen")
    tiny_qwenimage_controlnet(seed=6).save_pretrained(models["cn"] / "qwen_cn")
    net = QwenImageControlNetModel.from_pretrained(models["cn"] / "qwen_cn")
    pipe = raw(models, "qwen", "QwenImageControlNetPipeline", net)
    call = dict(num_inference_steps=4, width=32, height=32, true_cfg_scale=4.0, negative_prompt=" ")
    one = dict(control_image=edges(), control_guidance_start=0.25, control_guidance_end=1.0)
    expected = pipe(PROMPT, **call, **one, controlnet_conditioning_scale=0.8, generator=generators([5])).images[0]
    plain = pipe(PROMPT, **call, **one, controlnet_conditioning_scale=0.0, generator=generators([5])).images[0]
    units = [unit("qwen_cn", weight=0.8, guidance_start=0.25)]
    result = engine.generate(request(models, "qwen", units, guidance=4.0), pictures=Pictures(control=(edges(),)))
    assert_pixels_close(result.images[0], expected)
    assert np.abs(pixels(expected) - pixels(plain)).max() > 5

    pipe.controlnet = QwenImageMultiControlNetModel([net])
    two = dict(control_image=[edges(), block_map(32)], controlnet_conditioning_scale=[0.8, 0.6],
               control_guidance_start=[0.25, 0.0], control_guidance_end=[1.0, 0.5])  # fmt: skip
    expected = pipe(PROMPT, **call, **two, generator=generators([5])).images[0]
    units += [unit("qwen_cn", weight=0.6, guidance_end=0.5)]
    pictures = Pictures(control=(edges(), block_map(32)))
    result = engine.generate(request(models, "qwen", units, guidance=4.0), pictures=pictures)
    assert_pixels_close(result.images[0], expected)
    one_map = engine.generate(request(models, "qwen", units[:1], guidance=4.0), pictures=Pictures(control=(edges(),)))
    assert np.abs(pixels(result.images[0]) - pixels(one_map.images[0])).max() > 1  # the second map paints
    tiny_qwenimage_controlnet(seed=7).save_pretrained(models["cn"] / "qwen_cn_b")
    with pytest.raises(ValueError, match="Qwen-Image's units share one Union ControlNet"):
        engine.generate(request(models, "qwen", [units[0], unit("qwen_cn_b")]), pictures=pictures)


def block_map(size: int) -> Image.Image:
    """2×2 blocks at 32 px: the map at the first pass's 16 px is the picture drawn at 16 px, at 32 px the picture."""
    image = Image.new("RGB", (16, 16))
    draw = ImageDraw.Draw(image)
    draw.rectangle([2, 2, 9, 9], fill=(255, 255, 255))
    draw.rectangle([11, 4, 13, 14], fill=(255, 255, 255))
    return image.resize((size, size), Image.NEAREST)


def flux_hires_reference(models, low: bool, high: bool) -> Image.Image:
    """diffusers' hires fix by hand: Flux (ControlNet) txt2img at 16 px to latents, bilinear ×2, then
    ``FluxControlNetImg2ImgPipeline`` (or ``FluxImg2ImgPipeline``) given its start latents made here: 2 of 4 steps,
    x = σ·noise + (1 − σ)·x0 at the schedule's third level, noise from a fresh generator of the seed (after the
    map's VAE sample, which the ControlNet pipeline draws first)."""
    import diffusers
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    first = raw(models, "flux", "FluxControlNetPipeline", flux_net(models, "flux_cn_a"))
    control = dict(control_image=block_map(16), controlnet_conditioning_scale=0.9)
    txt2img = first if low else diffusers.FluxPipeline.from_pipe(first)
    latents = txt2img(PROMPT, num_inference_steps=4, width=16, height=16, guidance_scale=3.5, output_type="latent",
                      generator=generators([5]), **(control if low else {})).images  # fmt: skip
    latents = first._unpack_latents(latents, 16, 16, first.vae_scale_factor)
    latents = torch.nn.functional.interpolate(latents, size=(16, 16), mode="bilinear")
    scheduler = first.scheduler
    config = scheduler.config
    mu = calculate_shift(8 * 8, config.base_image_seq_len, config.max_image_seq_len, config.base_shift,
                         config.max_shift)  # fmt: skip
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / 4, 4), mu=mu)
    sigma = scheduler.sigmas[2]  # 4 scheduled (int(2 / 0.5)), the last 2 run
    seeded = torch.Generator("cpu").manual_seed(5)
    if high:  # diffusers samples the map's VAE latents from the generator before the noise (as in txt2img)
        torch.randn(latents.shape, generator=seeded)
    noise = torch.randn(latents.shape, generator=seeded)
    start = first._pack_latents(sigma * noise + (1 - sigma) * latents, 1, 16, 16, 16)
    img2img_class = diffusers.FluxControlNetImg2ImgPipeline if high else diffusers.FluxImg2ImgPipeline
    img2img = img2img_class.from_pipe(first) if high else img2img_class.from_pipe(txt2img)
    extra = dict(control_image=block_map(32), controlnet_conditioning_scale=0.9) if high else {}
    return img2img(PROMPT, image=Image.new("RGB", (32, 32)), latents=start, strength=0.375, num_inference_steps=4,
                   width=32, height=32, guidance_scale=3.5, generator=generators([5]), **extra).images[0]  # fmt: skip


@pytest.mark.parametrize(("option", "low", "high"), [("Both", True, True), ("High res only", False, True),
                                                     ("Low res only", True, False)])  # fmt: skip
def test_flux_units_in_the_hires_pass_equal_diffusers_by_hand(engine, models, option, low, high):
    """sd-webui-controlnet's Hr Option on Flux: the hires pass hands its latents to the ControlNet img2img pipeline,
    which takes them as latents (as ``FluxImg2ImgPipeline`` does), its map fitted to the hires size."""
    hires = dict(width=16, height=16, hires=2, hires_steps=2, hires_denoise=0.5)
    units = [unit("flux_cn_a", weight=0.9, hr_option=option)]
    painted = engine.generate(request(models, "flux", units, **hires), pictures=Pictures(control=(block_map(32),)))
    expected = flux_hires_reference(models, low, high)
    assert painted.images[0].size == (32, 32)
    assert_pixels_close(painted.images[0], expected)
    without = engine.generate(request(models, "flux", [], **hires))
    assert np.abs(pixels(painted.images[0]) - pixels(without.images[0])).max() > 5  # the units paint: it can fail
    assert f"Hr Option: {option}" in painted.infotext(0)
    if high:  # the hires pass's ControlNet img2img has no CFG either
        with pytest.raises(ValueError, match="Flux's ControlNet img2img has no CFG; use CFG scale 1") as error:
            engine.generate(request(models, "flux", units, hires_guidance=3.0, **hires),
                            pictures=Pictures(control=(block_map(32),)))  # fmt: skip
        assert "\n" not in str(error.value) and len(str(error.value)) < 200


def test_a_zimage_unit_equals_diffusers_zimage_controlnet_pipeline(engine, models, tmp_path):
    """One unit at CFG 1 (Turbo's), the weight as diffusers' scale; a window and a second unit refused."""
    from diffusers import ZImageControlNetModel
    from helpers.tiny_families import make_tiny_zimage

    models["zimage"] = make_tiny_zimage(tmp_path / "zimage")
    tiny_zimage_controlnet(seed=8).save_pretrained(models["cn"] / "zimage_cn")
    net = ZImageControlNetModel.from_pretrained(models["cn"] / "zimage_cn")
    pipe = raw(models, "zimage", "ZImageControlNetPipeline", net)
    call = dict(num_inference_steps=4, width=32, height=32, guidance_scale=0.0, control_image=edges())
    expected = pipe(PROMPT, **call, controlnet_conditioning_scale=0.9, generator=generators([5])).images[0]
    plain = pipe(PROMPT, **call, controlnet_conditioning_scale=0.0, generator=generators([5])).images[0]
    units = [unit("zimage_cn", weight=0.9)]
    result = engine.generate(request(models, "zimage", units), pictures=Pictures(control=(edges(),)))
    assert_pixels_close(result.images[0], expected)
    assert np.abs(pixels(expected) - pixels(plain)).max() > 5
    cases = [
        ([unit("zimage_cn", guidance_end=0.5)], {}, "Z-Image's ControlNet pipeline has no guidance window"),
        (units * 2, {}, "Z-Image paints one unit at a time"),
    ]
    for case_units, changes, message in cases:
        with pytest.raises(ValueError, match=message):
            bad = request(models, "zimage", case_units, **changes)
            engine.generate(bad, pictures=Pictures(init_picture(32), control=(edges(),) * 2))
