"""Nothing assumes SD1: a tiny random SDXL pipeline (two text encoders, text_time conditioning) through the engine,
from its folder and as one original-layout ``.safetensors`` file."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from helpers.ldm_checkpoint import SDXL_TEXT_2_PREFIX, SDXL_TEXT_PREFIX, config_only_copy, convert_to_ldm_checkpoint
from helpers.pixels import assert_pixels_close, assert_same_weights
from helpers.progress_recorder import Recorder
from helpers.tiny_sdxl import make_tiny_sdxl

from jupyter_sd.engine import Engine
from jupyter_sd.engine.families import SDXL
from jupyter_sd.engine.schedulers import make_scheduler
from jupyter_sd.recipe.request import PaintRequest


def _pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


@pytest.fixture(scope="module")
def sdxl_dir(tmp_path_factory):
    return make_tiny_sdxl(tmp_path_factory.mktemp("tiny-sdxl"))


@pytest.fixture(scope="module")
def engine():
    return Engine()


@pytest.fixture(scope="module")
def raw_pipe(sdxl_dir):
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(sdxl_dir)
    pipe.set_progress_bar_config(disable=True)
    pipe.base_scheduler_config = dict(pipe.scheduler.config)  # what the engine builds samplers from, too
    return pipe


def test_sdxl_paints_with_sdxl_previews(engine, sdxl_dir):
    recorder = Recorder()
    request = PaintRequest(prompt="a red circle", model=str(sdxl_dir), steps=3, seed=5, n=2, preview_interval=0)
    result = engine.generate(request, recorder)
    pipe = engine._pipe
    assert type(pipe).__name__ == "StableDiffusionXLPipeline" and engine.info()["pipeline"] == type(pipe).__name__
    assert pipe.vae.config.scaling_factor == 0.13025 and pipe.vae.config.force_upcast
    assert engine.info()["family"] == "SDXL" and engine._latent_rgb == SDXL.latent_rgb
    assert result.seeds == [5, 6] and (result.request.width, result.request.height) == (16, 16)  # native size
    assert [image.size for image in result.images] == [(16, 16)] * 2 and not result.interrupted
    assert recorder.steps == [(1, 3), (2, 3), (3, 3)]
    assert len(recorder.frames) == 3 and all(len(frames) == 2 for frames in recorder.frames)
    assert engine._previewer(result.request, pipe).mode == "latent2rgb"
    # the model name recorded for metadata is the folder's, and the infotext says so
    assert f"Model: {sdxl_dir.name}" in result.infotext(0)


@pytest.mark.parametrize(("sampler", "schedule"), [("DPM++ 2M", "Automatic"), ("Euler a", "Automatic")])
def test_same_pixels_as_raw_diffusers(engine, raw_pipe, sdxl_dir, sampler, schedule):
    seed = 5
    raw_pipe.scheduler = make_scheduler(sampler, schedule, raw_pipe.base_scheduler_config)
    expected = raw_pipe(
        "a red circle",
        num_inference_steps=4,
        guidance_scale=7.0,
        generator=[torch.Generator("cpu").manual_seed(seed)],
    ).images[0]
    request = PaintRequest(
        prompt="a red circle", model=str(sdxl_dir), steps=4, seed=seed, sampler=sampler, schedule=schedule, rng="cpu"
    )
    result = engine.generate(request)
    assert _pixels(expected).std() > 1  # not a blank picture: equality means something
    assert np.array_equal(_pixels(result.images[0]), _pixels(expected))


def test_stop_returns_the_last_x0_picture(engine, raw_pipe, sdxl_dir):
    """Stopped after step 2 of 20, the picture is that step's x0, not diffusers' decode of the noisy latent."""
    request = PaintRequest(
        prompt="a dog", model=str(sdxl_dir), steps=20, seed=3, sampler="Euler", preview="full", preview_interval=0
    )
    event = threading.Event()
    stopped = engine.generate(request, Recorder(stop_at=1, event=event), stop=event)
    assert stopped.interrupted_at == 2 and stopped.stopped_by == "stop" and not engine.busy
    assert len(stopped.images) == 1 and stopped.complete == 0
    assert "Interrupted: at step 2/20" in stopped.infotext(0)
    # the same seed, stopped later: its full-VAE preview of step 2 shows step 2's x0
    later = Recorder(stop_at=3, event=threading.Event())
    engine.generate(request, later, stop=later.event)
    picture, x0_at_2 = _pixels(stopped.images[0]), _pixels(later.frames[1][0])
    assert np.abs(picture - x0_at_2).max() <= 1  # one decode, rounded once by the preview, once by diffusers
    # diffusers' own interrupt decodes the noisy latent of step 2 instead: a different picture
    raw_pipe.scheduler = make_scheduler("Euler", "Automatic", raw_pipe.base_scheduler_config)

    def interrupt_after_step_2(pipe, index, timestep, tensors):
        pipe._interrupt = pipe._interrupt or index == 1
        return tensors

    noisy = raw_pipe(
        "a dog",
        num_inference_steps=20,
        guidance_scale=7.0,
        generator=[torch.Generator("cpu").manual_seed(3)],
        callback_on_step_end=interrupt_after_step_2,
    ).images[0]
    assert np.abs(picture - _pixels(noisy)).mean() > 4


def test_sdxl_single_file_loads_as_sdxl(engine, sdxl_dir, tmp_path, offline):
    """An SDXL checkpoint in the original layout, with an SDXL --model-config, paints what its folder paints."""
    from safetensors import safe_open

    path = convert_to_ldm_checkpoint(sdxl_dir, tmp_path / "tiny-xl.safetensors")
    with safe_open(str(path), "pt") as checkpoint:
        names = list(checkpoint.keys())
    assert any(name.startswith(SDXL_TEXT_PREFIX + "text_model.") for name in names)
    assert SDXL_TEXT_2_PREFIX + "transformer.resblocks.0.attn.in_proj_weight" in names
    configs = config_only_copy(sdxl_dir, tmp_path / "configs")  # every weight must come from the file
    request = PaintRequest(prompt="a red circle", model=str(path), model_config=str(configs), steps=3, seed=5)
    from_file = engine.generate(request)
    assert engine.info()["pipeline"] == "StableDiffusionXLPipeline"
    assert engine.info()["family"] == "SDXL" and engine._latent_rgb == SDXL.latent_rgb
    file_pipe = engine._pipe
    from_folder = engine.generate(request.replace(model=str(sdxl_dir), model_config=""))
    assert_same_weights(file_pipe, engine._pipe)  # every weight came from the file
    assert_pixels_close(from_file.images[0], from_folder.images[0])  # CPU kernels may differ by 1/255


def test_single_file_class_without_config_reads_the_checkpoint(sdxl_dir, tiny_model_dir, tmp_path):
    """Without --model-config, an SDXL file is still opened as SDXL (its configs then come from the hub cache)."""
    import diffusers

    from jupyter_sd.engine.loading.single_file import single_file_class as _single_file_class

    sdxl_file = convert_to_ldm_checkpoint(sdxl_dir, tmp_path / "xl.safetensors")
    sd_file = convert_to_ldm_checkpoint(tiny_model_dir, tmp_path / "sd.safetensors")
    assert _single_file_class(diffusers, "", str(sdxl_file)) is diffusers.StableDiffusionXLPipeline
    assert _single_file_class(diffusers, "", str(sd_file)) is diffusers.StableDiffusionPipeline


# -- issue 16: family, size conditioning, refiner -----------------------------------------------------------------


def test_load_line_and_info_say_the_family_and_native_size(sdxl_dir):
    engine = Engine()
    recorder = Recorder()
    engine.generate(PaintRequest(prompt="a red circle", model=str(sdxl_dir), steps=2, seed=1), recorder)
    loaded = [line for line in recorder.notices if line.startswith("loaded ")]
    assert len(loaded) == 1 and loaded[0].startswith(f"loaded {sdxl_dir.name} (SDXL, 16x16) in ")
    info = engine.info()
    assert (info["family"], info["native_size"], info["offload"], info["fast"]) == ("SDXL", "16x16", "none", "off")


def test_size_conditioning_reaches_the_unet(engine, sdxl_dir):
    """A1111's SDXL conditioning: original size = target size = the picture's (height, width), crop (0, 0)."""
    engine.generate(PaintRequest(prompt="a dog", model=str(sdxl_dir), steps=1, seed=1))  # load
    seen = []

    def keep_time_ids(module, args, kwargs):
        seen.append(kwargs["added_cond_kwargs"]["time_ids"].clone())

    handle = engine._pipe.unet.register_forward_pre_hook(keep_time_ids, with_kwargs=True)
    try:
        engine.generate(PaintRequest(prompt="a dog", model=str(sdxl_dir), steps=2, seed=1, width=24, height=16))
    finally:
        handle.remove()
    assert len(seen) == 2
    expected = torch.tensor([[16.0, 24.0, 0.0, 0.0, 16.0, 24.0]] * 2)  # CFG: negative and positive rows
    assert torch.equal(seen[0].float().cpu(), expected)


@pytest.fixture(scope="module")
def refiner_dir(tmp_path_factory):
    """Another tiny SDXL model (other weights) to refine with: its own UNet, the base's VAE and second encoder."""
    return make_tiny_sdxl(tmp_path_factory.mktemp("tiny-refiner"), seed=1)


