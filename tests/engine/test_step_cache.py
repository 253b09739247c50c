"""Step caching (``--cache``): off paints raw diffusers' pixels, DeepCache skips exactly the deep blocks it should
(counted against a formula), the picture stays close (SSIM measured here with numpy), and the hooks leave with the
picture."""

import importlib.util
import math
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.paint_modes import euler_request, init_picture
from helpers.pixels import psnr, ssim

from jupyter_sd.engine import Engine
from jupyter_sd.engine.pictures import Pictures
from jupyter_sd.engine.progress import Progress
from jupyter_sd.engine.schedulers import make_scheduler
from jupyter_sd.plots.axes import find_axis
from jupyter_sd.recipe.paste import request_from_infotext
from jupyter_sd.recipe.request import PaintRequest

STEPS = 20
ROOT = Path(__file__).resolve().parents[2]
ROUNDING = 2
"""Levels our CFG at 20 steps may differ from diffusers' by (float order; test_engine allows the same)."""


@pytest.fixture(scope="module")
def engine():
    return Engine()


def _request(model, **changes):
    return euler_request(model, STEPS, **changes)


def _raw(model_dir, prompt="a red circle", seed=3):
    from diffusers import StableDiffusionPipeline

    raw = StableDiffusionPipeline.from_pretrained(model_dir, safety_checker=None)
    raw.set_progress_bar_config(disable=True)
    raw.scheduler = make_scheduler("Euler", "Automatic", dict(raw.scheduler.config))
    return raw(prompt, num_inference_steps=STEPS, generator=torch.Generator("cpu").manual_seed(seed)).images[0]


def _pixels(image):
    return np.asarray(image, dtype=int)


def full_evaluations(evaluations, interval):
    """DeepCache as documented: the first fifth of a pass in full, then every `interval`-th evaluation."""
    first = evaluations // 5
    return first + math.ceil((evaluations - first) / interval)


def _hooks_left(unet):
    return [
        name
        for name, module in unet.named_modules()
        if getattr(module, "_diffusers_hook", None) and module._diffusers_hook.hooks
    ]


def _paint_counting(engine, request, pictures=None, progress=None, stop=None):
    """Paint, counting per UNet call its latent shape and whether each block really computed (its first resnet)."""
    pipe = engine.pipeline(request)
    unet = pipe.unet
    blocks = {f"down{i}": b for i, b in enumerate(unet.down_blocks)} | {"mid": unet.mid_block}
    blocks |= {f"up{i}": b for i, b in enumerate(unet.up_blocks)}
    counts = {name: 0 for name in blocks}
    shapes = []
    hooks = [unet.conv_in.register_forward_pre_hook(lambda m, a: shapes.append(tuple(a[0].shape)))]
    for name, block in blocks.items():
        hooks.append(
            block.resnets[0].register_forward_pre_hook(
                lambda m, a, name=name: counts.__setitem__(name, counts[name] + 1)
            )
        )
    try:
        result = engine.generate(request, progress, stop, pictures)
    finally:
        for hook in hooks:
            hook.remove()
    return result, counts, shapes


def test_off_paints_raw_diffusers_pixels(engine, tiny_model_dir):
    result = engine.generate(_request(tiny_model_dir))
    assert np.abs(_pixels(result.images[0]) - _pixels(_raw(tiny_model_dir))).max() <= ROUNDING
    assert "Cache" not in result.infotext(0)


@pytest.mark.parametrize("interval", [2, 3, 5])
def test_deepcache_skips_the_deep_blocks_between_refreshes(engine, tiny_model_dir, interval):
    result, counts, shapes = _paint_counting(engine, _request(tiny_model_dir, cache=f"deepcache:{interval}"))
    assert len(shapes) == STEPS and all(shape[0] == 2 for shape in shapes)  # CFG: both halves in one call
    full = full_evaluations(STEPS, interval)
    assert counts == {"down0": STEPS, "down1": full, "mid": full, "up0": full, "up1": STEPS}
    assert full < STEPS and f"Cache: deepcache {interval}" in result.infotext(0)


def _tiny_task():
    """tools/train_tiny_model.py: the bundled model's held-out captions and its colour judge."""
    spec = importlib.util.spec_from_file_location("_train_tiny_model", ROOT / "tools" / "train_tiny_model.py")
    task = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(task)
    return task


BOUNDS = {"deepcache:2": (0.97, 30.0), "deepcache:3": (0.93, 25.0)}
"""(SSIM, PSNR dB) each cached picture keeps to its uncached one on the bundled model: measured 0.988–0.999 and
33.9–51.9 dB at deepcache 2, 0.960–0.992 and 27.9–39.8 dB at deepcache 3 (these six captions, 64², 20 steps of the
default sampler); the bounds leave room for other CPUs. Over all 24 held-out captions the worst seen was lower
(docs/speed.md)."""


def test_picture_stays_close_on_the_bundled_model(engine):
    task = _tiny_task()
    for index, combo in enumerate(task.heldout_combos()[:6]):
        request = PaintRequest(prompt=task.caption(*combo), model="tiny", steps=STEPS, seed=2000 + index, rng="cpu")
        request = request.replace(preview="none", save=False)
        plain = engine.generate(request).images[0]
        for mode, (least_ssim, least_psnr) in BOUNDS.items():
            cached = engine.generate(request.replace(cache=mode)).images[0]
            assert ssim(plain, cached) >= least_ssim and psnr(plain, cached) >= least_psnr, (request.prompt, mode)
            assert np.abs(_pixels(plain) - _pixels(cached)).max() > 0  # the cache did change the compute
            assert task.classify_image(cached) == task.classify_image(plain)  # the colour judge sees the same


