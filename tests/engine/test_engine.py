import threading
import time

import numpy as np
import pytest
import torch
from helpers.progress_recorder import Recorder

from jupyter_sd.engine import Engine, Progress
from jupyter_sd.engine.schedulers import make_scheduler
from jupyter_sd.recipe.request import PaintRequest
from jupyter_sd.recipe.samplers import SAMPLERS


def _pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


@pytest.fixture(scope="module")
def engine():
    return Engine()


@pytest.fixture(scope="module")
def raw_pipe(tiny_model_dir):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_model_dir, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _raw(pipe, sampler, schedule, seeds, steps=4, guidance=7.0, prompt="a red circle"):
    pipe.scheduler = make_scheduler(sampler, schedule, pipe._base_config)
    return pipe(
        prompt,
        num_inference_steps=steps,
        guidance_scale=guidance,
        num_images_per_prompt=len(seeds),
        generator=[torch.Generator("cpu").manual_seed(s) for s in seeds],
    ).images


@pytest.mark.parametrize(
    ("sampler", "schedule"), [("DPM++ 2M", "Automatic"), ("Euler a", "Automatic"), ("DDIM", "SGM Uniform")]
)
def test_same_pixels_as_raw_diffusers(engine, raw_pipe, tiny_model_dir, sampler, schedule):
    raw_pipe._base_config = (
        dict(raw_pipe.scheduler.config) if not hasattr(raw_pipe, "_base_config") else raw_pipe._base_config
    )
    expected = _raw(raw_pipe, sampler, schedule, [5])[0]
    request = PaintRequest(
        prompt="a red circle",
        model=str(tiny_model_dir),
        steps=4,
        seed=5,
        sampler=sampler,
        schedule=schedule,
        preview_interval=0,
        rng="cpu",
    )
    result = engine.generate(request)
    assert _pixels(expected).std() > 1  # not a blank picture: equality means something
    assert np.array_equal(_pixels(result.images[0]), _pixels(expected))
    assert result.seeds == [5] and not result.interrupted


def test_ancestral_sampler_follows_the_seed(engine, tiny_model_dir):
    request = PaintRequest(
        prompt="a cat", model=str(tiny_model_dir), steps=4, seed=9, sampler="Euler a", preview="none"
    )
    first = engine.generate(request).images[0]
    second = engine.generate(request).images[0]
    other = engine.generate(request.replace(seed=10)).images[0]
    assert np.array_equal(_pixels(first), _pixels(second))
    assert not np.array_equal(_pixels(first), _pixels(other))


def test_batch_image_k_is_seed_plus_k(engine, tiny_model_dir):
    request = PaintRequest(
        prompt="a fox", model=str(tiny_model_dir), steps=3, seed=100, n=3, sampler="Euler a", preview="none"
    )
    batch = engine.generate(request)
    assert batch.seeds == [100, 101, 102]
    for k in range(3):
        alone = engine.generate(request.replace(seed=100 + k, n=1)).images[0]
        assert np.abs(_pixels(alone) - _pixels(batch.images[k])).max() <= 2, k


def test_repeat_continues_seeds(engine, tiny_model_dir):
    request = PaintRequest(prompt="a fox", model=str(tiny_model_dir), steps=2, seed=7, n=2, repeat=2, preview="none")
    assert engine.generate(request).seeds == [7, 8, 9, 10]


def test_random_seed_is_recorded(engine, tiny_model_dir):
    result = engine.generate(PaintRequest(prompt="a fox", model=str(tiny_model_dir), steps=2, preview="none"))
    assert result.request.seed == result.seeds[0] >= 0
    assert (result.request.width, result.request.height) == (16, 16)  # the model's native size


def test_previews_every_step_without_throttle(engine, tiny_model_dir):
    recorder = Recorder()
    engine.generate(
        PaintRequest(prompt="a dog", model=str(tiny_model_dir), steps=5, seed=1, preview_interval=0), recorder
    )
    assert recorder.steps == [(i, 5) for i in range(1, 6)]
    assert len(recorder.frames) == 5 and recorder.frames[0][0].size == (16, 16)


def test_previews_throttled_by_time(engine, tiny_model_dir):
    recorder = Recorder()
    engine.generate(
        PaintRequest(prompt="a dog", model=str(tiny_model_dir), steps=6, seed=1, preview_interval=30), recorder
    )
    assert len(recorder.frames) == 1  # only the first step shows a frame within 30 s


def test_preview_shows_x0_not_noise(engine, tiny_model_dir):
    """The last preview (x0 of the last step) looks like the final picture, unlike the noisy latent would."""
    recorder = Recorder()
    result = engine.generate(
        PaintRequest(prompt="a dog", model=str(tiny_model_dir), steps=6, seed=3, preview="full", preview_interval=0),
        recorder,
    )
    final = _pixels(result.images[0])
    first_frame = _pixels(recorder.frames[0][0])
    last_frame = _pixels(recorder.frames[-1][0])
    assert np.abs(last_frame - final).mean() < 3
    assert np.abs(first_frame - final).mean() < 40  # x0 at step 1 is already a picture, not noise


