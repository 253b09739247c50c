"""Effective region masks on Flux, SD3, Qwen-Image and Z-Image ControlNet units, against diffusers' pipelines.

A transformer ControlNet's residuals are the image's tokens in rows (Flux's 2×2 packing of the latents, SD3's patch
embedding). The references put a forward hook written here on the masked unit's ControlNet: every residual times the
mask's red channel / 255 resized bilinearly to the token grid (the latent grid over the packing or patch size,
computed here from the pipeline's own factors) and flattened in rows. Z-Image's residuals run over the image's tokens
then the caption's: its hook masks the image's rows only.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from helpers.paint_modes import generators, outline_map
from helpers.pixels import assert_pixels_close, pixels
from helpers.tiny_flow import make_tiny_flux, make_tiny_sd3
from helpers.tiny_flow_controlnet import tiny_flux_controlnet, tiny_sd3_controlnet
from PIL import Image

from jupyter_sd import library
from jupyter_sd.engine import Engine
from jupyter_sd.engine.pictures import Pictures
from jupyter_sd.recipe.control_units import read_units
from jupyter_sd.recipe.request import PaintRequest

PROMPT = "a red circle"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("flow-regions")
    folder = root / "models" / "ControlNet"
    folder.mkdir(parents=True)
    tiny_flux_controlnet(seed=1).save_pretrained(folder / "flux_a")
    tiny_flux_controlnet(seed=2).save_pretrained(folder / "flux_b")
    tiny_sd3_controlnet(seed=5).save_pretrained(folder / "sd3_cn")
    library.set_models_dir(root / "models")
    yield {"flux": make_tiny_flux(root / "flux"), "sd3": make_tiny_sd3(root / "sd3", layers=2), "cn": folder}
    library.set_models_dir(None)


@pytest.fixture(scope="module")
def engine():
    return Engine()


def edges(size: int = 32) -> Image.Image:
    """A ready control map (module none): a white square outline and a diagonal on black."""
    return outline_map(size)


def top_left(size: int = 10) -> Image.Image:
    """Another size than the picture (stretched), its red channel white in the top-left quarter, a grey elsewhere."""
    mask = Image.new("RGB", (size, size), (60, 255, 0))
    mask.paste((255, 0, 0), (0, 0, size // 2, size // 2))
    return mask


def token_hook(mask, rows, cols):
    grid = torch.from_numpy(np.asarray(mask, dtype=np.float32)[:, :, 0] / 255.0)[None, None]
    grid = torch.nn.functional.interpolate(grid, size=(rows, cols), mode="bilinear").reshape(1, rows * cols, 1)

    def hook(module, args, kwargs, output):
        if isinstance(output, list):  # Qwen-Image's: the residuals themselves
            return [s * grid for s in output]
        return tuple(None if samples is None else [s * grid for s in samples] for samples in output)

    return hook


def raw(models, family, cls_name, controlnet):
    import diffusers

    base = getattr(diffusers, "StableDiffusion3Pipeline" if family == "sd3" else "FluxPipeline")
    cls = getattr(diffusers, cls_name)
    takes = inspect.signature(cls.__init__).parameters
    components = {k: v for k, v in base.from_pretrained(models[family]).components.items() if k in takes}
    pipe = cls(**components, controlnet=controlnet)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def request(models, family, units, **changes):
    base = dict(prompt=PROMPT, model=str(models[family]), steps=4, seed=5, width=32, height=32, rng="cpu",
                preview="none", save=False, controlnet=read_units(units))  # fmt: skip
    return PaintRequest(**{**base, **changes})


def unit(model, **values):
    return {"module": "none", "model": model, **values}


def test_flux_masked_unit_beside_an_unmasked_one_equals_diffusers_with_the_token_hook(engine, models):
    from diffusers import FluxControlNetModel, FluxMultiControlNetModel

    first = FluxControlNetModel.from_pretrained(models["cn"] / "flux_a")
    second = FluxControlNetModel.from_pretrained(models["cn"] / "flux_b")
    maps = [edges(), edges().transpose(Image.FLIP_LEFT_RIGHT)]
    pipe = raw(models, "flux", "FluxControlNetPipeline", FluxMultiControlNetModel([first, second]))
    side = 32 // (pipe.vae_scale_factor * 2)  # the packed latents' grid: 2×2 latent pixels a token
    handle = first.register_forward_hook(token_hook(top_left(), side, side), with_kwargs=True)
    try:
        expected = pipe(
            PROMPT, num_inference_steps=4, width=32, height=32, guidance_scale=3.5, control_image=maps,
            controlnet_conditioning_scale=[0.9, 0.6], generator=generators([5]),
        ).images[0]  # fmt: skip
    finally:
        handle.remove()
    units = [unit("flux_a", weight=0.9), unit("flux_b", weight=0.6)]
    plain = engine.generate(request(models, "flux", units), pictures=Pictures(control=tuple(maps)))
    assert np.abs(pixels(plain.images[0]) - pixels(expected)).max() > 3  # unmasked: another picture
    masked = Pictures(control=tuple(maps), control_masks=(top_left(), None))
    result = engine.generate(request(models, "flux", units), pictures=masked)
    assert_pixels_close(result.images[0], expected)
    white = Pictures(control=tuple(maps), control_masks=(None, Image.new("L", (7, 7), 255)))
    whole = engine.generate(request(models, "flux", units), pictures=white)
    assert np.array_equal(pixels(whole.images[0]), pixels(plain.images[0]))  # all white: as unmasked


def test_sd3_masked_unit_equals_diffusers_with_the_token_hook(engine, models):
    from diffusers import SD3ControlNetModel

    net = SD3ControlNetModel.from_pretrained(models["cn"] / "sd3_cn")
    pipe = raw(models, "sd3", "StableDiffusion3ControlNetPipeline", net)
    side = 32 // pipe.vae_scale_factor // pipe.transformer.config.patch_size  # one token a patch
    handle = net.register_forward_hook(token_hook(top_left(), side, side), with_kwargs=True)
    try:
        call = dict(num_inference_steps=4, width=32, height=32, guidance_scale=7.0, control_image=edges())
        torch.manual_seed(5)  # diffusers samples the map's latents from torch's generator: the engine seeds it so
        expected = pipe(PROMPT, **call, controlnet_conditioning_scale=0.8, generator=generators([5])).images[0]
    finally:
        handle.remove()
    pictures = Pictures(control=(edges(),), control_masks=(top_left(),))
    result = engine.generate(request(models, "sd3", [unit("sd3_cn", weight=0.8)]), pictures=pictures)
    assert_pixels_close(result.images[0], expected)
    plain = engine.generate(request(models, "sd3", [unit("sd3_cn", weight=0.8)]), pictures=Pictures(control=(edges(),)))
    assert np.abs(pixels(plain.images[0]) - pixels(expected)).max() > 3  # the mask changes the picture


def test_qwenimage_masked_unit_equals_diffusers_with_the_token_hook(engine, models, tmp_path):
    from diffusers import QwenImageControlNetModel
    from helpers.tiny_families import make_tiny_qwenimage
    from helpers.tiny_flow_controlnet import tiny_qwenimage_controlnet

    models["qwen"] = make_tiny_qwenimage(tmp_path / "qwen")
    tiny_qwenimage_controlnet(seed=6).save_pretrained(models["cn"] / "qwen_cn")
    net = QwenImageControlNetModel.from_pretrained(models["cn"] / "qwen_cn")
    import diffusers

    components = diffusers.QwenImagePipeline.from_pretrained(models["qwen"]).components
    pipe = diffusers.QwenImageControlNetPipeline(**components, controlnet=net)
    pipe.set_progress_bar_config(disable=True)
    side = 32 // (pipe.vae_scale_factor * 2)  # packed as Flux's latents
    handle = net.register_forward_hook(token_hook(top_left(), side, side), with_kwargs=True)
    try:
        call = dict(num_inference_steps=4, width=32, height=32, true_cfg_scale=4.0, negative_prompt=" ",
                    control_image=edges(), controlnet_conditioning_scale=0.8)  # fmt: skip
        expected = pipe(PROMPT, **call, generator=generators([5])).images[0]
    finally:
        handle.remove()
    units = [unit("qwen_cn", weight=0.8)]
    pictures = Pictures(control=(edges(),), control_masks=(top_left(),))
    result = engine.generate(request(models, "qwen", units, guidance=4.0), pictures=pictures)
    assert_pixels_close(result.images[0], expected)
    plain = engine.generate(request(models, "qwen", units, guidance=4.0), pictures=Pictures(control=(edges(),)))
    assert np.abs(pixels(plain.images[0]) - pixels(expected)).max() > 3  # the mask changes the picture


def image_rows_hook(mask, rows, cols):
    """Z-Image's residuals run over image tokens (rows×cols, padded to 32) then caption tokens: the image's masked."""
    grid = torch.from_numpy(np.asarray(mask, dtype=np.float32)[:, :, 0] / 255.0)[None, None]
    grid = torch.nn.functional.interpolate(grid, size=(rows, cols), mode="bilinear").reshape(1, rows * cols, 1)

    def hook(module, args, kwargs, output):
        assert isinstance(output, dict)  # layer → (batch, unified tokens, dim)
        return {k: torch.cat([v[:, : rows * cols] * grid, v[:, rows * cols :]], dim=1) for k, v in output.items()}

    return hook


@pytest.mark.parametrize("cfg", [1.0, 3.0])
def test_zimage_masked_unit_masks_the_image_tokens_as_diffusers_with_the_hook(engine, models, tmp_path, cfg):
    """With CFG 3 (diffusers' guidance_scale 2) the batch holds two captions of their own lengths after the image's."""
    import diffusers
    from diffusers import ZImageControlNetModel
    from helpers.tiny_families import make_tiny_zimage
    from helpers.tiny_flow_controlnet import tiny_zimage_controlnet

    models["zimage"] = make_tiny_zimage(tmp_path / "zimage")
    tiny_zimage_controlnet(seed=8).save_pretrained(models["cn"] / "zimage_cn")
    net = ZImageControlNetModel.from_pretrained(models["cn"] / "zimage_cn")
    components = diffusers.ZImagePipeline.from_pretrained(models["zimage"]).components
    pipe = diffusers.ZImageControlNetPipeline(**components, controlnet=net)
    pipe.set_progress_bar_config(disable=True)
    side = 32 // (pipe.vae_scale_factor * 2)  # latents of 32 // vae_scale_factor, in 2×2 patches
    assert side * side < 32 or side * side % 32 == 0  # (the test's grid: padded, or a whole number of 32 tokens)
    call = dict(num_inference_steps=4, width=32, height=32, guidance_scale=cfg - 1,  # A1111's CFG s: s − 1 here
                control_image=edges(), controlnet_conditioning_scale=0.8)  # fmt: skip
    if cfg != 1.0:
        call["negative_prompt"] = "a blue square on a very long and wordy grey background"
    handle = net.register_forward_hook(image_rows_hook(top_left(), side, side), with_kwargs=True)
    try:
        expected = pipe(PROMPT, **call, generator=generators([5])).images[0]
    finally:
        handle.remove()
    plain_expected = pipe(PROMPT, **call, generator=generators([5])).images[0]
    assert np.abs(pixels(plain_expected) - pixels(expected)).max() > 3  # the mask changes the picture
    units = [unit("zimage_cn", weight=0.8)]
    changes = dict(guidance=cfg, negative_prompt=call.get("negative_prompt", ""))
    plain = engine.generate(request(models, "zimage", units, **changes), pictures=Pictures(control=(edges(),)))
    assert_pixels_close(plain.images[0], plain_expected)
    pictures = Pictures(control=(edges(),), control_masks=(top_left(),))
    result = engine.generate(request(models, "zimage", units, **changes), pictures=pictures)
    assert_pixels_close(result.images[0], expected)
    white = Pictures(control=(edges(),), control_masks=(Image.new("L", (9, 9), 255),))
    whole = engine.generate(request(models, "zimage", units, **changes), pictures=white)
    assert np.array_equal(pixels(whole.images[0]), pixels(plain.images[0]))  # all white: as unmasked