def test_the_hooks_leave_with_the_picture(engine, tiny_model_dir):
    engine.generate(_request(tiny_model_dir, cache="deepcache:3"))
    pipe = engine.pipeline(_request(tiny_model_dir))
    assert _hooks_left(pipe.unet) == []
    result = engine.generate(_request(tiny_model_dir))
    assert np.abs(_pixels(result.images[0]) - _pixels(_raw(tiny_model_dir))).max() <= ROUNDING


def test_img2img_and_hires_count_each_pass(engine, tiny_model_dir):
    request = _request(tiny_model_dir, cache="deepcache:2", init="pic.png", strength=0.5, width=16, height=16)
    _, counts, shapes = _paint_counting(engine, request, Pictures(init_picture(16)))
    assert counts["down1"] == full_evaluations(len(shapes), 2) and counts["up1"] == len(shapes)
    assert STEPS // 2 <= len(shapes) < STEPS  # A1111's img2img steps at strength 0.5
    request = _request(tiny_model_dir, cache="deepcache:3", hires=2.0, hires_denoise=0.6, hires_upscaler="Latent")
    result, counts, shapes = _paint_counting(engine, request)
    passes = [sum(1 for shape in shapes if shape[-1] == side) for side in (8, 16)]  # 8×8 latents, then 16×16
    assert passes[0] == STEPS and passes[1] > 0
    assert counts["mid"] == sum(full_evaluations(n, 3) for n in passes) and counts["down0"] == sum(passes)
    assert "Cache: deepcache 3" in result.infotext(0)


class _StopAt(Progress):
    def __init__(self, stop, at):
        self.stop_event, self.at, self.previews = stop, at, 0

    def step(self, step, total, previews):
        self.previews += bool(previews)
        if step == self.at:
            self.stop_event.set()


def test_stop_with_previews_keeps_the_cache_tidy(engine, tiny_model_dir):
    stop = threading.Event()
    progress = _StopAt(stop, 7)
    request = _request(tiny_model_dir, cache="deepcache:3", preview="latent2rgb", preview_interval=0)
    result = engine.generate(request, progress, stop)
    assert result.stopped_by == "stop" and result.images and progress.previews >= 7
    assert _hooks_left(engine.pipeline(request).unet) == []


def test_auto_is_written_as_what_ran_and_pasted_back(engine, tiny_model_dir):
    result = engine.generate(_request(tiny_model_dir, cache="auto"))
    assert result.request.cache == "deepcache:3" and "Cache: deepcache 3" in result.infotext(0)
    assert request_from_infotext(result.infotext(0)).cache == "deepcache:3"
    assert request_from_infotext("a fox\nSteps: 20, Seed: 1, Cache: DeepCache 4").cache == "deepcache:4"


@pytest.mark.parametrize("value", ["deepcache:1", "deepcache:x", "fastcache", "auto:3"])
def test_bad_values_get_one_line(value):
    with pytest.raises(ValueError, match=r"^cache: ") as error:
        PaintRequest(prompt="x", cache=value).validate()
    assert "\n" not in str(error.value) and len(str(error.value)) < 200


def test_cache_is_an_xyz_axis():
    assert find_axis("Cache").option == "cache" and find_axis("--cache").option == "cache"


def test_with_and_prompts_and_ngms_calls_of_each_shape_keep_their_own(engine, tiny_model_dir):
    """``AND`` and NGMS change how many UNet calls an evaluation makes and their batch: a call reuses only an output
    kept for the same call and shape, so the picture paints, fewer deep blocks run, and the hooks leave."""
    request = _request(tiny_model_dir, prompt="a red circle AND a blue square", ngms=1.0, cache="deepcache:3")
    result, counts, shapes = _paint_counting(engine, request)
    assert result.images and {shape[0] for shape in shapes} == {3, 2}  # AND's two halves, and NGMS's skipped one
    assert counts["down0"] == len(shapes) == STEPS and full_evaluations(STEPS, 3) < counts["mid"] < STEPS
    assert _hooks_left(engine.pipeline(request).unet) == []


def test_sdxl_and_its_refiner_base_pass(tmp_path_factory):
    from helpers.tiny_sdxl import make_tiny_sdxl

    base_dir = make_tiny_sdxl(tmp_path_factory.mktemp("sdxl"))
    refiner_dir = make_tiny_sdxl(tmp_path_factory.mktemp("sdxl-refiner"), seed=1)
    engine = Engine()
    request = PaintRequest(prompt="a red circle", model=str(base_dir), steps=10, seed=4, sampler="Euler")
    request = request.replace(preview="none", save=False, cache="deepcache:2")
    result, counts, shapes = _paint_counting(engine, request)
    assert counts["down0"] == counts["up1"] == len(shapes) == 10 and counts["mid"] == full_evaluations(10, 2)
    assert "Cache: deepcache 2" in result.infotext(0)
    refined = request.replace(refiner=str(refiner_dir), refiner_switch=0.6)
    result, counts, shapes = _paint_counting(engine, refined)
    assert counts["down0"] == len(shapes) == 6 and counts["mid"] == full_evaluations(6, 2)  # the base's 6 steps
    assert result.images and _hooks_left(engine.pipeline(request).unet) == []
