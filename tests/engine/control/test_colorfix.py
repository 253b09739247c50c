"""``tile_colorfix`` and ``tile_colorfix+sharp`` acting while sampling, against sd-webui-controlnet's formula.

The txt2img reference is a denoising loop written here (raw UNet and ControlNet calls, the scheduler's steps): after
each UNet call x0 = √(1/ᾱ)·x_t − √(1/ᾱ − 1)·ε at the rounded timestep, its low frequencies (a box blur of side 2k+1
over a replicate-padded border, written here as a convolution) replaced by those of the picture's VAE latent, for
``+sharp`` the negative half blurred by Threshold B × 0.01, then ε rebuilt from x0 and mixed by the weight. img2img,
inpaint and the hires pass (k doubled) use diffusers' ControlNet pipelines with that formula as a UNet hook.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.paint_modes import box_mask, generators, init_picture, tiny_request
from helpers.pixels import assert_pixels_close, pixels
from helpers.tiny_controlnet import save_folder, tiny_controlnet
from PIL import Image

from jupyter_sd.engine import Engine
from jupyter_sd.engine.conditioning import build_conditioning
from jupyter_sd.engine.pictures import Pictures
from jupyter_sd.engine.schedulers import make_scheduler
from jupyter_sd.recipe.control_units import read_units

SEED = 5


@pytest.fixture(scope="module")
def engine():
    return Engine()


@pytest.fixture(scope="module")
def nets(tiny_model_dir, tmp_path_factory):
    from diffusers import ControlNetModel, StableDiffusionPipeline

    raw = StableDiffusionPipeline.from_pretrained(tiny_model_dir, safety_checker=None)
    raw.set_progress_bar_config(disable=True)
    folder = save_folder(tiny_controlnet(raw.unet, seed=1), tmp_path_factory.mktemp("cn") / "cn_folder")
    net = ControlNetModel.from_pretrained(folder)
    return {"raw": raw, "folder": folder, "net": net, "config": raw.scheduler.config}


def colours(size: int = 32) -> Image.Image:
    """A picture of smooth colour (red across, green down) in 2×2 blocks, so its half-size map is exact."""
    half = size // 2
    y, x = np.mgrid[0:half, 0:half]
    rgb = np.stack([x * 255 // (half - 1), y * 255 // (half - 1), np.full_like(x, 90)], axis=-1).astype(np.uint8)
    return Image.fromarray(rgb).resize((size, size), Image.NEAREST)


def training_alphas() -> torch.Tensor:
    """ᾱ of the tiny model's training schedule (scaled_linear, 0.00085-0.012, 1000 steps)."""
    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=np.float64) ** 2
    return torch.from_numpy(np.cumprod(1.0 - betas)).float()


def box(x: torch.Tensor, k: int) -> torch.Tensor:
    """The mean over a (2k+1)² window, the border repeated: a convolution with a flat kernel, channel by channel."""
    padded = torch.nn.functional.pad(x, (k, k, k, k), mode="replicate")
    side = 2 * k + 1
    kernel = torch.full((x.shape[1], 1, side, side), 1.0 / side**2)
    return torch.nn.functional.conv2d(padded, kernel, groups=x.shape[1])


def picture_latent(vae, picture: Image.Image, seed: int = SEED) -> torch.Tensor:
    """The unit's picture encoded by the VAE (−1..1), sampled with a generator of the seed, scaled."""
    rgb = torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255.0).permute(2, 0, 1)[None] * 2 - 1
    with torch.no_grad():
        dist = vae.encode(rgb).latent_dist
    return dist.sample(torch.Generator("cpu").manual_seed(seed)) * vae.config.scaling_factor


def colour_fixed(eps, x_t, t, hint, k, weight, detail=None, v=False):
    """The extension's post-processing of one UNet output (rows: [negative, positive]); with `v` the output is v."""
    alpha = training_alphas()[int(torch.round(torch.as_tensor(t).float()))]
    recip, recipm1 = (1.0 / alpha).sqrt(), (1.0 / alpha - 1).sqrt()
    if v:  # x_t = √ᾱ·x0 + √(1−ᾱ)·ε and v = √ᾱ·ε − √(1−ᾱ)·x0
        x0 = alpha.sqrt() * x_t - (1 - alpha).sqrt() * eps
    else:
        x0 = recip * x_t - recipm1 * eps
    x0 = x0 - box(x0, k) + box(hint.expand_as(x0), k)
    if detail is not None:
        negative = detail * box(x0, k) + (1 - detail) * x0
        mark = torch.tensor([0.0, 1.0]).view(2, 1, 1, 1)  # 1: the positive prompt's row
        x0 = mark * x0 + (1 - mark) * negative
    rebuilt = (alpha.sqrt() * x_t - x0) / (1 - alpha).sqrt() if v else (recip * x_t - x0) / recipm1
    w = min(1.0, max(0.0, weight))
    return rebuilt * w + eps * (1 - w)


