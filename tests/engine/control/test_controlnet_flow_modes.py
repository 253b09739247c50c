"""ControlNet units on SD3, Qwen-Image and Z-Image in img2img, inpaint and the hires pass, through Engine.generate.

diffusers has no ControlNet img2img pipeline for these families and its inpaint ControlNet pipelines paint from
noise: the engine composes them from the init (control/flow_init.py). The references are diffusers' own ControlNet
pipelines, loaded here, given the start latents, the schedule's tail and (inpaint) the per-step blend that diffusers'
img2img and inpaint pipelines use, made by formula (helpers/flow_init_refs.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.flow_init_refs import blending, block_map, edges, first_level, latent_mask, noised, raw
from helpers.paint_modes import box_mask, generators, init_picture
from helpers.pixels import assert_pixels_close, pixels
from helpers.tiny_families import make_tiny_qwenimage, make_tiny_zimage
from helpers.tiny_flow import make_tiny_sd3
from helpers.tiny_flow_controlnet import tiny_qwenimage_controlnet, tiny_sd3_controlnet, tiny_zimage_controlnet
from PIL import Image

from jupyter_sd import library
from jupyter_sd.engine import Engine
from jupyter_sd.engine.pictures import Pictures
from jupyter_sd.recipe.control_units import read_units
from jupyter_sd.recipe.request import PaintRequest

PROMPT = "a red circle"
INIT, MASK = init_picture(32), box_mask(32, (8, 8, 24, 24))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Tiny SD3, Qwen-Image and Z-Image folders; their ControlNets (map and inpaint ones) in a models folder."""
    root = tmp_path_factory.mktemp("flow-modes")
    folder = root / "models" / "ControlNet"
    folder.mkdir(parents=True)
    tiny_sd3_controlnet(seed=5).save_pretrained(folder / "sd3_cn")
    tiny_sd3_controlnet(seed=6, extra=1).save_pretrained(folder / "sd3_inpaint")
    tiny_qwenimage_controlnet(seed=7).save_pretrained(folder / "qwen_cn")
    tiny_qwenimage_controlnet(seed=8, extra=4).save_pretrained(folder / "qwen_inpaint")
    tiny_zimage_controlnet(seed=9, control_in_dim=33).save_pretrained(folder / "zimage_union2")
    library.set_models_dir(root / "models")
    yield {
        "sd3": make_tiny_sd3(root / "sd3", layers=2),
        "qwen": make_tiny_qwenimage(root / "qwen"),
        "zimage": make_tiny_zimage(root / "zimage"),
        "cn": folder,
    }
    library.set_models_dir(None)


@pytest.fixture(scope="module")
def engine():
    return Engine()


def request(models, family, units, **changes):
    base = dict(prompt=PROMPT, model=str(models[family]), steps=6, seed=5, width=32, height=32, rng="cpu",
                preview="none", save=False, controlnet=read_units(units))  # fmt: skip
    return PaintRequest(**{**base, **changes})


def unit(model, **values):
    return {"module": "none", "model": model, **values}


def net(models, family, name):
    import diffusers

    cls = {"sd3": "SD3ControlNetModel", "qwen": "QwenImageControlNetModel", "zimage": "ZImageControlNetModel"}
    return getattr(diffusers, cls[family]).from_pretrained(models["cn"] / name)


def encode_sd3(pipe, picture, generator):
    """SD3's x0: the picture VAE-sampled with `generator`, shifted and scaled."""
    config = pipe.vae.config
    sample = pipe.vae.encode(pipe.image_processor.preprocess(picture, 32, 32)).latent_dist.sample(generator)
    return (sample - config.shift_factor) * config.scaling_factor


def encode_qwen(pipe, picture, generator):
    """Qwen-Image's x0: one frame VAE-sampled with `generator`, normalized by its mean and std, (1, C, h, w)."""
    config = pipe.vae.config
    frames = pipe.vae.encode(pipe.image_processor.preprocess(picture, 32, 32).unsqueeze(2)).latent_dist.sample(
        generator
    )
    mean = torch.tensor(config.latents_mean).view(1, -1, 1, 1, 1)
    return ((frames - mean) / torch.tensor(config.latents_std).view(1, -1, 1, 1, 1))[:, :, 0]


def pack(pipe, latents):
    return pipe._pack_latents(latents, *latents.shape)


def qwen_mu(pipe, sequence):
    from diffusers.pipelines.qwenimage.pipeline_qwenimage_controlnet import calculate_shift

    c = pipe.scheduler.config
    return calculate_shift(sequence, c.base_image_seq_len, c.max_image_seq_len, c.base_shift, c.max_shift)


