"""diffusers' transformer caches on SD3, Chroma, Z-Image, Qwen-Image and Flux.2 klein (tiny pipelines from config):
each mode diffusers' hooks run there changes the compute as its rule says (the last block's calls, counted), pastes
back from the infotext, leaves no hook behind (the next uncached picture is the uncached picture again), keeps
previews and stop working; ``--cache off`` paints what raw diffusers paints; the modes that cannot run are one line."""

from __future__ import annotations

import functools
import threading

import diffusers
import numpy as np
import pytest
import torch
from helpers import tiny_families, tiny_flow
from helpers.pixels import assert_pixels_close, pixels, ssim
from helpers.progress_recorder import Recorder

from jupyter_sd.engine import Engine
from jupyter_sd.recipe.paste import request_from_infotext
from jupyter_sd.recipe.request import PaintRequest

PROMPT = "a red circle on a blue background"
STEPS = 8
FAMILIES = {
    "SD3": (functools.partial(tiny_flow.make_tiny_sd3, layers=2), "StableDiffusion3Pipeline",
            {"guidance_scale": 1.0}, ["taylorseer"]),  # (its last block returns no text stream: TaylorSeer skips it)
    "Chroma": (tiny_families.make_tiny_chroma, "ChromaPipeline", {"guidance_scale": 1.0}, ["taylorseer"]),
    "Z-Image": (tiny_families.make_tiny_zimage, "ZImagePipeline", {"guidance_scale": 0.0}, ["taylorseer"]),
    "Qwen-Image": (tiny_families.make_tiny_qwenimage, "QwenImagePipeline", {"true_cfg_scale": 1.0},
                   ["fbcache", "taylorseer"]),
    "Flux.2 klein": (tiny_families.make_tiny_flux2_klein, "Flux2KleinPipeline", {"guidance_scale": 1.0},
                     ["taylorseer"]),
}  # fmt: skip
"""Family → (tiny builder, raw pipeline class, raw arguments for CFG 1, the transformer cache modes it runs)."""


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request, tmp_path_factory):
    build, raw_class, raw_guidance, modes = FAMILIES[request.param]
    folder = build(tmp_path_factory.mktemp(f"tiny-{request.param.replace(' ', '-')}"))
    return request.param, folder, raw_class, raw_guidance, modes


@pytest.fixture(scope="module")
def engine():
    return Engine()


def _request(folder, **changes) -> PaintRequest:
    values = {"prompt": PROMPT, "model": str(folder), "width": 32, "height": 32, "steps": STEPS, "seed": 5,
              "rng": "cpu", "guidance": 4.0, "negative_prompt": "green", "preview": "none", "save": False}  # fmt: skip
    return PaintRequest(**{**values, **changes})


def _last_block_probe(transformer):
    """The first linear layer of the last block TaylorSeer predicts: it runs only when that block is computed."""
    from jupyter_sd.engine.transformer_cache import blocks

    last = transformer.get_submodule(blocks(transformer)[-1])
    return next(module for module in last.modules() if isinstance(module, torch.nn.Linear))


def _counted(engine, request, progress=None, stop=None):
    """The result, and how many times the transformer's last block was computed."""
    runs: list[int] = []
    engine.pipeline(request)
    hook = _last_block_probe(engine._pipe.transformer).register_forward_pre_hook(lambda module, args: runs.append(1))
    try:
        result = engine.generate(request, progress, stop)
    finally:
        hook.remove()
    return result, len(runs)


def _no_hooks_left(pipe) -> None:
    transformer = pipe.transformer
    assert not getattr(transformer, "is_cache_enabled", False)
    assert [name for name, module in transformer.named_modules() if getattr(module, "_diffusers_hook", None)
            and module._diffusers_hook.hooks] == []  # fmt: skip


def taylorseer_full_steps(steps: int, interval: int, warmup: int = 3) -> int:
    """TaylorSeer's rule (diffusers' docs): every step before `warmup`, then step warmup+1 and every interval-th."""
    return sum(1 for step in range(steps) if step < warmup or (step - warmup - 1) % interval == 0)


@pytest.fixture(scope="module")
def uncached(engine, family):
    """The family's uncached picture (CFG 4, negative prompt) and its last block's calls per step."""
    _, folder, *_ = family
    result, runs = _counted(engine, _request(folder))
    assert runs % STEPS == 0 and runs > 0
    return result.images[0], runs // STEPS


