"""img2img and inpainting through Engine.generate, against raw diffusers, and A1111's resize modes on the pixels.

References are plain diffusers pipelines loaded separately in the test, compared within 1/255; the resize, paste-back
and crop rules are checked on the pixels themselves (the picture handed to the pipeline, and the result).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.paint_modes import box_mask, generators, init_picture, raw_pipelines, tiny_request
from helpers.pixels import assert_pixels_close, pixels
from helpers.progress_recorder import Recorder
from PIL import Image, ImageDraw

from jupyter_sd.engine import Engine
from jupyter_sd.engine.mode_pipelines import derived_pipeline
from jupyter_sd.engine.pictures import Pictures, resize_image
from jupyter_sd.engine.schedulers import make_scheduler
from jupyter_sd.recipe.request import PaintRequest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def engine():
    return Engine()


@pytest.fixture(scope="module")
def raw(tiny_model_dir):
    """Plain diffusers pipelines, loaded on their own (not the engine's objects)."""
    return raw_pipelines(tiny_model_dir)


@pytest.mark.parametrize(
    ("sampler", "strength", "steps", "raw_strength", "run"),
    [
        # A1111: t_enc = int(strength × steps), and t_enc + 1 steps run from noise level steps - t_enc - 1.
        # int(0.6 × 6) = 3: 4 steps from level 2, which diffusers runs with strength 0.7 (int(6 × 0.7) = 4)
        ("DPM++ 2M", 0.6, 6, 0.7, 4),
        ("Euler a", 0.6, 6, 0.7, 4),
        # int(0.75 × 8) = 6: 7 steps from level 1 = diffusers' strength 0.875
        ("Euler", 0.75, 8, 0.875, 7),
        # A1111 caps the strength at 0.999: int(0.999 × 6) = 5, all 6 steps from the top
        ("DPM++ 2M", 1.0, 6, 1.0, 6),
        # A1111 takes strength 0 too: t_enc = 0, one step at the lowest noise level (diffusers: int(6 × 0.2) = 1)
        ("DPM++ 2M", 0.0, 6, 0.2, 1),
    ],
)
def test_img2img_runs_a1111s_steps_and_equals_raw_diffusers(
    engine, raw, tiny_model_dir, sampler, strength, steps, raw_strength, run
):
    init = init_picture()
    raw["img2img"].scheduler = make_scheduler(sampler, "Automatic", raw["config"])
    expected = raw["img2img"](
        "a red circle",
        image=init,
        strength=raw_strength,
        num_inference_steps=steps,
        guidance_scale=7.0,
        generator=generators([5]),
    ).images[0]
    recorder = Recorder()
    request = tiny_request(tiny_model_dir, init="pic.png", strength=strength, steps=steps, sampler=sampler)
    result = engine.generate(request, recorder, pictures=Pictures(init))
    assert_pixels_close(result.images[0], expected)
    assert recorder.steps[-1] == (run, run)
    assert result.steps_total == run and (result.request.width, result.request.height) == (16, 16)  # the init's size
    assert f"Steps: {steps}," in result.infotext(0) and f"Denoising strength: {strength:g}" in result.infotext(0)


# -- A1111's three resize modes, on the picture the img2img pipeline is handed ------------------------------------

RESIZE_MODES = ("Just resize", "Crop and resize", "Resize and fill")
STRIPES = [(230, 40, 40), (40, 200, 60), (50, 60, 220), (240, 220, 30)]


def striped_picture(width: int, height: int) -> Image.Image:
    """Four stripes of distinct colours across the long side, and a green ramp along the short one.

    The stripes tell the modes apart (a centre crop keeps only the middle two); the ramp makes the edge rows (or
    columns) that "Resize and fill" stretches differ from their neighbours.
    """
    wide = width >= height
    long_side, short_side = (width, height) if wide else (height, width)
    colours = np.array(STRIPES, np.float64)[np.arange(long_side) * 4 // long_side]
    array = np.broadcast_to(colours[None] if wide else colours[:, None], (height, width, 3)).copy()
    ramp = np.arange(short_side) * 150.0 / short_side
    array[..., 1] = np.clip(array[..., 1] * 0.3 + (ramp[:, None] if wide else ramp[None, :]), 0, 255)
    return Image.fromarray(array.astype(np.uint8))


def a1111_resized(mode: str, picture: Image.Image, width: int, height: int) -> np.ndarray:
    """What A1111's ``modules/images.py: resize_image`` makes of `picture` (no img2img upscaler: Lanczos), by formula.

    Just resize: stretched to the size. Crop and resize: scaled to cover the size (A1111's integer sizes), the middle
    cut out. Resize and fill: scaled to fit, centred, and the uncovered sides filled by stretching the fitted
    picture's edge row (or column) outwards: PIL's default bicubic sampling of a zero-height box at the edge, which
    is 9/8 of the edge row less 1/8 of the row next to it.
    """
    w, h = picture.size
    if mode == "Just resize":
        return pixels(picture.resize((width, height), Image.LANCZOS))
    if mode == "Crop and resize":
        cover = (width, h * width // w) if width / height > w / h else (w * height // h, height)
        covered = pixels(picture.resize(cover, Image.LANCZOS))
        left, top = cover[0] // 2 - width // 2, cover[1] // 2 - height // 2
        return covered[top : top + height, left : left + width]
    fit = (width, h * width // w) if width / height < w / h else (w * height // h, height)
    fitted = pixels(picture.resize(fit, Image.LANCZOS)).astype(np.float64)
    left, top = width // 2 - fit[0] // 2, height // 2 - fit[1] // 2
    out = np.zeros((height, width, 3))
    out[top : top + fit[1], left : left + fit[0]] = fitted
    stretched = lambda edge, inner: np.clip(np.round(1.125 * edge - 0.125 * inner), 0, 255)  # noqa: E731
    if fit[1] < height:  # bands above and below
        out[:top] = stretched(fitted[0], fitted[1])
        out[top + fit[1] :] = stretched(fitted[-1], fitted[-2])
    if fit[0] < width:  # bands left and right
        out[:, :left] = stretched(fitted[:, 0], fitted[:, 1])[:, None]
        out[:, left + fit[0] :] = stretched(fitted[:, -1], fitted[:, -2])[:, None]
    return out.astype(np.int16)


@pytest.mark.parametrize("shape", [(32, 16), (16, 48), (40, 24)], ids=["wide", "tall", "wide-scaled"])
@pytest.mark.parametrize("mode", RESIZE_MODES)
def test_img2img_resize_modes_feed_a1111s_picture(engine, raw, tiny_model_dir, monkeypatch, mode, shape):
    """The init the img2img pipeline receives is A1111's resize of it, and the result is diffusers' img2img of that."""
    picture = striped_picture(*shape)
    expected = a1111_resized(mode, picture, 16, 16)
    assert expected.shape == (16, 16, 3)
    raw["img2img"].scheduler = make_scheduler("DPM++ 2M", "Automatic", raw["config"])
    reference = raw["img2img"](
        "a red circle",
        image=Image.fromarray(expected.astype(np.uint8)),
        strength=0.7,  # A1111's 0.6 at 6 steps (see the test above)
        num_inference_steps=6,
        guidance_scale=7.0,
        generator=generators([5]),
    ).images[0]
    fed = []
    pipeline_class = type(raw["img2img"])  # the class from_pipe gives the engine's img2img pipeline too
    original_call = pipeline_class.__call__

    def spy(self, *args, **kwargs):
        fed.append((self, kwargs.get("image")))
        return original_call(self, *args, **kwargs)

    monkeypatch.setattr(pipeline_class, "__call__", spy)
    request = tiny_request(tiny_model_dir, init="x", width=16, height=16, resize_mode=mode, strength=0.6)
    result = engine.generate(request, pictures=Pictures(picture))
    monkeypatch.undo()
    assert len(fed) == 1
    pipe, image = fed[0]
    assert pipe is derived_pipeline(engine._pipe, "img2img") and isinstance(image, Image.Image)
    assert image.size == (16, 16)
    assert np.array_equal(pixels(image), expected), mode
    assert result.images[0].size == (16, 16)
    assert_pixels_close(result.images[0], reference)


def test_the_resize_modes_differ_as_a1111s_do():
    """On the wide striped picture: a stretch keeps all four stripes, a centre crop only the middle two (exactly,
    no resampling at that height), and a fill puts the squeezed stripes between stretched top and bottom bands."""
    picture = striped_picture(32, 16)
    source = pixels(picture)
    stretch, crop, fill = (a1111_resized(mode, picture, 16, 16) for mode in RESIZE_MODES)
    assert np.array_equal(crop, source[:, 8:24])
    assert {tuple(crop[0, x][[0, 2]]) for x in range(16)} == {(40, 60), (50, 220)}  # red/blue of stripes 1 and 2
    assert np.array_equal(stretch[:, 0, [0, 2]], np.tile([230, 40], (16, 1)))  # stripe 0 at the left edge
    assert np.array_equal(stretch[:, 15, [0, 2]], np.tile([240, 30], (16, 1)))  # stripe 3 at the right edge
    # fill: 32x16 fits as 16x8 at rows 4-11; rows 0-3 repeat one stretched top row, rows 12-15 one bottom row
    assert np.array_equal(fill[4:12], pixels(picture.resize((16, 8), Image.LANCZOS)))
    assert all(np.array_equal(fill[y], fill[0]) for y in range(4)) and not np.array_equal(fill[0], fill[4])
    assert all(np.array_equal(fill[y], fill[15]) for y in range(12, 16)) and not np.array_equal(fill[15], fill[11])
    for mode, array in zip(RESIZE_MODES, (stretch, crop, fill)):
        assert np.array_equal(pixels(resize_image(mode, picture, 16, 16)), array), mode


# -- inpainting ---------------------------------------------------------------------------------------------------


def test_inpaint_equals_raw_diffusers_and_keeps_the_rest(engine, raw, tiny_model_dir):
    """Inside the mask: diffusers' inpaint pixels; outside: the init's own (blur 0: the paste-back is the mask)."""
    init, mask = init_picture(), box_mask(16, (4, 4, 12, 12))
    raw["inpaint"].scheduler = make_scheduler("DPM++ 2M", "Automatic", raw["config"])
    painted = raw["inpaint"](
        "a red circle",
        image=init,
        mask_image=mask,
        strength=0.85,  # A1111's strength 0.8 at 6 steps: t_enc = 4, so 5 steps from level 1 (int(6 × 0.85) = 5)
        num_inference_steps=6,
        guidance_scale=7.0,
        height=16,
        width=16,
        generator=generators([5]),
    ).images[0]
    expected = Image.composite(painted, init, mask)
    request = tiny_request(tiny_model_dir, init="x", mask="m", strength=0.8, mask_blur=0)
    result = engine.generate(request, pictures=Pictures(init, mask))
    assert_pixels_close(result.images[0], expected)
    outside = np.asarray(mask) == 0
    assert np.array_equal(pixels(result.images[0])[outside], pixels(init)[outside])
    assert not np.array_equal(pixels(result.images[0]), pixels(init))


def test_inpaint_blur_keeps_pixels_beyond_the_blur(engine, tiny_model_dir):
    init, mask = init_picture(64), box_mask(64, (24, 24, 40, 40))
    request = tiny_request(tiny_model_dir, init="x", mask="m", strength=1.0, mask_blur=4, n=2, steps=3)
    result = engine.generate(request, pictures=Pictures(init, mask))
    reach = int(2.5 * 4 + 0.5)  # the Gaussian kernel's half width
    far = np.ones((64, 64), bool)
    far[24 - reach : 40 + reach, 24 - reach : 40 + reach] = False
    for image in result.images:
        assert np.array_equal(pixels(image)[far], pixels(init)[far])
        assert np.abs(pixels(image)[28:36, 28:36] - pixels(init)[28:36, 28:36]).max() > 0
    assert "Mask blur: 4" in result.infotext(0)


def test_only_masked_crops_paints_and_pastes_back(engine, tiny_model_dir):
    init, mask = init_picture(64), box_mask(64, (40, 8, 48, 16))
    request = tiny_request(tiny_model_dir, init="x", mask="m", width=16, height=16, inpaint_area="masked", padding=4)
    result = engine.generate(request, pictures=Pictures(init, mask), progress=Recorder())
    image = result.images[0]
    assert image.size == (64, 64)  # the init's size, though 16x16 was painted
    reach = int(2.5 * 4 + 0.5)  # the blur's half width: the paste-back mask ends there
    region = np.zeros((64, 64), bool)
    region[max(8 - reach, 0) : 16 + reach, 40 - reach : 48 + reach] = True
    assert np.array_equal(pixels(image)[~region], pixels(init)[~region])
    assert np.abs(pixels(image)[10:14, 42:46] - pixels(init)[10:14, 42:46]).max() > 0
    text = result.infotext(0)
    assert "Size: 16x16" in text and "Inpaint area: Only masked, Masked area padding: 4" in text


@pytest.mark.parametrize("content", ["fill", "latent noise", "latent nothing"])
def test_masked_content_changes_the_start(engine, tiny_model_dir, content):
    init, mask = init_picture(), box_mask(16, (4, 4, 12, 12))
    base = tiny_request(tiny_model_dir, init="x", mask="m", strength=0.5, mask_blur=0, preview="none")
    original = engine.generate(base, pictures=Pictures(init, mask)).images[0]
    other = engine.generate(base.replace(masked_content=content), pictures=Pictures(init, mask)).images[0]
    assert not np.array_equal(pixels(original), pixels(other))
    outside = np.asarray(mask) == 0
    assert np.array_equal(pixels(other)[outside], pixels(init)[outside])


def test_invert_mask_repaints_the_other_part(engine, tiny_model_dir):
    init, mask = init_picture(), box_mask(16, (4, 4, 12, 12))
    request = tiny_request(tiny_model_dir, init="x", mask="m", invert_mask=True, mask_blur=0, preview="none")
    result = engine.generate(request, pictures=Pictures(init, mask))
    inside = np.asarray(mask) > 0
    assert np.array_equal(pixels(result.images[0])[inside], pixels(init)[inside])
    assert "Mask mode: Inpaint not masked" in result.infotext(0)


def test_nine_channel_inpainting_checkpoint(engine, tmp_path):
    """An inpainting UNet (latents + mask + masked-image latents = 9 channels) paints as diffusers' pipeline does."""
    from diffusers import PNDMScheduler, StableDiffusionInpaintPipeline
    from helpers.tiny_pipeline import _tokenizer, tiny_text_encoder, tiny_unet, tiny_vae

    torch.manual_seed(3)
    tokenizer = _tokenizer(tmp_path / "_tok")
    unet = tiny_unet(in_channels=9)
    text_encoder = tiny_text_encoder(tokenizer)
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True)
    folder = tmp_path / "inpainting"
    StableDiffusionInpaintPipeline(
        unet=unet,
        vae=tiny_vae(16),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    ).save_pretrained(folder)
    reference = StableDiffusionInpaintPipeline.from_pretrained(folder, safety_checker=None)
    reference.set_progress_bar_config(disable=True)
    reference.scheduler = make_scheduler("Euler", "Automatic", dict(reference.scheduler.config))
    init, mask = init_picture(), box_mask(16, (4, 4, 12, 12))
    painted = reference(
        "a red circle",
        image=init,
        mask_image=mask,
        strength=1.0,
        num_inference_steps=4,
        guidance_scale=7.0,
        height=16,
        width=16,
        generator=generators([5]),
    ).images[0]
    own = Engine()
    request = tiny_request(folder, init="x", mask="m", strength=1.0, mask_blur=0, steps=4, sampler="Euler")
    result = own.generate(request, pictures=Pictures(init, mask))
    assert own._pipe.unet.config.in_channels == 9
    assert_pixels_close(result.images[0], Image.composite(painted, init, mask))


def _task():
    spec = importlib.util.spec_from_file_location("_train_tiny_model", ROOT / "tools" / "train_tiny_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bundled_model_repaints_the_centre_yellow():
    """Repaint the centre of a red circle on blue as a yellow one: yellow centre, the blue border untouched."""
    task = _task()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        own = Engine()
        base = dict(model="tiny", steps=20, seed=2001, preview="none", save=False, width=64, height=64)
        red = own.generate(PaintRequest(prompt="a red circle on a blue background", **base)).images[0]
        assert task.classify_image(red) == ("red", "blue")
        mask = Image.new("L", (64, 64), 0)
        ImageDraw.Draw(mask).ellipse([14, 14, 50, 50], fill=255)
        request = PaintRequest(prompt="a yellow circle on a blue background", init="x", mask="m", strength=1.0, **base)
        result = own.generate(request, pictures=Pictures(red, mask))
    finally:
        torch.set_num_threads(threads)
    image = result.images[0]
    assert task.classify_image(image) == ("yellow", "blue")
    border = np.ones((64, 64), bool)
    border[4:60, 4:60] = False
    assert np.array_equal(pixels(image)[border], pixels(red)[border])
