"""diffusers' TaylorSeer and MagCache on Flux (``--cache taylorseer[:N]``, ``magcache[:T]``): the blocks run on the
steps a formula in this test says (TaylorSeer) or on fewer steps the higher the threshold (MagCache), the picture
stays close, the next uncached picture is the uncached picture again, and the infotext key pastes back."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from helpers.pixels import pixels, ssim
from helpers.tiny_flow import make_tiny_flux

from jupyter_sd.engine import Engine
from jupyter_sd.engine.progress import Progress
from jupyter_sd.engine.step_cache import resolved
from jupyter_sd.plots.axes import parse_axis
from jupyter_sd.recipe.paste import request_from_infotext
from jupyter_sd.recipe.request import PaintRequest

PROMPT = "a red circle on a blue background"
STEPS = 10
CLOSE = 0.9
"""SSIM to the uncached picture every cached picture here keeps (tiny random Flux, 32², 10 steps)."""


@pytest.fixture(scope="module")
def flux_dir(tmp_path_factory):
    return make_tiny_flux(tmp_path_factory.mktemp("tiny-flux"))


@pytest.fixture(scope="module")
def engine():
    return Engine()


def _base(model) -> PaintRequest:
    return PaintRequest(prompt=PROMPT, model=str(model), width=32, height=32, steps=STEPS, seed=3, rng="cpu",
                        preview="none", save=False)  # fmt: skip


def _counted(engine, request):
    """The picture, and how many steps really ran the last block (its query projection runs only then)."""
    runs: list[int] = []
    engine.pipeline(request)
    tail = engine._pipe.transformer.single_transformer_blocks[-1].attn.to_q
    hook = tail.register_forward_pre_hook(lambda module, args: runs.append(1))
    try:
        result = engine.generate(request)
    finally:
        hook.remove()
    return result, len(runs)


def taylorseer_full_steps(steps: int, interval: int, warmup: int = 3) -> int:
    """TaylorSeer's rule (diffusers' docs): every step before `warmup`, then step warmup+1 and every interval-th."""
    return sum(1 for step in range(steps) if step < warmup or (step - warmup - 1) % interval == 0)


@pytest.fixture(scope="module")
def plain(engine, flux_dir):
    result, runs = _counted(engine, _base(flux_dir))
    assert runs == STEPS
    return result.images[0]


@pytest.mark.parametrize("interval", [2, 3, 4])
def test_taylorseer_runs_the_blocks_on_its_steps_only(engine, flux_dir, plain, interval):
    result, runs = _counted(engine, _base(flux_dir).replace(cache=f"taylorseer:{interval}"))
    assert runs == taylorseer_full_steps(STEPS, interval) < STEPS
    assert f"Cache: taylorseer {interval}," in result.infotext(0)
    assert ssim(plain, result.images[0]) >= CLOSE
    assert np.abs(pixels(result.images[0]) - pixels(plain)).max() > 0  # predicting changed the picture a little
    again, runs = _counted(engine, _base(flux_dir))
    assert runs == STEPS and np.array_equal(pixels(again.images[0]), pixels(plain))  # the hooks are gone


def test_magcache_skips_more_the_higher_its_threshold(engine, flux_dir, plain):
    counts, pictures = {}, {}
    for value in ("magcache:0.01", "magcache:0.06", "magcache:1"):
        result, counts[value] = _counted(engine, _base(flux_dir).replace(cache=value))
        pictures[value] = result.images[0]
    kept = round(0.2 * STEPS)  # the first fifth always runs (MagCache's retention ratio)
    assert kept <= counts["magcache:1"] <= counts["magcache:0.06"] <= counts["magcache:0.01"] <= STEPS, counts
    assert counts["magcache:1"] < STEPS, counts
    assert counts["magcache:1"] >= kept + (STEPS - kept) // 4  # at most 3 steps skipped in a row
    assert all(ssim(plain, picture) >= CLOSE for picture in pictures.values())
    assert "Cache: magcache 1," in result.infotext(0)
    again, runs = _counted(engine, _base(flux_dir))
    assert runs == STEPS and np.array_equal(pixels(again.images[0]), pixels(plain))


PASTED = [
    ("Cache: taylorseer 4", "taylorseer:4"),
    ("Cache: MagCache 0.1", "magcache:0.1"),
    ("Cache: taylorseer", "taylorseer"),
]


@pytest.mark.parametrize(("text", "value"), PASTED)
def test_the_infotext_key_pastes_back(text, value):
    assert request_from_infotext(f"a fox\nSteps: 20, Seed: 1, {text}").cache == value


def test_auto_runs_taylorseer_on_flux_and_is_written_as_what_ran(engine, flux_dir):
    result, runs = _counted(engine, _base(flux_dir).replace(cache="auto"))
    assert result.request.cache == "taylorseer:3" and runs == taylorseer_full_steps(STEPS, 3)
    assert request_from_infotext(result.infotext(0)).cache == "taylorseer:3"


def test_cache_axis_takes_the_new_modes():
    assert parse_axis("Cache: off, taylorseer:2, magcache:0.1").labels == [
        "Cache: off", "Cache: taylorseer:2", "Cache: magcache:0.1"
    ]  # fmt: skip


@pytest.mark.parametrize("value", ["taylorseer:1", "taylorseer:2.5", "magcache:0", "magcache:2"])
def test_bad_numbers_get_one_line(value):
    with pytest.raises(ValueError, match=r"^cache: ") as error:
        PaintRequest(prompt="x", cache=value).validate()
    assert "\n" not in str(error.value) and len(str(error.value)) < 200


@pytest.mark.parametrize("value", ["fbcache", "taylorseer", "magcache"])
def test_refused_in_one_line_on_unet_models(engine, tiny_model_dir, value):
    request = PaintRequest(prompt=PROMPT, model=str(tiny_model_dir), width=32, height=32, steps=2, cache=value,
                           save=False)  # fmt: skip
    known = r"needs a transformer model whose pipeline diffusers caches \(Flux, SD3, .*\); this is a unet$"
    with pytest.raises(ValueError, match=rf"^cache: {value} {known}"):
        engine.generate(request)
    assert resolved("off", engine._pipe) == "off"


class _StopAt(Progress):
    """Counts previews and sets `stop` once step `at` is done."""

    def __init__(self, stop: threading.Event, at: int) -> None:
        self.stop_event, self.at, self.previews = stop, at, 0

    def step(self, step, total, previews):
        self.previews += bool(previews)
        if step == self.at:
            self.stop_event.set()


@pytest.mark.parametrize("value", ["taylorseer:2", "magcache:0.12"])
def test_previews_and_stop_keep_working_and_the_hooks_leave(engine, flux_dir, plain, value):
    stop = threading.Event()
    progress = _StopAt(stop, 6)
    request = _base(flux_dir).replace(cache=value, preview="full", preview_interval=0)
    result = engine.generate(request, progress, stop)
    assert result.stopped_by == "stop" and result.images and progress.previews >= 6
    transformer = engine._pipe.transformer
    assert not transformer.is_cache_enabled
    assert [name for name, module in transformer.named_modules() if getattr(module, "_diffusers_hook", None)
            and module._diffusers_hook.hooks] == []  # fmt: skip
    again, runs = _counted(engine, _base(flux_dir))
    assert runs == STEPS and np.array_equal(pixels(again.images[0]), pixels(plain))
