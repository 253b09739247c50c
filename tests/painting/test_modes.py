"""img2img, inpainting and the hires fix against raw diffusers, and what the user sees of them.

References are plain diffusers pipelines loaded separately in the test (or, for the hires fix, built from plain
diffusers calls), compared within 1/255; the paste-back and crop rules are checked on the pixels themselves.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.ipython_shell import run
from helpers.pixels import assert_pixels_close, pixels
from helpers.progress_recorder import Recorder
from PIL import Image, ImageDraw

from jupyter_sd.engine import Engine
from jupyter_sd.engine.modes import derived_pipeline
from jupyter_sd.engine.pictures import Pictures
from jupyter_sd.engine.schedulers import make_scheduler
from jupyter_sd.recipe.a1111 import request_from_infotext
from jupyter_sd.recipe.request import PaintRequest

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "jupyter_sd" / "models" / "tiny"


@pytest.fixture(scope="module")
def engine():
    return Engine()


@pytest.fixture(scope="module")
def raw(tiny_model_dir):
    """Plain diffusers pipelines, loaded on their own (not the engine's objects)."""
    from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting, StableDiffusionPipeline

    txt2img = StableDiffusionPipeline.from_pretrained(tiny_model_dir, safety_checker=None)
    pipes = {
        "txt2img": txt2img,
        "img2img": AutoPipelineForImage2Image.from_pretrained(tiny_model_dir, safety_checker=None),
        "inpaint": AutoPipelineForInpainting.from_pretrained(tiny_model_dir, safety_checker=None),
        "config": dict(txt2img.scheduler.config),
    }
    for name in ("txt2img", "img2img", "inpaint"):
        pipes[name].set_progress_bar_config(disable=True)
    return pipes


def _gens(seeds):
    return [torch.Generator("cpu").manual_seed(seed) for seed in seeds]


def init_picture(size=16) -> Image.Image:
    """A picture with structure (a disc and a gradient), so img2img has something to keep."""
    x = np.linspace(0, 255, size, dtype=np.float32)
    array = np.stack([np.tile(x, (size, 1)), np.tile(x[:, None], (1, size)), np.full((size, size), 90.0)], -1)
    image = Image.fromarray(array.astype(np.uint8))
    ImageDraw.Draw(image).ellipse([size // 4, size // 4, 3 * size // 4, 3 * size // 4], fill=(200, 30, 40))
    return image


def box_mask(size, box) -> Image.Image:
    mask = Image.new("L", (size, size), 0)
    mask.paste(255, box)
    return mask


def _request(tiny_model_dir, **options):
    base = dict(prompt="a red circle", model=str(tiny_model_dir), steps=6, seed=5, preview_interval=0, save=False)
    return PaintRequest(**{**base, **options})


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
        generator=_gens([5]),
    ).images[0]
    recorder = Recorder()
    request = _request(tiny_model_dir, init="pic.png", strength=strength, steps=steps, sampler=sampler)
    result = engine.generate(request, recorder, pictures=Pictures(init))
    assert_pixels_close(result.images[0], expected)
    assert recorder.steps[-1] == (run, run)
    assert result.steps_total == run and (result.request.width, result.request.height) == (16, 16)  # the init's size
    assert f"Steps: {steps}," in result.infotext(0) and f"Denoising strength: {strength:g}" in result.infotext(0)


def test_img2img_resize_modes_fit_the_size(engine, tiny_model_dir):
    wide = init_picture(32).resize((32, 16))
    for mode in ("Just resize", "Crop and resize", "Resize and fill"):
        request = _request(tiny_model_dir, init="x", width=16, height=16, resize_mode=mode, steps=2, preview="none")
        assert engine.generate(request, pictures=Pictures(wide)).images[0].size == (16, 16), mode


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
        generator=_gens([5]),
    ).images[0]
    expected = Image.composite(painted, init, mask)
    request = _request(tiny_model_dir, init="x", mask="m", strength=0.8, mask_blur=0)
    result = engine.generate(request, pictures=Pictures(init, mask))
    assert_pixels_close(result.images[0], expected)
    outside = np.asarray(mask) == 0
    assert np.array_equal(pixels(result.images[0])[outside], pixels(init)[outside])
    assert not np.array_equal(pixels(result.images[0]), pixels(init))


def test_inpaint_blur_keeps_pixels_beyond_the_blur(engine, tiny_model_dir):
    init, mask = init_picture(64), box_mask(64, (24, 24, 40, 40))
    request = _request(tiny_model_dir, init="x", mask="m", strength=1.0, mask_blur=4, n=2, steps=3)
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
    request = _request(tiny_model_dir, init="x", mask="m", width=16, height=16, inpaint_area="masked", padding=4)
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
    base = _request(tiny_model_dir, init="x", mask="m", strength=0.5, mask_blur=0, preview="none")
    original = engine.generate(base, pictures=Pictures(init, mask)).images[0]
    other = engine.generate(base.replace(masked_content=content), pictures=Pictures(init, mask)).images[0]
    assert not np.array_equal(pixels(original), pixels(other))
    outside = np.asarray(mask) == 0
    assert np.array_equal(pixels(other)[outside], pixels(init)[outside])


def test_invert_mask_repaints_the_other_part(engine, tiny_model_dir):
    init, mask = init_picture(), box_mask(16, (4, 4, 12, 12))
    request = _request(tiny_model_dir, init="x", mask="m", invert_mask=True, mask_blur=0, preview="none")
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
        generator=_gens([5]),
    ).images[0]
    own = Engine()
    request = _request(folder, init="x", mask="m", strength=1.0, mask_blur=0, steps=4, sampler="Euler")
    result = own.generate(request, pictures=Pictures(init, mask))
    assert own._pipe.unet.config.in_channels == 9
    assert_pixels_close(result.images[0], Image.composite(painted, init, mask))