def test_stop_keeps_last_x0_and_engine_stays_ready(engine, tiny_model_dir):
    event = threading.Event()
    recorder = Recorder(stop_at=2, event=event)
    loads = engine.load_count
    result = engine.generate(
        PaintRequest(prompt="a dog", model=str(tiny_model_dir), steps=20, seed=3, preview="none"), recorder, stop=event
    )
    assert result.interrupted_at == 3 and result.stopped_by == "stop"  # stops at the next step
    assert len(result.images) == 1 and result.complete == 0
    assert "Interrupted: at step 3/20" in result.infotext(0)
    assert not engine.busy
    after = engine.generate(PaintRequest(prompt="a dog", model=str(tiny_model_dir), steps=2, seed=3, preview="none"))
    assert not after.interrupted and engine.load_count == loads


def test_stop_before_start_paints_nothing(engine, tiny_model_dir):
    event = threading.Event()
    event.set()
    result = engine.generate(PaintRequest(prompt="a", model=str(tiny_model_dir), steps=5, preview="none"), stop=event)
    assert result.interrupted_at == 0 and result.images == []


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_every_sampler_runs(engine, tiny_model_dir, sampler):
    recorder = Recorder()
    result = engine.generate(
        PaintRequest(
            prompt="a red square", model=str(tiny_model_dir), steps=3, seed=1, sampler=sampler, preview_interval=0
        ),
        recorder,
    )
    image = _pixels(result.images[0])
    assert image.shape == (16, 16, 3) and np.isfinite(image).all()
    assert [s for s, _ in recorder.steps][-1] == 3
    assert recorder.frames  # every sampler gives the previewer something


def test_schedule_not_available_for_sampler(engine, tiny_model_dir):
    allowed = r"\(allowed: Automatic, Uniform, SGM Uniform, Simple, Normal, DDIM\)"
    with pytest.raises(ValueError, match=r"schedule: 'Karras' is not available with sampler 'DDIM' " + allowed):
        engine.generate(PaintRequest(prompt="a", model=str(tiny_model_dir), steps=2, sampler="DDIM", schedule="Karras"))


def test_pipeline_is_cached_and_swapped(engine, tiny_model_dir, tmp_path):
    from helpers.tiny_pipeline import make_tiny_pipeline

    engine.generate(PaintRequest(prompt="a", model=str(tiny_model_dir), steps=1, preview="none"))
    loads = engine.load_count
    engine.generate(PaintRequest(prompt="b", model=str(tiny_model_dir), steps=1, preview="none"))
    assert engine.load_count == loads
    other = make_tiny_pipeline(tmp_path / "other", seed=1)
    engine.generate(PaintRequest(prompt="b", model=str(other), steps=1, preview="none"))
    assert engine.load_count == loads + 1 and engine.info()["model"] == str(other.resolve())
    engine.unload()
    assert engine.info()["loaded"] is False


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("weights.ckpt", "is a pickle checkpoint, which can run arbitrary code"),
        ("/nonexistent/folder/model", "model: no such file or folder"),
        ("some-org/not-cached-model", "is not in the Hugging Face cache and HF_HUB_OFFLINE is set"),
    ],
)
def test_bad_models_fail_cleanly(engine, tmp_path, offline, model, message):
    if model.endswith(".ckpt"):
        (tmp_path / model).write_bytes(b"x")
        model = str(tmp_path / model)
    with pytest.raises(ValueError, match=message):
        engine.generate(PaintRequest(prompt="a", model=model, steps=1))
    assert not engine.busy


def test_folder_without_model_index(engine, tmp_path):
    with pytest.raises(ValueError, match="is not a diffusers model"):
        engine.generate(PaintRequest(prompt="a", model=str(tmp_path), steps=1))


def test_single_file_that_is_not_a_checkpoint(engine, tmp_path, offline):
    from safetensors.torch import save_file

    path = tmp_path / "notes.safetensors"
    save_file({"hello": torch.zeros(2)}, str(path))
    with pytest.raises(
        ValueError, match=r"model: could not load '.*notes.safetensors' as a Stable Diffusion checkpoint"
    ):
        engine.generate(PaintRequest(prompt="a", model=str(path), steps=1))
    assert not engine.busy


def test_taesd_previews_from_a_local_folder(engine, tiny_model_dir, tmp_path):
    from diffusers import AutoencoderTiny

    torch.manual_seed(0)
    AutoencoderTiny(
        encoder_block_out_channels=(8, 8),
        decoder_block_out_channels=(8, 8),
        num_encoder_blocks=(1, 1),
        num_decoder_blocks=(1, 1),
        latent_channels=4,
        upsampling_scaling_factor=2,
    ).save_pretrained(tmp_path / "taesd")
    engine.taesd = str(tmp_path / "taesd")
    try:
        recorder = Recorder()
        request = PaintRequest(
            prompt="a dog", model=str(tiny_model_dir), steps=3, seed=1, preview="taesd", preview_interval=0
        )
        engine.generate(request, recorder)
        assert len(recorder.frames) == 3 and recorder.frames[0][0].size == (16, 16)
        assert engine._previewer(request.replace(width=16, height=16, preview="auto"), engine._pipe).mode == "taesd"
    finally:
        engine.taesd = ""
    with pytest.raises(ValueError, match="preview: 'taesd' needs a TAESD model"):
        engine.generate(request)