@pytest.mark.parametrize("mode", ["img2img", "inpaint"])
def test_an_sd3_map_unit_from_an_init_equals_its_controlnet_pipeline_started_from_it(engine, models, mode):
    """Denoise 0.6 of 6 steps runs the last 4 levels (A1111), from the init noised to the first of them; inpaint
    puts the init back outside the mask after each step (diffusers' inpaint blend) and pastes it back."""
    pipe = raw(models["sd3"], "sd3", "StableDiffusion3ControlNetPipeline", net(models, "sd3", "sd3_cn"))
    seeded = torch.Generator("cpu").manual_seed(5)
    x0 = encode_sd3(pipe, INIT, seeded)  # (diffusers' img2img encodes, then draws the noise)
    noise = torch.randn(x0.shape, generator=seeded)
    fresh = type(pipe.scheduler).from_config(pipe.scheduler.config)
    tail = np.linspace(fresh.sigma_max, fresh.sigma_min, 6)[2:]  # the pipeline's 6 levels, unshifted
    call = dict(width=32, height=32, guidance_scale=7.0, control_image=edges(), controlnet_conditioning_scale=0.8)
    if mode == "inpaint":
        call["callback_on_step_end"] = blending(x0, noise, latent_mask(MASK, *x0.shape[2:]))
    torch.manual_seed(5)  # (SD3 samples the map's latents from torch's generator, as the engine seeds it)
    start = noised(x0, noise, first_level(pipe, tail))
    expected = pipe(PROMPT, latents=start, sigmas=list(tail), **call, generator=generators([5])).images[0]
    changes = dict(init="x", strength=0.6, guidance=7.0)
    if mode == "inpaint":
        expected, changes = Image.composite(expected, INIT, MASK), {**changes, "mask": "m", "mask_blur": 0}
    units = [unit("sd3_cn", weight=0.8)]
    result = engine.generate(
        request(models, "sd3", units, **changes), pictures=Pictures(INIT, MASK, control=(edges(),))
    )
    assert_pixels_close(result.images[0], expected)
    plain = engine.generate(request(models, "sd3", [], **changes), pictures=Pictures(INIT, MASK))
    assert np.abs(pixels(plain.images[0]) - pixels(expected)).max() > 5  # the unit paints: the test can fail


@pytest.mark.parametrize("family", ["sd3", "qwen"])
def test_an_inpaint_controlnet_equals_diffusers_inpaint_controlnet_pipeline(engine, models, family):
    """Alimama's SD3 / InstantX's Qwen-Image inpainting ControlNet, module inpaint_only (the init and the mask as its
    map): the pipeline started from the init at denoise 0.75, the init put back outside the mask after each step."""
    cls_name = {"sd3": "StableDiffusion3ControlNetInpaintingPipeline", "qwen": "QwenImageControlNetInpaintPipeline"}
    pipe = raw(models[family], family, cls_name[family], net(models, family, f"{family}_inpaint"))
    seeded = torch.Generator("cpu").manual_seed(5)
    x0 = (encode_sd3 if family == "sd3" else encode_qwen)(pipe, INIT, seeded)
    noise = torch.randn(x0.shape, generator=seeded)
    mask = latent_mask(MASK, *x0.shape[2:]).expand(x0.shape)
    if family == "qwen":  # its latents are 2×2 patches in a sequence
        x0, noise, mask = pack(pipe, x0), pack(pipe, noise), pack(pipe, mask.contiguous())
    steps = 6
    if family == "sd3":
        fresh = type(pipe.scheduler).from_config(pipe.scheduler.config)
        tail, mu = np.linspace(fresh.sigma_max, fresh.sigma_min, steps)[1:], None  # 0.75 of 6 steps: the last 5
        call = dict(guidance_scale=7.0)
    else:
        tail, mu = np.linspace(1.0, 1 / steps, steps)[1:], qwen_mu(pipe, x0.shape[1])
        call = dict(true_cfg_scale=4.0, negative_prompt=" ")
    call.update(width=32, height=32, control_image=INIT, control_mask=MASK, controlnet_conditioning_scale=0.9)
    torch.manual_seed(5)  # (the masked picture's latents are sampled from torch's generator)
    expected = pipe(
        PROMPT, latents=noised(x0, noise, first_level(pipe, tail, mu)), sigmas=list(tail), **call,
        callback_on_step_end=blending(x0, noise, mask), generator=generators([5]),
    ).images[0]  # fmt: skip
    expected = Image.composite(expected, INIT, MASK)
    guidance = 7.0 if family == "sd3" else 4.0
    units = [unit(f"{family}_inpaint", module="inpaint_only", weight=0.9)]
    changes = dict(init="x", mask="m", mask_blur=0, strength=0.75, guidance=guidance)
    result = engine.generate(request(models, family, units, **changes), pictures=Pictures(INIT, MASK))
    assert_pixels_close(result.images[0], expected)
    plain = engine.generate(request(models, family, [], **changes), pictures=Pictures(INIT, MASK))
    assert np.abs(pixels(plain.images[0]) - pixels(expected)).max() > 5
    assert 'ControlNet 0: "Module: inpaint_only, Model: ' in result.infotext(0)