def raw_hires(raw, seeds, hires_sampler="DPM++ 2M", hires_schedule="Automatic", hires_guidance=7.0):
    """Plain diffusers' A1111 hires fix: DPM++ 2M txt2img at 16×16 (6 steps, CFG 7) to latents → bilinear ×2 →
    img2img from fresh generators of the same seeds, 4 of int(4 / 0.5) = 8 scheduled steps."""
    raw["txt2img"].scheduler = make_scheduler("DPM++ 2M", "Automatic", raw["config"])
    latents = raw["txt2img"](
        "a red circle",
        num_inference_steps=6,
        guidance_scale=7.0,
        width=16,
        height=16,
        num_images_per_prompt=len(seeds),
        generator=_gens(seeds),
        output_type="latent",
    ).images
    big = torch.nn.functional.interpolate(latents, size=(16, 16), mode="bilinear", antialias=False)
    raw["img2img"].scheduler = make_scheduler(hires_sampler, hires_schedule, raw["config"])
    return raw["img2img"](
        "a red circle",
        image=big,
        strength=0.5,
        num_inference_steps=int(4 / min(0.5, 0.999)),  # 8 steps scheduled, int(8 × 0.5) = 4 run
        guidance_scale=hires_guidance,
        num_images_per_prompt=len(seeds),
        generator=_gens(seeds),
    ).images


def test_hires_equals_plain_diffusers_reference(engine, raw, tiny_model_dir):
    """txt2img to latents → interpolate ×2 → img2img from fresh generators of the same seeds (A1111's hires fix)."""
    expected = raw_hires(raw, [5, 6])
    recorder = Recorder()
    request = _request(tiny_model_dir, seed=5, n=2, width=16, height=16, hires=2, hires_steps=4, hires_denoise=0.5)
    result = engine.generate(request, recorder)
    assert [image.size for image in result.images] == [(32, 32), (32, 32)]  # the size doubles
    for ours, theirs in zip(result.images, expected):
        assert_pixels_close(ours, theirs)
    assert recorder.phases == [("txt2img", 0, 2, 6), ("hires", 1, 2, 4)]
    assert recorder.steps[-1] == (4, 4) and result.steps_total == 10
    text = result.infotext(1)
    assert "Seed: 6, Size: 16x16" in text  # Size stays the first pass's
    assert "Denoising strength: 0.5, Hires upscale: 2, Hires steps: 4, Hires upscaler: Latent" in text