def test_out_of_memory_is_one_line_and_the_engine_recovers(engine, tiny_model_dir):
    """A device OOM (injected into the real UNet: one can't be provoked safely on a CPU) leaves the engine usable."""
    request = PaintRequest(prompt="a", model=str(tiny_model_dir), steps=2, seed=1, preview="none", n=3)
    pipe = engine.pipeline(request)

    def exhausted(*args):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    hook = pipe.unet.register_forward_pre_hook(exhausted)
    try:
        with pytest.raises(MemoryError, match=r"out of memory painting 3 image\(s\) at 16x16: try a smaller size"):
            engine.generate(request)
    finally:
        hook.remove()
    assert not engine.busy
    assert len(engine.generate(request).images) == 3


def test_one_generation_at_a_time(engine, tiny_model_dir):
    """A second caller waits for the lock (and is told so); both finish with their own pictures."""
    request = PaintRequest(prompt="a", model=str(tiny_model_dir), steps=4, seed=1, preview="none")
    engine.pipeline(request)
    started, results = threading.Event(), {}

    class Slow(Progress):
        def step(self, step, total, previews):
            started.set()
            time.sleep(0.2)

    worker = threading.Thread(target=lambda: results.setdefault("first", engine.generate(request, Slow())))
    worker.start()
    started.wait(30)
    recorder = Recorder()
    results["second"] = engine.generate(request.replace(seed=2), recorder)
    worker.join()
    assert any("waiting for the picture being painted" in text for text in recorder.notices)
    assert results["first"].seeds == [1] and results["second"].seeds == [2]


def test_first_load_skips_the_collection_and_a_swap_frees_the_old_model(tiny_model_dir, tmp_path):
    """A full ``gc.collect`` costs 0.3 s in a fresh kernel: the first load has nothing to free and must not pay it.

    A swap still frees the old pipeline before loading the new one (its weights are gone, not just unreferenced).
    """
    import gc
    import weakref

    from helpers.tiny_pipeline import make_tiny_pipeline

    full_collections = []

    def count(phase, info):
        if phase == "start" and info["generation"] == 2:
            full_collections.append(info)

    fresh = Engine()
    was_enabled = gc.isenabled()
    gc.disable()  # only explicit collections run now, so the count is ours
    gc.callbacks.append(count)
    try:
        fresh.generate(PaintRequest(prompt="a", model=str(tiny_model_dir), steps=1, preview="none"))
        assert full_collections == []
        old_unet = weakref.ref(fresh.pipeline(PaintRequest(prompt="a", model=str(tiny_model_dir))).unet)
        other = make_tiny_pipeline(tmp_path / "other", seed=1)
        fresh.generate(PaintRequest(prompt="b", model=str(other), steps=1, preview="none"))
        assert len(full_collections) == 1 and old_unet() is None
    finally:
        gc.callbacks.remove(count)
        if was_enabled:
            gc.enable()
        fresh.unload()


def test_torchsdes_round_off_warning_stays_out_of_the_cell(engine, tiny_model_dir):
    """DPM++ SDE at 4 steps, seed 1, on the bundled model makes torchsde warn "Should have tb<=t1" (float
    round-off, clamped): harmless, so it must not reach the user's output. Other warnings still do."""
    import warnings

    request = PaintRequest(
        prompt="a red square", model=str(tiny_model_dir), steps=4, seed=1, sampler="DPM++ SDE", preview="none"
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # as a fresh kernel shows every UserWarning once
        engine.generate(request)
        warnings.warn("a user's own warning", UserWarning, stacklevel=1)
    # (DeprecationWarnings of library code are hidden in a kernel anyway; UserWarnings are shown)
    assert [str(w.message) for w in caught if w.category is UserWarning] == ["a user's own warning"]


@pytest.mark.parametrize("sampler", ["Heun", "DPM2"])
def test_a_second_order_step_counts_as_one_step(engine, tiny_model_dir, sampler):
    """Heun and DPM2 call the UNet twice a step (the last once): progress counts A1111's steps, each twice."""
    recorder = Recorder()
    request = PaintRequest(prompt="a dog", model=str(tiny_model_dir), steps=3, seed=3, preview="none",
                           sampler=sampler)  # fmt: skip
    result = engine.generate(request, recorder)
    assert recorder.steps == [(1, 3), (1, 3), (2, 3), (2, 3), (3, 3)] and result.steps_total == 3
