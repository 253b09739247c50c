"""SD3's hires pass and Z-Image's img2img with a ControlNet unit (masked too), and unit numbers per pass.

diffusers paints both from noise only; the engine composes them from the init (control/flow_init.py). The references
are diffusers' own ControlNet pipelines, loaded here, given the start latents and the schedule's tail made by formula
(helpers/flow_init_refs.py): for the hires pass, the first pass's latents upscaled ×2 (bilinear) and noised to the
level where its denoise starts. A unit's number is its position among all units, the ones a pass skips counted.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.flow_init_refs import block_map, edges, encoded, first_level, noised, raw
from helpers.paint_modes import generators, init_picture
from helpers.pixels import assert_pixels_close, pixels
from helpers.tiny_families import make_tiny_zimage
from helpers.tiny_flow import make_tiny_sd3
from helpers.tiny_flow_controlnet import tiny_sd3_controlnet, tiny_zimage_controlnet
from PIL import Image

from jupyter_sd import library
from jupyter_sd.engine import Engine, Progress
from jupyter_sd.engine.pictures import Pictures
from jupyter_sd.recipe.control_units import infotext_units, read_units
from jupyter_sd.recipe.request import PaintRequest

PROMPT = "a red circle"
INIT = init_picture(32)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Tiny SD3 and Z-Image folders; an SD3 and a Z-Image (ordinary: map channels = latent channels) ControlNet."""
    root = tmp_path_factory.mktemp("flow-hires")
    folder = root / "models" / "ControlNet"
    folder.mkdir(parents=True)
    tiny_sd3_controlnet(seed=5).save_pretrained(folder / "sd3_cn")
    tiny_zimage_controlnet(seed=9).save_pretrained(folder / "zimage_cn")
    library.set_models_dir(root / "models")
    yield {"sd3": make_tiny_sd3(root / "sd3", layers=2), "zimage": make_tiny_zimage(root / "zimage"), "cn": folder}
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

    cls = {"sd3": "SD3ControlNetModel", "zimage": "ZImageControlNetModel"}
    return getattr(diffusers, cls[family]).from_pretrained(models["cn"] / name)


class Labels(Progress):
    """Keeps the labels of every pass's detected maps."""

    def __init__(self) -> None:
        self.passes: list[list[str]] = []

    def detected(self, maps, labels):
        self.passes.append(list(labels))


def test_an_sd3_unit_in_the_hires_pass_equals_diffusers_by_hand(engine, models):
    """Hr Option Both: the ControlNet txt2img at 16 px to latents, bilinear ×2, then the same ControlNet pipeline
    from those latents noised to the third of 4 levels (2 hires steps at denoise 0.5), its map at 32 px."""
    pipe = raw(models["sd3"], "sd3", "StableDiffusion3ControlNetPipeline", net(models, "sd3", "sd3_cn"))
    call = dict(guidance_scale=7.0, controlnet_conditioning_scale=0.9)
    torch.manual_seed(5)  # (SD3 samples the map's latents from torch's generator, as the engine seeds it each pass)
    small = pipe(PROMPT, num_inference_steps=4, width=16, height=16, control_image=block_map(16), output_type="latent",
                 **call, generator=generators([5])).images  # fmt: skip
    x0 = torch.nn.functional.interpolate(small, scale_factor=2, mode="bilinear")
    noise = torch.randn(x0.shape, generator=torch.Generator("cpu").manual_seed(5))
    fresh = type(pipe.scheduler).from_config(pipe.scheduler.config)
    tail = np.linspace(fresh.sigma_max, fresh.sigma_min, 4)[2:]  # the pipeline's 4 levels, unshifted: the last 2
    torch.manual_seed(5)
    start = noised(x0, noise, first_level(pipe, tail))
    expected = pipe(PROMPT, latents=start, sigmas=list(tail), width=32, height=32, control_image=block_map(32), **call,
                    generator=generators([5])).images[0]  # fmt: skip
    hires = dict(width=16, height=16, hires=2, hires_steps=2, hires_denoise=0.5, steps=4, guidance=7.0)
    units = [unit("sd3_cn", weight=0.9)]
    painted = engine.generate(request(models, "sd3", units, **hires), pictures=Pictures(control=(block_map(32),)))
    assert painted.images[0].size == (32, 32)
    assert_pixels_close(painted.images[0], expected)
    plain = engine.generate(request(models, "sd3", [], **hires))
    assert np.abs(pixels(plain.images[0]) - pixels(expected)).max() > 5  # the unit paints: the test can fail
    assert "Hr Option: Both" in painted.infotext(0)