def test_hires_runs_exactly_the_hires_steps(engine, tiny_model_dir):
    """A1111 runs `hires_steps` of int(hires_steps / denoise) (its t_enc + 1), even where int(N·denoise) rounds down."""
    recorder = Recorder()
    request = _request(
        tiny_model_dir, steps=2, width=16, height=16, hires=1.5, hires_steps=10, hires_denoise=0.7, preview="none"
    )
    result = engine.generate(request, recorder)
    assert recorder.phases[-1] == ("hires", 1, 2, 10) and recorder.steps[-1] == (10, 10)
    assert result.images[0].size == (24, 24)


@pytest.mark.parametrize("upscaler", ["Lanczos", "Nearest", "Latent (nearest-exact)", "Latent (bicubic antialiased)"])
def test_hires_upscalers_and_resize(engine, tiny_model_dir, upscaler):
    request = _request(
        tiny_model_dir,
        steps=2,
        width=16,
        height=16,
        hires_size="32x24",
        hires_upscaler=upscaler,
        hires_sampler="Euler a",
        hires_prompt="a blue fox",
        preview="none",
    )
    result = engine.generate(request)
    assert result.images[0].size == (32, 24)  # covered at 32x32, then cropped to the asked size as A1111
    text = result.infotext(0)
    # A1111 v1.10's order, as its PNGs carry it (infotext.A1111_ORDER)
    assert f"Hires prompt: a blue fox, Hires resize: 32x24, Hires upscaler: {upscaler}, Hires sampler: Euler a" in text


def test_modes_share_the_loaded_components(engine, tiny_model_dir):
    request = _request(tiny_model_dir, steps=2, preview="none")
    engine.generate(request)
    key, loads, pipe = engine._key, engine.load_count, engine._pipe
    engine.generate(request.replace(init="x", strength=0.5), pictures=Pictures(init_picture()))
    engine.generate(request.replace(init="x", mask="m"), pictures=Pictures(init_picture(), box_mask(16, (4, 4, 8, 8))))
    engine.generate(request.replace(hires=2))
    assert engine.load_count == loads and engine._key == key and engine._pipe is pipe
    for kind in ("img2img", "inpaint"):
        derived = derived_pipeline(pipe, kind)
        assert derived.unet is pipe.unet and derived.vae is pipe.vae and derived.text_encoder is pipe.text_encoder


@pytest.mark.parametrize(
    ("options", "stop_at", "size", "label"),
    [
        (dict(hires=2, hires_steps=6), 2, (16, 16), "txt2img"),
        (dict(hires=2, hires_steps=6), 9, (32, 32), "hires"),
        (dict(init="x", strength=1.0), 2, (16, 16), "img2img"),
        (dict(init="x", mask="m", strength=1.0, mask_blur=0), 2, (16, 16), "inpaint"),
    ],
)
def test_stop_in_each_pass_keeps_its_last_x0(engine, tiny_model_dir, options, stop_at, size, label):
    event = threading.Event()
    recorder = Recorder(stop_at=stop_at, event=event, total=True)
    mask = box_mask(16, (4, 4, 12, 12))
    pictures = Pictures(init_picture(), mask if "mask" in options else None) if "init" in options else None
    request = _request(tiny_model_dir, steps=6, width=16, height=16, preview="none", **options)
    result = engine.generate(request, recorder, stop=event, pictures=pictures)
    assert result.stopped_by == "stop" and result.interrupted_at == stop_at + 1
    assert len(result.images) == 1 and result.images[0].size == size and result.complete == 0
    assert recorder.phases[-1][0] == label
    if "mask" in options:
        outside = np.asarray(mask) == 0
        assert np.array_equal(pixels(result.images[0])[outside], pixels(init_picture())[outside])
    after = engine.generate(_request(tiny_model_dir, steps=2, preview="none"))
    assert not after.interrupted


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