def test_a_zimage_union2_unit_inpaints_as_diffusers_zimage_controlnet_inpaint_pipeline(engine, models):
    """Z-Image Union 2.0 (its map, the mask and the masked init as control channels) in inpaint mode."""
    pipe = raw(models["zimage"], "zimage", "ZImageControlNetInpaintPipeline", net(models, "zimage", "zimage_union2"))
    seeded = torch.Generator("cpu").manual_seed(5)
    x0 = encode_sd3(pipe, INIT, seeded)  # (Z-Image's VAE is Flux's: shifted and scaled as SD3's)
    noise = torch.randn(x0.shape, generator=seeded)
    mask = latent_mask(MASK, *x0.shape[2:])
    tail = torch.linspace(1.0, 1 / 6, 6)[2:].tolist()  # denoise 0.6 of 6 steps: the last 4
    expected = pipe(
        PROMPT, image=INIT, mask_image=MASK, control_image=edges(), controlnet_conditioning_scale=0.9,
        latents=noised(x0, noise, first_level(pipe, tail)), sigmas=tail, width=32, height=32, guidance_scale=0.0,
        callback_on_step_end=blending(x0, noise, mask), generator=generators([5]),
    ).images[0]  # fmt: skip
    expected = Image.composite(expected, INIT, MASK)
    changes = dict(init="x", mask="m", mask_blur=0, strength=0.6, guidance=1.0)
    units = [unit("zimage_union2", weight=0.9)]
    result = engine.generate(
        request(models, "zimage", units, **changes), pictures=Pictures(INIT, MASK, control=(edges(),))
    )
    assert_pixels_close(result.images[0], expected)
    plain = engine.generate(request(models, "zimage", [], **changes), pictures=Pictures(INIT, MASK))
    assert np.abs(pixels(plain.images[0]) - pixels(expected)).max() > 5


def test_qwenimage_units_in_the_hires_pass_equal_diffusers_by_hand(engine, models):
    """Hr Option Both: the ControlNet txt2img at 16 px to latents, bilinear ×2, then the same ControlNet pipeline
    from those latents noised to the third of 4 levels (2 hires steps at denoise 0.5), its map at 32 px."""
    pipe = raw(models["qwen"], "qwen", "QwenImageControlNetPipeline", net(models, "qwen", "qwen_cn"))
    call = dict(true_cfg_scale=4.0, negative_prompt=" ", controlnet_conditioning_scale=0.9)
    small = pipe(PROMPT, num_inference_steps=4, width=16, height=16, control_image=block_map(16), output_type="latent",
                 **call, generator=generators([5])).images  # fmt: skip
    small = pipe._unpack_latents(small, 16, 16, pipe.vae_scale_factor)[:, :, 0]
    x0 = torch.nn.functional.interpolate(small, scale_factor=2, mode="bilinear")
    seeded = torch.Generator("cpu").manual_seed(5)
    pipe.vae.encode(pipe.image_processor.preprocess(block_map(32), 32, 32).unsqueeze(2)).latent_dist.sample(seeded)
    noise = pack(pipe, torch.randn(x0.shape, generator=seeded))  # (after the map's sample, as the pipeline draws)
    x0 = pack(pipe, x0)
    tail = np.linspace(1.0, 1 / 4, 4)[2:]
    start = noised(x0, noise, first_level(pipe, tail, qwen_mu(pipe, x0.shape[1])))
    expected = pipe(PROMPT, latents=start, sigmas=list(tail), width=32, height=32, control_image=block_map(32), **call,
                    generator=generators([5])).images[0]  # fmt: skip
    hires = dict(width=16, height=16, hires=2, hires_steps=2, hires_denoise=0.5, steps=4, guidance=4.0)
    units = [unit("qwen_cn", weight=0.9)]
    painted = engine.generate(request(models, "qwen", units, **hires), pictures=Pictures(control=(block_map(32),)))
    assert painted.images[0].size == (32, 32)
    assert_pixels_close(painted.images[0], expected)
    assert "Hr Option: Both" in painted.infotext(0)


def test_inpaint_controlnet_refusals_are_one_line(engine, models):
    """An inpaint map needs an inpaint ControlNet and one takes nothing else, alone; Z-Image's takes a map."""
    cases = [
        ("sd3", [unit("sd3_cn", module="inpaint_only")], "unit 0: inpaint_only needs an inpaint ControlNet"),
        ("sd3", [unit("sd3_inpaint")], "unit 0: sd3_inpaint is an inpaint ControlNet; give it Module: inpaint_only"),
        (
            "sd3",
            [unit("sd3_inpaint", module="inpaint_only"), unit("sd3_cn")],
            "sd3_inpaint is an inpaint ControlNet: it paints alone on SD3",
        ),
        ("zimage", [unit("zimage_union2", module="inpaint_only")], "SD3 and Qwen-Image, not Z-Image's; paint its"),
    ]
    for family, units, message in cases:
        with pytest.raises(ValueError, match=message) as error:
            bad = request(models, family, units, init="x", mask="m")
            engine.generate(bad, pictures=Pictures(INIT, MASK, control=(INIT, edges())))
        assert "\n" not in str(error.value) and len(str(error.value)) < 200, str(error.value)