def zimage_region_hook(mask):
    """A Z-Image ControlNet's residuals: the image's rows (its latents' 2×2 patches, first in the sequence) times the
    mask's red channel / 255 brought bilinearly to that grid; the caption's rows as they are."""
    red = torch.from_numpy(np.asarray(mask, dtype=np.float32)[:, :, 0] / 255.0)[None, None]

    def hook(module, args, kwargs, output):
        rows, cols = (n // 2 for n in args[0][0].shape[-2:])  # x: latents (C, F, H, W), patch size 2
        grid = torch.nn.functional.interpolate(red, size=(rows, cols), mode="bilinear").reshape(1, rows * cols, 1)
        n = rows * cols
        return {k: torch.cat([v[:, :n] * grid, v[:, n:]], dim=1) for k, v in output.items()}

    return hook


def left_column(size: int = 8) -> Image.Image:
    """A region mask of another size: white in its left quarter, a dark grey elsewhere."""
    mask = Image.new("RGB", (size, size), (40, 40, 40))
    mask.paste((255, 255, 255), (0, 0, size // 4, size))
    return mask


@pytest.mark.parametrize("masked", [False, True])
def test_an_ordinary_zimage_unit_in_img2img_equals_its_controlnet_pipeline_started_from_the_init(
    engine, models, masked
):
    """Denoise 0.6 of 6 steps runs the last 4 levels, from the init noised to the first of them (Z-Image's map goes
    through the VAE's mode, so the generator draws x0, then the noise). Masked: the unit's effective region mask on
    the image's tokens, by the hook written here."""
    controlnet = net(models, "zimage", "zimage_cn")
    pipe = raw(models["zimage"], "zimage", "ZImageControlNetPipeline", controlnet)
    seeded = torch.Generator("cpu").manual_seed(5)
    x0 = encoded(pipe, INIT, seeded)
    noise = torch.randn(x0.shape, generator=seeded)
    tail = torch.linspace(1.0, 1 / 6, 6)[2:].tolist()
    handle = controlnet.register_forward_hook(zimage_region_hook(left_column()), with_kwargs=True) if masked else None
    try:
        expected = pipe(
            PROMPT, control_image=edges(), controlnet_conditioning_scale=0.9, width=32, height=32, guidance_scale=0.0,
            latents=noised(x0, noise, first_level(pipe, tail)), sigmas=tail, generator=generators([5]),
        ).images[0]  # fmt: skip
    finally:
        if handle is not None:
            handle.remove()
    changes = dict(init="x", strength=0.6, guidance=1.0)
    units = [unit("zimage_cn", weight=0.9)]
    regions = (left_column(),) if masked else ()
    pictures = Pictures(INIT, control=(edges(),), control_masks=regions)
    result = engine.generate(request(models, "zimage", units, **changes), pictures=pictures)
    assert_pixels_close(result.images[0], expected)
    other = [] if not masked else units  # unmasked: no unit; masked: the unit without its mask
    plain = engine.generate(request(models, "zimage", other, **changes), pictures=Pictures(INIT, control=(edges(),)))
    assert np.abs(pixels(plain.images[0]) - pixels(expected)).max() > 3


def test_units_are_numbered_by_their_place_among_all_units_in_each_pass(engine, models):
    """Unit 0 paints the first pass only, unit 1 the hires pass only: the hires pass's map is ControlNet 1's, and the
    infotext numbers both as given."""
    units = [
        unit("sd3_cn", weight=0.5, hr_option="Low res only"),
        unit("sd3_cn", weight=0.9, hr_option="High res only"),
    ]
    hires = dict(width=16, height=16, hires=2, hires_steps=1, hires_denoise=0.5, steps=1, guidance=7.0)
    seen = Labels()
    result = engine.generate(
        request(models, "sd3", units, **hires), seen, pictures=Pictures(control=(block_map(32), edges()))
    )
    assert seen.passes == [["ControlNet 0 · none"], ["ControlNet 1 · none"]]
    written = {n: (u.weight, u.hr_option) for n, u in infotext_units(result.params).items()}
    assert written == {0: (0.5, "Low res only"), 1: (0.9, "High res only")}