# -- the front ends: %%paint options, _ and {name}, files and URLs, one-line refusals ---------------------------------


@pytest.fixture(scope="module")
def http_server(tmp_path_factory):
    """A local HTTP server on 127.0.0.1 serving a folder (404 for anything else)."""
    import functools
    import http.server

    folder = tmp_path_factory.mktemp("served")
    init_picture().save(folder / "init.png")
    (folder / "notes.txt").write_text("not a picture")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_init_from_a_file_and_load_request_reruns_it(shell, tiny_model_dir, tmp_path):
    from jupyter_sd import load_request, paint

    init_picture().save(tmp_path / "start.png")
    options = f"--steps 4 --seed 3 --init {tmp_path / 'start.png'} --strength 0.5 -o {tmp_path / 'out'}"
    cell = f"%%paint --model {tiny_model_dir} {options}\na cat"
    result = run(shell, cell)
    request = load_request(result.paths[0])
    assert request.init == str((tmp_path / "start.png").resolve()) and request.strength == 0.5
    again = paint(**{**request.to_dict(), "save": False}, view=Recorder())
    assert np.array_equal(pixels(again.images[0]), pixels(result.images[0]))
    init_picture(16).transpose(Image.FLIP_LEFT_RIGHT).save(tmp_path / "start.png")
    with pytest.raises(ValueError, match=r"load_request: the init picture .*start.png changed since it was painted"):
        load_request(result.paths[0])


def test_init_from_underscore_variables_and_urls(shell, tiny_model_dir, tmp_path, http_server):
    from jupyter_sd import load_request

    out = tmp_path / "out"
    common = f"--model {tiny_model_dir} --steps 4 --seed 3 -o {out} --strength 0.5"
    first = run(shell, f"%%paint {common} --init {http_server}/init.png\na cat")
    assert first.images[0].size == (16, 16)
    shell.user_ns["_"] = first  # what IPython keeps of the cell's value
    from_last = run(shell, f"%%paint {common} --init _\na cat")
    shell.user_ns["picture"] = first.images[0]
    from_image = run(shell, f"%%paint {common} --init {{picture}}\na cat")
    shell.user_ns["array"] = np.asarray(first.images[0])
    from_array = run(shell, f"%%paint {common} --init {{array}}\na cat")
    shell.user_ns["float_array"] = np.asarray(first.images[0]) / 255.0
    from_floats = run(shell, f"%%paint {common} --init {{float_array}}\na cat")
    for result in (from_image, from_array, from_floats):
        assert np.array_equal(pixels(result.images[0]), pixels(from_last.images[0]))
    assert load_request(from_last.paths[0]).init == str(first.paths[0].resolve())  # _ is a saved picture
    assert from_last.request.init == str(first.paths[0].resolve())  # so "again" repaints from the same picture
    copy = Path(load_request(from_array.paths[0]).init)  # an array is saved beside the pictures once
    assert copy.parent == out and copy.name.startswith("init-")
    assert np.array_equal(pixels(Image.open(copy)), pixels(first.images[0]))