def test_cache_off_paints_what_raw_diffusers_paints(engine, family):
    _, folder, raw_class, raw_guidance, _ = family
    result = engine.generate(_request(folder, guidance=1.0, negative_prompt="", cache="off"))
    pipe = getattr(diffusers, raw_class).from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(prompt=PROMPT, width=32, height=32, num_inference_steps=STEPS, **raw_guidance,
                    generator=torch.Generator("cpu").manual_seed(5)).images[0]  # fmt: skip
    assert_pixels_close(result.images[0], expected)
    assert "Cache" not in result.infotext(0)


@pytest.mark.parametrize(("value", "ran"), [("taylorseer:2", "taylorseer:2"), ("auto", "taylorseer:3")])
def test_taylorseer_computes_the_blocks_on_its_steps_only_per_cfg_half(engine, family, uncached, value, ran):
    """Chroma calls the transformer twice a step (cond, uncond): each half keeps its own schedule (its own context).
    ``auto`` runs taylorseer 3 on every transformer family and is written as what it ran."""
    _, folder, *_ = family
    plain, calls_per_step = uncached
    result, runs = _counted(engine, _request(folder, cache=value))
    interval = int(ran.split(":")[1])
    assert runs == calls_per_step * taylorseer_full_steps(STEPS, interval) < calls_per_step * STEPS
    assert result.request.cache == ran and f"Cache: taylorseer {interval}," in result.infotext(0)
    assert request_from_infotext(result.infotext(0)).cache == ran
    assert np.abs(pixels(result.images[0]) - pixels(plain)).max() > 0  # predicting changed the picture
    _no_hooks_left(engine._pipe)
    again, runs = _counted(engine, _request(folder))
    assert runs == calls_per_step * STEPS and np.array_equal(pixels(again.images[0]), pixels(plain))


def test_first_block_cache_skips_more_the_higher_its_threshold_where_it_runs(engine, family, uncached):
    name, folder, _, _, modes = family
    if "fbcache" not in modes:
        with pytest.raises(ValueError, match=r"^cache: fbcache cannot walk \w+'s blocks .*; use taylorseer$"):
            engine.generate(_request(folder, cache="fbcache"))
        return
    plain, calls_per_step = uncached
    counts = {}
    for value in ("fbcache:0.01", "fbcache:1"):
        result, counts[value] = _counted(engine, _request(folder, cache=value))
        assert request_from_infotext(result.infotext(0)).cache == value
    assert calls_per_step <= counts["fbcache:1"] < counts["fbcache:0.01"] <= calls_per_step * STEPS, counts
    assert ssim(plain, result.images[0]) > 0.5
    _no_hooks_left(engine._pipe)
    again, _ = _counted(engine, _request(folder))
    assert np.array_equal(pixels(again.images[0]), pixels(plain))


def test_magcache_is_one_line_naming_what_runs(engine, family):
    _, folder, _, _, modes = family
    with pytest.raises(ValueError) as error:
        engine.generate(_request(folder, cache="magcache:0.1"))
    message = str(error.value)
    allowed = " or ".join(modes)
    assert message == f"cache: magcache needs magnitude ratios diffusers publishes for Flux.1 only; use {allowed}"
    assert len(message) < 200


def test_previews_and_stop_keep_working_and_the_hooks_leave(engine, family, uncached):
    """A cached run previews every step; stopped after step 6 it keeps that step's x0 (the unstopped run's 6th
    preview), and no hook stays behind."""
    _, folder, *_ = family
    plain, calls_per_step = uncached
    request = _request(folder, cache="taylorseer:2", preview="full", preview_interval=0)
    whole = Recorder()
    engine.generate(request, whole)
    assert len(whole.frames) == STEPS
    stop = threading.Event()
    result = engine.generate(request, Recorder(stop_at=5, event=stop), stop)
    assert result.stopped_by == "stop" and result.interrupted_at == 6 and result.images[0].size == (32, 32)
    assert_pixels_close(result.images[0], whole.frames[5][0])
    _no_hooks_left(engine._pipe)
    again, runs = _counted(engine, _request(folder))
    assert runs == calls_per_step * STEPS and np.array_equal(pixels(again.images[0]), pixels(plain))