def reference_loop(nets, picture, weight, k=None, detail=None, steps=4, size=32, v=False):
    """txt2img with one unit, the loop written out: ControlNet, UNet, the colour fix (k None: none), CFG 7, step."""
    raw, net = nets["raw"], nets["net"]
    scheduler = make_scheduler("DPM++ 2M", "Automatic", nets["config"])
    scheduler.set_timesteps(steps)
    embeds = build_conditioning(raw, "a red circle", "", steps).pipeline_kwargs()
    text = torch.cat([embeds["negative_prompt_embeds"], embeds["prompt_embeds"]])
    control = torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    hint = picture_latent(raw.vae, picture)
    shape = (1, 4, size // 2, size // 2)
    latents = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(SEED)) * scheduler.init_noise_sigma
    with torch.no_grad():
        for t in scheduler.timesteps:
            x = scheduler.scale_model_input(torch.cat([latents] * 2), t)
            down, mid = net(x, t, text, torch.cat([control] * 2), conditioning_scale=weight, return_dict=False)
            eps = raw.unet(x, t, text, down_block_additional_residuals=down, mid_block_additional_residual=mid).sample
            if k is not None:
                eps = colour_fixed(eps, x, t, hint, k, weight, detail, v)
            negative, positive = eps.chunk(2)
            latents = scheduler.step(negative + 7.0 * (positive - negative), t, latents).prev_sample
        image = raw.vae.decode(latents / raw.vae.config.scaling_factor).sample
    array = ((image[0] / 2 + 0.5).clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    return Image.fromarray(array)


def paint(engine, tiny_model_dir, module, picture, init_image=None, mask_image=None, **options):
    values = {key: options.pop(key) for key in ("weight", "threshold_a", "threshold_b") if key in options}
    units = read_units([{"module": module, "model": str(options.pop("folder")), **values}])
    request = tiny_request(tiny_model_dir, sampler="DPM++ 2M", controlnet=units, **{"steps": 4, **options})
    return engine.generate(request, pictures=Pictures(init_image, mask_image, control=(picture,)))


def test_colorfix_equals_the_extensions_formula(engine, nets, tiny_model_dir):
    expected = reference_loop(nets, colours(), 0.8, k=3)
    options = {"folder": nets["folder"], "weight": 0.8, "threshold_a": 3, "width": 32, "height": 32}
    result = paint(engine, tiny_model_dir, "tile_colorfix", colours(), **options)
    assert_pixels_close(result.images[0], expected)
    plain = reference_loop(nets, colours(), 0.8)
    assert np.abs(pixels(expected) - pixels(plain)).max() > 10  # the colour fix changes the picture
    assert "Module: tile_colorfix, " in result.params["ControlNet 0"]
    assert "Threshold A: 3, " in result.params["ControlNet 0"]


def test_colorfix_sharp_blurs_the_negative_half(engine, nets, tiny_model_dir):
    expected = reference_loop(nets, colours(), 1.0, k=4, detail=0.02)
    options = {"folder": nets["folder"], "weight": 1.0, "threshold_a": 4, "threshold_b": 2, "width": 32, "height": 32}
    result = paint(engine, tiny_model_dir, "tile_colorfix+sharp", colours(), **options)
    assert_pixels_close(result.images[0], expected)
    unsharp = reference_loop(nets, colours(), 1.0, k=4)
    assert np.abs(pixels(expected) - pixels(unsharp)).max() > 1  # the sharpness term shows


def test_tile_resample_is_the_plain_controlnet_picture(engine, nets, tiny_model_dir):
    from diffusers import StableDiffusionControlNetPipeline

    expected = reference_loop(nets, colours(), 0.8)
    pipe = StableDiffusionControlNetPipeline(**nets["raw"].components, controlnet=nets["net"])
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = make_scheduler("DPM++ 2M", "Automatic", nets["config"])
    embeds = build_conditioning(nets["raw"], "a red circle", "", 4).pipeline_kwargs()
    call = {"num_inference_steps": 4, "guidance_scale": 7.0, "generator": generators([SEED]), "width": 32}
    diffusers = pipe(**embeds, **call, height=32, image=colours(), controlnet_conditioning_scale=0.8).images[0]
    assert_pixels_close(expected, diffusers)  # the loop above is diffusers' ControlNet pipeline
    options = {"folder": nets["folder"], "weight": 0.8, "threshold_a": 1, "width": 32, "height": 32}
    result = paint(engine, tiny_model_dir, "tile_resample", colours(), **options)
    assert_pixels_close(result.images[0], expected)


def hooked(hint, k, weight):
    """The same post-processing as a forward hook on the UNet of diffusers' own pipelines."""

    def hook(module, args, kwargs, output):
        sample, t = args[0], args[1]
        return (colour_fixed(output[0], sample[:, :4], t, hint, k, weight),)

    return hook


def pipeline(nets, kind):
    from diffusers import (
        StableDiffusionControlNetImg2ImgPipeline,
        StableDiffusionControlNetInpaintPipeline,
        StableDiffusionControlNetPipeline,
    )

    classes = {
        "txt2img": StableDiffusionControlNetPipeline,
        "img2img": StableDiffusionControlNetImg2ImgPipeline,
        "inpaint": StableDiffusionControlNetInpaintPipeline,
    }
    pipe = classes[kind](**nets["raw"].components, controlnet=nets["net"])
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = make_scheduler("DPM++ 2M", "Automatic", nets["config"])
    return pipe


def with_hook(nets, hint, k, weight, run):
    """`run()` with the colour fix on the raw UNet's calls."""
    handle = nets["raw"].unet.register_forward_hook(hooked(hint, k, weight), with_kwargs=True)
    try:
        return run()
    finally:
        handle.remove()


def test_img2img_and_inpaint_fix_every_call_as_the_extension(engine, nets, tiny_model_dir):
    init, mask, hint = init_picture(32), box_mask(32, (6, 6, 24, 24)), picture_latent(nets["raw"].vae, colours())
    embeds = build_conditioning(nets["raw"], "a red circle", "", 6).pipeline_kwargs()
    # A1111's strength 0.8 at 6 steps: t_enc = 4, 5 steps from level 1 = diffusers' strength 0.85
    call = {"num_inference_steps": 6, "guidance_scale": 7.0, "strength": 0.85, "controlnet_conditioning_scale": 0.9}
    call.update(image=init, control_image=colours(), height=32, width=32)

    def img2img():
        return pipeline(nets, "img2img")(**embeds, **call, generator=generators([SEED])).images[0]

    expected = with_hook(nets, hint, 5, 0.9, img2img)
    options = {"folder": nets["folder"], "weight": 0.9, "threshold_a": 5, "width": 32, "height": 32, "steps": 6}
    result = paint(engine, tiny_model_dir, "tile_colorfix", colours(), init, init="x", strength=0.8, **options)
    assert_pixels_close(result.images[0], expected)
    assert np.abs(pixels(expected) - pixels(img2img())).max() > 5  # without the fix: another picture

    def inpaint():
        return pipeline(nets, "inpaint")(**embeds, **call, mask_image=mask, generator=generators([SEED])).images[0]

    expected = Image.composite(with_hook(nets, hint, 5, 0.9, inpaint), init, mask)
    options.update(init="x", mask="m", strength=0.8, mask_blur=0)
    result = paint(engine, tiny_model_dir, "tile_colorfix", colours(), init, mask, **options)
    assert_pixels_close(result.images[0], expected)


def test_hires_pass_doubles_the_variation(engine, nets, tiny_model_dir):
    """6 steps at 16×16 with k = 3 and the picture at 16×16, a bilinear ×2, then 4 of 8 at 32×32 with k = 6."""
    embeds = build_conditioning(nets["raw"], "a red circle", "", 6).pipeline_kwargs()
    big = colours(32)
    small = big.resize((16, 16), Image.NEAREST)  # its 2×2 blocks: the map the first pass fits
    vae = nets["raw"].vae

    def first():
        call = {"num_inference_steps": 6, "guidance_scale": 7.0, "generator": generators([SEED])}
        call.update(width=16, height=16, image=small, output_type="latent")
        return pipeline(nets, "txt2img")(**embeds, **call).images

    latents = with_hook(nets, picture_latent(vae, small), 3, 1.0, first)
    enlarged = torch.nn.functional.interpolate(latents, size=(16, 16), mode="bilinear", antialias=False)

    def second(k):
        call = {"num_inference_steps": 8, "strength": 0.5, "guidance_scale": 7.0, "generator": generators([SEED])}
        call.update(control_image=big, controlnet_conditioning_scale=1.0, height=32, width=32)
        run = lambda: pipeline(nets, "img2img")(**embeds, image=enlarged, **call).images[0]  # noqa: E731
        return with_hook(nets, picture_latent(vae, big), k, 1.0, run)

    expected = second(6)
    units = read_units([{"module": "tile_colorfix", "model": str(nets["folder"]), "threshold_a": 3}])
    hires = {"hires": 2, "hires_steps": 4, "hires_denoise": 0.5, "width": 16, "height": 16}
    request = tiny_request(tiny_model_dir, sampler="DPM++ 2M", controlnet=units, **hires)
    result = engine.generate(request, pictures=Pictures(control=(big,)))
    assert_pixels_close(result.images[0], expected)
    assert np.abs(pixels(expected) - pixels(second(3))).max() > 2  # k not doubled: another picture


def test_a_v_prediction_model_takes_x0_from_v(engine, nets, tiny_model_dir, tmp_path):
    """The extension reads every output as ε; a v-prediction model's v gives x0 = √ᾱ·x_t − √(1−ᾱ)·v here."""
    import json
    import shutil

    from diffusers import StableDiffusionPipeline

    model = shutil.copytree(tiny_model_dir, tmp_path / "tiny-v")
    config_file = model / "scheduler" / "scheduler_config.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), "prediction_type": "v_prediction"}))
    raw = StableDiffusionPipeline.from_pretrained(model, safety_checker=None)
    v_nets = {**nets, "raw": raw, "config": raw.scheduler.config}
    expected = reference_loop(v_nets, colours(), 0.8, k=3, v=True)
    options = {"folder": nets["folder"], "weight": 0.8, "threshold_a": 3, "width": 32, "height": 32}
    result = paint(engine, model, "tile_colorfix", colours(), **options)
    assert_pixels_close(result.images[0], expected)
    as_eps = reference_loop(v_nets, colours(), 0.8, k=3, v=False)  # the extension's reading of v as ε
    assert np.abs(pixels(expected) - pixels(as_eps)).max() > 5


def test_sdxl_colorfix_equals_the_formula(engine, tmp_path):
    from diffusers import StableDiffusionXLControlNetPipeline, StableDiffusionXLPipeline
    from helpers.tiny_sdxl import make_tiny_sdxl

    model = make_tiny_sdxl(tmp_path / "sdxl")
    raw = StableDiffusionXLPipeline.from_pretrained(model)
    folder = save_folder(tiny_controlnet(raw.unet, seed=4), tmp_path / "cn_xl")
    xl_nets = {"raw": raw, "folder": folder, "config": dict(raw.scheduler.config)}
    from diffusers import ControlNetModel

    xl_nets["net"] = ControlNetModel.from_pretrained(folder)
    pipe = StableDiffusionXLControlNetPipeline(**raw.components, controlnet=xl_nets["net"])
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = make_scheduler("DPM++ 2M", "Automatic", xl_nets["config"])
    embeds = build_conditioning(raw, "a red circle", "", 4).pipeline_kwargs()
    call = {"num_inference_steps": 4, "guidance_scale": 7.0, "width": 32, "height": 32, "image": colours()}
    call["controlnet_conditioning_scale"] = 0.7

    def run():
        return pipe(**embeds, **call, generator=generators([1])).images[0]

    expected = with_hook(xl_nets, picture_latent(raw.vae, colours(), seed=1), 4, 0.7, run)
    units = read_units([{"module": "tile_colorfix", "model": str(folder), "weight": 0.7, "threshold_a": 4}])
    request = tiny_request(model, steps=4, seed=1, width=32, height=32, sampler="DPM++ 2M", controlnet=units)
    result = engine.generate(request, pictures=Pictures(control=(colours(),)))
    assert_pixels_close(result.images[0], expected)
    assert np.abs(pixels(expected) - pixels(run())).max() > 5  # without the fix: another picture