def test_mask_alpha_and_a_mask_of_another_size(shell, tiny_model_dir, tmp_path, capsys):
    rgba = init_picture().convert("RGBA")
    alpha = Image.new("L", (16, 16), 255)
    alpha.paste(0, (4, 4, 12, 12))
    rgba.putalpha(alpha)
    shell.user_ns["rgba"] = rgba
    result = run(
        shell,
        f"%%paint --model {tiny_model_dir} --steps 3 --init {{rgba}} --mask alpha --mask-blur 0 -o {tmp_path}\na cat",
    )
    outside = np.asarray(alpha) == 255
    assert np.array_equal(pixels(result.images[0])[outside], pixels(init_picture())[outside])
    shell.user_ns["start"] = init_picture()
    shell.user_ns["big_mask"] = box_mask(32, (8, 8, 24, 24))
    run(shell, f"%%paint --model {tiny_model_dir} --steps 3 --init {{start}} --mask {{big_mask}} -o {tmp_path}\na cat")
    assert "mask: 32x32 resized to the init's 16x16" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("--init {missing}", "init: no such file '{missing}'"),
        ("--init {unreadable}", "init: could not read '{unreadable}' as a picture"),
        ("--mask {picture}", "mask: needs --init, the picture to repaint"),
        ("--init {picture} --strength 1.5", "strength: must be 0–1 (got 1.5)"),
        ("--init {picture} --denoise -0.1", "strength: must be 0–1 (got -0.1)"),
        ("--hires-size 8192x512", "hires_size: width and height must be 8–4096 (got 8192x512)"),
        ("--size 512x512 --hires 8.5", "hires: must be 0–8 (got 8.5)"),
        ("--size 2048x2048 --hires 2.5", "hires: the hires size must be at most 4096 a side (got 5120x5120)"),
        ("--hires 2 --hires-denoise 0", "hires_denoise: must be above 0 for a hires pass"),
        ("--init {picture} --hires 2", "hires: the hires fix is for text-to-image"),
        ("--init {url}/missing.png", "init: could not download '{url}/missing.png' (HTTP Error 404"),
        ("--init {url}/notes.txt", "init: could not read '{url}/notes.txt' as a picture"),
        ("--init http://127.0.0.1:9/x.png", "init: could not download 'http://127.0.0.1:9/x.png' ("),
        ("--init _", "init: _ is the last result, but nothing has been painted"),
        ("--init {{nothing_here}}", "init: {{nothing_here}} is not a notebook variable"),
        ("--init {{words}}", "init: no such file 'a string'"),
        ("--init {{number}}", "init: {{number}} holds a int, not a picture"),
        ("--init {picture} --mask {blank}", "mask: no part of it is white"),
        ("--variation-strength 2", "variation_strength: must be 0–1 (got 2)"),
        ("--seed-resize-from 12x12", "seed_resize_from: width and height must be multiples of 8 (got 12x12)"),
        ("--hires-upscaler 4x-UltraSharp --hires 2", "hires_upscaler: no upscaler model '4x-UltraSharp' in"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(shell, tiny_model_dir, tmp_path, http_server, options, message):
    from jupyter_sd.painting import session as painter

    init_picture().save(tmp_path / "picture.png")
    Image.new("L", (16, 16), 0).save(tmp_path / "blank.png")
    (tmp_path / "unreadable.png").write_bytes(b"\x89PNG but not really")
    values = {
        "missing": str(tmp_path / "missing.png"),
        "unreadable": str(tmp_path / "unreadable.png"),
        "picture": str(tmp_path / "picture.png"),
        "blank": str(tmp_path / "blank.png"),
        "url": http_server,
    }
    shell.user_ns["words"], shell.user_ns["number"] = "a string", 7
    shell.user_ns.pop("_", None)
    last, painter.get_engine().last_result = painter.get_engine().last_result, None
    try:
        with pytest.raises(Exception) as info:
            run(
                shell, f"%%paint --model {tiny_model_dir} --steps 4 {options.format(**values)} -o {tmp_path / 'out'}\nx"
            )
    finally:
        painter.get_engine().last_result = last
    from IPython.core.error import UsageError

    assert type(info.value) is UsageError, info.value
    assert message.format(**values) in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


# -- a kernel interrupt during each pass --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    from helpers.kernel_client import running_kernel

    cwd = tmp_path_factory.mktemp("modes-kernel")
    init_picture(64).save(cwd / "init.png")
    box_mask(64, (16, 16, 48, 48)).save(cwd / "mask.png")
    with running_kernel(cwd) as kernel:
        kernel.cwd = cwd
        kernel.execute("%load_ext jupyter_sd\nimport jupyter_sd")
        yield kernel


@pytest.mark.slow
@pytest.mark.parametrize(
    ("options", "wait_for", "size"),
    [
        ("--steps 150 --size 256x256 --hires 2", "txt2img 1/2 · step", 256),
        ("--steps 2 --size 128x128 --hires 2 --hires-steps 150 --hires-denoise 0.9", "hires 2/2 · step", 256),
        ("--steps 150 --size 256x256 --init init.png --strength 1", "step", 256),
        ("--steps 150 --size 256x256 --init init.png --mask mask.png --strength 1", "step", 256),
    ],
    ids=["txt2img-of-hires", "hires", "img2img", "inpaint"],
)
def test_kernel_interrupt_in_each_pass(kernel, tiny_model_dir, options, wait_for, size):
    import base64
    import io
    import time

    from helpers.kernel_client import of_type, reply_status, stream_text

    kernel.execute(f"%%paint --model {tiny_model_dir} --steps 1 --no-save\nwarm up")
    before = stream_text(kernel.execute("print(jupyter_sd.get_engine().load_count)"))
    sent = {"done": False}

    def interrupt_in_the_pass(message, messages):
        if sent["done"] or message["msg_type"] != "update_display_data":
            return
        if wait_for in message["content"]["data"].get("text/plain", ""):
            sent["done"] = True
            time.sleep(0.2)
            kernel.interrupt()

    out = f"stopped-{abs(hash(options))}"
    cell = f"%%paint --model {tiny_model_dir} {options} --seed 5 --preview-interval 0 -o {out}\na long picture"
    messages = kernel.execute(cell, on_message=interrupt_in_the_pass)
    assert sent["done"] and reply_status(messages) == "ok"
    data = of_type(messages, "execute_result")[0]["content"]["data"]
    assert "interrupted at step" in data["text/plain"]
    picture = Image.open(io.BytesIO(base64.b64decode(data["image/png"])))
    assert picture.size == (size, size)  # the last x0 of the pass that was running
    assert not (kernel.cwd / out).exists()  # nothing saved without --save-incomplete
    again = kernel.execute(f"%%paint --model {tiny_model_dir} --steps 2 --seed 6 -o after\nnext")
    assert reply_status(again) == "ok" and "loading" not in stream_text(again)
    assert stream_text(kernel.execute("print(jupyter_sd.get_engine().load_count)")) == before


@pytest.mark.slow
def test_example_notebook_runs_top_to_bottom(tmp_path):
    import shutil

    import nbformat
    from nbclient import NotebookClient

    notebook_file = tmp_path / "img2img.ipynb"
    shutil.copy(ROOT / "examples" / "img2img.ipynb", notebook_file)
    notebook = nbformat.read(notebook_file, as_version=4)
    notebook.cells.insert(0, nbformat.v4.new_code_cell(f"__session__ = {str(notebook_file)!r}"))
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [output for cell in notebook.cells for output in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert "(128, 128) True" in "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert len(list((tmp_path / "img2img-paint").glob("0000*.png"))) == 4


def test_sdxl_paints_in_every_mode(tmp_path):
    """An SDXL model: from_pipe gives its img2img and inpaint pipelines; each mode paints at the asked size."""
    from helpers.tiny_sdxl import make_tiny_sdxl

    own = Engine()
    model = make_tiny_sdxl(tmp_path / "sdxl")
    base = PaintRequest(prompt="a red circle", model=str(model), steps=2, seed=1, preview="none", save=False)
    init, mask = init_picture(), box_mask(16, (4, 4, 12, 12))
    assert own.generate(base.replace(init="x", strength=0.5), pictures=Pictures(init)).images[0].size == (16, 16)
    inpainted = own.generate(base.replace(init="x", mask="m", mask_blur=0), pictures=Pictures(init, mask)).images[0]
    outside = np.asarray(mask) == 0
    assert np.array_equal(pixels(inpainted)[outside], pixels(init)[outside])
    assert own.generate(base.replace(width=16, height=16, hires=2)).images[0].size == (32, 32)
    assert own.load_count == 1


def test_hires_and_inpaint_generation_data_paints_again(engine, tiny_model_dir):
    """Our infotext, pasted back, gives the same request options (A1111 keys and values) and the same pixels."""
    hires = _request(
        tiny_model_dir,
        steps=3,
        width=16,
        height=16,
        hires=1.5,
        hires_steps=2,
        hires_denoise=0.6,
        hires_upscaler="Latent (bicubic)",
        hires_sampler="Euler",
        preview="none",
    )
    result = engine.generate(hires)
    pasted = request_from_infotext(result.infotext(0), model=str(tiny_model_dir), save=False, preview="none")
    for name in ("hires", "hires_steps", "hires_denoise", "hires_upscaler", "hires_sampler", "width", "seed"):
        assert getattr(pasted, name) == getattr(result.request, name), name
    assert np.array_equal(pixels(engine.generate(pasted).images[0]), pixels(result.images[0]))
    inpaint = _request(
        tiny_model_dir,
        init="x",
        mask="m",
        strength=0.6,
        mask_blur=2,
        inpaint_area="masked",
        padding=8,
        masked_content="fill",
        invert_mask=True,
        width=16,
        height=16,
    )
    text = engine.generate(inpaint, pictures=Pictures(init_picture(), box_mask(16, (0, 0, 8, 16)))).infotext(0)
    back = request_from_infotext(text)
    assert (back.strength, back.mask_blur, back.inpaint_area, back.padding, back.masked_content, back.invert_mask) == (
        0.6,
        2,
        "masked",
        8,
        "fill",
        True,
    )


def test_hires_schedule_and_cfg_equal_plain_diffusers(engine, raw, tiny_model_dir):
    """A1111's "Hires schedule type" and the "Hires CFG Scale" of Forge and hires-fix-tweaks: the hires pass alone
    uses them (here Euler with Karras sigmas at CFG 4 after a DPM++ 2M first pass at CFG 7)."""
    expected = raw_hires(raw, [5], hires_sampler="Euler", hires_schedule="Karras", hires_guidance=4.0)[0]
    options = dict(hires=2, hires_steps=4, hires_denoise=0.5, hires_sampler="Euler")
    request = _request(tiny_model_dir, width=16, height=16, hires_schedule="Karras", hires_guidance=4.0, **options)
    result = engine.generate(request)
    assert_pixels_close(result.images[0], expected)
    text = result.infotext(0)
    assert "Hires sampler: Euler, Hires schedule type: Karras, Hires CFG Scale: 4" in text
    from jupyter_sd.recipe.a1111 import ignored_infotext_keys, parse_body

    pasted = parse_body("a red circle\n" + text.split("\n")[-1].replace("Hires CFG Scale", "Hires CFG scale"))
    assert (pasted["hires_schedule"], float(pasted["hires_guidance"])) == ("Karras", 4.0)
    assert ignored_infotext_keys({"Hires CFG scale": "4", "Hires schedule type": "Karras"}) == []
    same = engine.generate(_request(tiny_model_dir, width=16, height=16, **options))
    assert "Hires schedule type" not in same.infotext(0) and "Hires CFG" not in same.infotext(0)
    assert not np.array_equal(pixels(same.images[0]), pixels(result.images[0]))


def test_a_hires_schedule_the_hires_sampler_cannot_use_is_refused_before_painting(engine, tiny_model_dir):
    recorder = Recorder()
    request = _request(tiny_model_dir, hires=2, hires_sampler="DDIM", hires_schedule="Karras", preview="none")
    with pytest.raises(ValueError, match=r"^hires_schedule: 'Karras' is not available with sampler 'DDIM'"):
        engine.generate(request, recorder)
    assert recorder.steps == []