def test_refiner_paints_the_last_steps_from_the_switch(sdxl_dir, refiner_dir):
    from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

    engine = Engine()
    request = PaintRequest(
        prompt="a red circle", model=str(sdxl_dir), steps=5, seed=4, sampler="Euler",
        refiner=str(refiner_dir), refiner_switch=0.6, rng="cpu",
    )  # fmt: skip
    engine.generate(request.replace(refiner="", steps=1))  # load the base only
    calls = []
    base_hook = engine._pipe.unet.register_forward_pre_hook(lambda m, a: calls.append("base"))
    recorder = Recorder()
    try:
        result = engine.generate(request, recorder)
        refiner = engine._refiner
        refiner_hook = refiner.pipe.unet.register_forward_pre_hook(lambda m, a: calls.append("refiner"))
        calls.clear()
        result = engine.generate(request, Recorder())
    finally:
        base_hook.remove()
    refiner_hook.remove()
    assert calls == ["base"] * 3 + ["refiner"] * 2  # 60 % of 5 steps on the base, the rest on the refiner
    assert f"loaded refiner {refiner_dir.name}, sharing the base's text_encoder_2, tokenizer_2, vae" in recorder.notices
    assert refiner.pipe.vae is engine._pipe.vae and refiner.pipe.text_encoder_2 is engine._pipe.text_encoder_2
    assert refiner.borrowed == ["text_encoder_2", "tokenizer_2", "vae"]  # not even loaded once from the refiner
    assert recorder.steps == [(k, 5) for k in range(1, 6)]
    assert "Refiner: " + str(refiner_dir) in result.infotext(0) and "Refiner switch at: 0.6" in result.infotext(0)
    # the independent reference: diffusers' documented base + refiner recipe
    base = StableDiffusionXLPipeline.from_pretrained(sdxl_dir)
    second = StableDiffusionXLImg2ImgPipeline.from_pretrained(
        refiner_dir, vae=base.vae, text_encoder_2=base.text_encoder_2, tokenizer_2=base.tokenizer_2
    )
    for pipe in (base, second):
        pipe.set_progress_bar_config(disable=True)
        pipe.scheduler = make_scheduler("Euler", "Automatic", dict(pipe.scheduler.config))
    generator = [torch.Generator().manual_seed(4)]
    latents = base(
        "a red circle", num_inference_steps=5, denoising_end=0.6, guidance_scale=7.0, output_type="latent",
        generator=generator,
    ).images  # fmt: skip
    expected = second(
        "a red circle", image=latents, num_inference_steps=5, denoising_start=0.6, guidance_scale=7.0,
        generator=generator,
    ).images[0]  # fmt: skip
    assert _pixels(expected).std() > 1
    assert np.abs(_pixels(result.images[0]) - _pixels(expected)).max() <= 1
    # without --refiner the base paints alone again
    alone = engine.generate(request.replace(refiner=""))
    assert engine._refiner is None and not np.array_equal(_pixels(alone.images[0]), _pixels(result.images[0]))
