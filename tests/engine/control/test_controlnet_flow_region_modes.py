"""Effective region masks on Flux ControlNet units from an init: img2img, inpaint and the hires pass.

The references are diffusers' own Flux ControlNet pipelines (``FluxControlNetImg2ImgPipeline``,
``FluxControlNetInpaintPipeline``; the hires pass by hand as in test_controlnet_flow.py) with a forward hook written
here on the ControlNet: every residual times the mask's red channel / 255 resized bilinearly to the token grid (a
square picture's packed latents: √tokens a side, so the hook serves the first pass's grid and the hires pass's) and
flattened in rows.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import torch
from helpers.flow_init_refs import block_map
from helpers.paint_modes import box_mask, generators, init_picture, outline_map
from helpers.pixels import assert_pixels_close, pixels
from helpers.tiny_flow import make_tiny_flux
from helpers.tiny_flow_controlnet import tiny_flux_controlnet
from PIL import Image

from jupyter_sd import library
from jupyter_sd.engine import Engine
from jupyter_sd.engine.pictures import Pictures
from jupyter_sd.recipe.control_units import read_units
from jupyter_sd.recipe.request import PaintRequest

PROMPT = "a red circle"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("flow-region-modes")
    folder = root / "models" / "ControlNet"
    folder.mkdir(parents=True)
    tiny_flux_controlnet(seed=1).save_pretrained(folder / "flux_a")
    library.set_models_dir(root / "models")
    yield {"flux": make_tiny_flux(root / "flux"), "cn": folder}
    library.set_models_dir(None)


@pytest.fixture(scope="module")
def engine():
    return Engine()


def bottom_right(size: int = 12) -> Image.Image:
    """Another size than the picture (stretched): red white in the bottom-right quarter, a grey elsewhere."""
    mask = Image.new("RGB", (size, size), (90, 0, 255))
    mask.paste((255, 255, 255), (size // 2, size // 2, size, size))
    return mask


def square_token_hook(mask):
    """Each residual (B, tokens, D) of a square picture times the mask on its √tokens × √tokens grid, in rows."""
    red = torch.from_numpy(np.asarray(mask, dtype=np.float32)[:, :, 0] / 255.0)[None, None]

    def weigh(sample):
        side = math.isqrt(sample.shape[1])
        assert side * side == sample.shape[1]
        grid = torch.nn.functional.interpolate(red, size=(side, side), mode="bilinear")
        return sample * grid.reshape(1, side * side, 1)

    def hook(module, args, kwargs, output):
        return tuple(None if samples is None else [weigh(s) for s in samples] for samples in output)

    return hook


def controlnet(models):
    from diffusers import FluxControlNetModel

    return FluxControlNetModel.from_pretrained(models["cn"] / "flux_a")


def raw(models, cls_name, net):
    import diffusers

    cls = getattr(diffusers, cls_name)
    takes = inspect.signature(cls.__init__).parameters
    components = diffusers.FluxPipeline.from_pretrained(models["flux"]).components
    pipe = cls(**{k: v for k, v in components.items() if k in takes}, controlnet=net)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def request(models, units, **changes):
    base = dict(prompt=PROMPT, model=str(models["flux"]), steps=4, seed=5, width=32, height=32, rng="cpu",
                preview="none", save=False, controlnet=read_units(units))  # fmt: skip
    return PaintRequest(**{**base, **changes})


def unit(**values):
    return {"module": "none", "model": "flux_a", "weight": 0.9, **values}


@pytest.mark.parametrize("mode", ["img2img", "inpaint"])
def test_flux_masked_unit_from_an_init_equals_diffusers_with_the_token_hook(engine, models, mode):
    init, mask = init_picture(32), box_mask(32, (8, 8, 24, 24))
    cls_name = "FluxControlNetImg2ImgPipeline" if mode == "img2img" else "FluxControlNetInpaintPipeline"
    net = controlnet(models)
    pipe = raw(models, cls_name, net)
    extra = {"mask_image": mask} if mode == "inpaint" else {}
    handle = net.register_forward_hook(square_token_hook(bottom_right()), with_kwargs=True)
    try:
        expected = pipe(
            PROMPT, image=init, control_image=outline_map(32), strength=0.65, num_inference_steps=6, width=32,
            height=32, guidance_scale=3.5, controlnet_conditioning_scale=0.9, generator=generators([5]), **extra,
        ).images[0]  # fmt: skip
    finally:
        handle.remove()
    if mode == "inpaint":
        expected = Image.composite(expected, init, mask)
    changes = dict(init="x", strength=0.6, steps=6, mask="m" if mode == "inpaint" else "", mask_blur=0)
    paint_mask = mask if mode == "inpaint" else None
    masked = Pictures(init, paint_mask, control=(outline_map(32),), control_masks=(bottom_right(),))
    result = engine.generate(request(models, [unit()], **changes), pictures=masked)
    assert_pixels_close(result.images[0], expected)
    unmasked = Pictures(init, paint_mask, control=(outline_map(32),))
    plain = engine.generate(request(models, [unit()], **changes), pictures=unmasked)
    assert np.abs(pixels(plain.images[0]) - pixels(expected)).max() > 3  # the mask changes the picture
    white = Pictures(init, paint_mask, control=(outline_map(32),), control_masks=(Image.new("L", (5, 5), 255),))
    whole = engine.generate(request(models, [unit()], **changes), pictures=white)
    assert np.array_equal(pixels(whole.images[0]), pixels(plain.images[0]))  # all white: as unmasked


def flux_hires_reference(models, mask) -> Image.Image:
    """diffusers' hires fix by hand (Hr Option Both), the hook on both passes' ControlNet: the ControlNet txt2img at
    16 px to latents, bilinear ×2, then ``FluxControlNetImg2ImgPipeline`` from those latents noised to the third of
    4 levels (2 hires steps at denoise 0.5), noise after the map's VAE sample, the map at each pass's size."""
    import diffusers
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    net = controlnet(models)
    first = raw(models, "FluxControlNetPipeline", net)
    handle = net.register_forward_hook(square_token_hook(mask), with_kwargs=True)
    try:
        latents = first(PROMPT, num_inference_steps=4, width=16, height=16, guidance_scale=3.5, output_type="latent",
                        control_image=block_map(16), controlnet_conditioning_scale=0.9,
                        generator=generators([5])).images  # fmt: skip
        latents = first._unpack_latents(latents, 16, 16, first.vae_scale_factor)
        latents = torch.nn.functional.interpolate(latents, size=(16, 16), mode="bilinear")
        config = first.scheduler.config
        mu = calculate_shift(8 * 8, config.base_image_seq_len, config.max_image_seq_len, config.base_shift,
                             config.max_shift)  # fmt: skip
        first.scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / 4, 4), mu=mu)
        sigma = first.scheduler.sigmas[2]
        seeded = torch.Generator("cpu").manual_seed(5)
        torch.randn(latents.shape, generator=seeded)  # the map's VAE sample, drawn first
        noise = torch.randn(latents.shape, generator=seeded)
        start = first._pack_latents(sigma * noise + (1 - sigma) * latents, 1, 16, 16, 16)
        img2img = diffusers.FluxControlNetImg2ImgPipeline.from_pipe(first)
        return img2img(PROMPT, image=Image.new("RGB", (32, 32)), latents=start, strength=0.375, num_inference_steps=4,
                       width=32, height=32, guidance_scale=3.5, control_image=block_map(32),
                       controlnet_conditioning_scale=0.9, generator=generators([5])).images[0]  # fmt: skip
    finally:
        handle.remove()


def test_flux_masked_unit_in_the_hires_pass_equals_diffusers_by_hand(engine, models):
    """The mask weighs the first pass's 4×4 tokens and the hires pass's 8×8 (the same mask at each grid)."""
    hires = dict(width=16, height=16, hires=2, hires_steps=2, hires_denoise=0.5)
    units = [unit(hr_option="Both")]
    maps = (block_map(32),)  # (drawn in 2×2 blocks: the first pass's 16 px map is the picture at 16)
    masked = Pictures(control=maps, control_masks=(bottom_right(),))
    painted = engine.generate(request(models, units, **hires), pictures=masked)
    expected = flux_hires_reference(models, bottom_right())
    assert painted.images[0].size == (32, 32)
    assert_pixels_close(painted.images[0], expected)
    plain = engine.generate(request(models, units, **hires), pictures=Pictures(control=maps))
    assert np.abs(pixels(plain.images[0]) - pixels(expected)).max() > 3  # the mask changes the picture
