"""A1111's random sources (``--rng``): each picture equals one built here from that source's numbers.

``cpu`` is torch's CPU generator, what diffusers' own examples draw; ``gpu`` (A1111's default) and ``nv`` are
CUDA's Philox numbers, computed on the CPU on this machine (jupyter_sd.engine.philox). The references below are
plain diffusers, or a denoising loop written out with diffusers' scheduler and the UNet, fed those numbers.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from helpers.paint_modes import raw_txt2img
from helpers.pixels import assert_pixels_close, pixels

from jupyter_sd.engine import Engine
from jupyter_sd.engine.philox import PhiloxGenerator, randn
from jupyter_sd.engine.schedulers import make_scheduler
from jupyter_sd.engine.seeds import NoiseSource, slerp
from jupyter_sd.engine.step_noise import step_globals, supply_step_noise
from jupyter_sd.recipe.paste import request_from_infotext
from jupyter_sd.recipe.request import PaintRequest

PROMPT = "a red circle"
GUIDANCE = 7.0
STEPS = 5


@pytest.fixture(scope="module")
def engine():
    return Engine()


@pytest.fixture(scope="module")
def raw(tiny_model_dir):
    return raw_txt2img(tiny_model_dir)


def _request(model_dir, **options) -> PaintRequest:
    base = dict(prompt=PROMPT, model=str(model_dir), steps=STEPS, seed=12, guidance=GUIDANCE, width=16, height=16)
    return PaintRequest(**{**base, "preview": "none", "save": False, **options})


def _shape(pipe, batch: int | None = None) -> tuple[int, ...]:
    factor = pipe.vae_scale_factor
    one = (pipe.unet.config.in_channels, 16 // factor, 16 // factor)
    return one if batch is None else (batch, *one)


def _raw_picture(raw, sampler: str, **call):
    raw.scheduler = make_scheduler(sampler, "Automatic", raw._base)
    return raw(PROMPT, num_inference_steps=STEPS, guidance_scale=GUIDANCE, width=16, height=16, **call).images[0]


def _euler_a_reference(raw, start, step_noise):
    """Euler a written out: diffusers' sigmas, timesteps and UNet; the noise given (start, then step_noise())."""
    scheduler = make_scheduler("Euler a", "Automatic", raw._base)
    scheduler.set_timesteps(STEPS)
    positive, negative = raw.encode_prompt(PROMPT, "cpu", 1, True, negative_prompt=None)
    embeddings = torch.cat([negative, positive])
    latents = start * scheduler.init_noise_sigma
    with torch.no_grad():
        for index, timestep in enumerate(scheduler.timesteps):
            sigma, sigma_to = scheduler.sigmas[index], scheduler.sigmas[index + 1]
            model_input = torch.cat([latents] * 2) / ((sigma**2 + 1) ** 0.5)
            uncond, text = raw.unet(model_input, timestep, encoder_hidden_states=embeddings).sample.chunk(2)
            eps = uncond + GUIDANCE * (text - uncond)
            sigma_up = (sigma_to**2 * (sigma**2 - sigma_to**2) / sigma**2) ** 0.5
            sigma_down = (sigma_to**2 - sigma_up**2) ** 0.5
            x0 = latents - sigma * eps
            latents = latents + (latents - x0) / sigma * (sigma_down - sigma) + step_noise() * sigma_up
        decoded = raw.vae.decode(latents / raw.vae.config.scaling_factor).sample
    return raw.image_processor.postprocess(decoded, output_type="pil")[0]


def _recorded_latents(monkeypatch, engine, request):
    """Paint `request`, keeping the starting noise the engine hands the pipeline (``latents``)."""
    from diffusers import StableDiffusionPipeline

    seen = []
    original = StableDiffusionPipeline.prepare_latents

    def prepare_latents(self, *args, **kwargs):
        seen.append(inspect.signature(original).bind(self, *args, **kwargs).arguments.get("latents"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(StableDiffusionPipeline, "prepare_latents", prepare_latents)
    result = engine.generate(request)
    return result, seen[0]


# -- cpu: diffusers' own generator path, unchanged ------------------------------------------------------------------


@pytest.mark.parametrize("sampler", ["DPM++ 2M", "Euler a"])
def test_cpu_source_equals_diffusers_with_a_cpu_generator(engine, raw, tiny_model_dir, sampler):
    expected = _raw_picture(raw, sampler, generator=torch.Generator("cpu").manual_seed(12))
    ours = engine.generate(_request(tiny_model_dir, sampler=sampler, rng="cpu"))
    assert_pixels_close(ours.images[0], expected)
    assert "RNG: CPU" in ours.infotext(0)


# -- gpu on a CPU machine: CUDA's Philox numbers ---------------------------------------------------------------------


def test_gpu_source_starts_from_philox_noise_and_paints_its_picture(monkeypatch, engine, raw, tiny_model_dir):
    result, latents = _recorded_latents(monkeypatch, engine, _request(tiny_model_dir, sampler="DPM++ 2M"))
    assert result.request.rng == "gpu" and "RNG" not in result.infotext(0)  # A1111 writes its default as no key
    assert torch.equal(latents, randn(12, _shape(raw, 1)))
    expected = _raw_picture(raw, "DPM++ 2M", latents=randn(12, _shape(raw, 1)))  # diffusers scales by init sigma
    assert_pixels_close(result.images[0], expected)


def test_gpu_source_euler_a_steps_continue_each_images_philox_stream(engine, raw, tiny_model_dir):
    generator = PhiloxGenerator(12)
    start = generator.randn(_shape(raw))[None]  # the starting noise: the generator's first draw …
    expected = _euler_a_reference(raw, start, lambda: generator.randn(_shape(raw))[None])  # … then each step's
    ours = engine.generate(_request(tiny_model_dir, sampler="Euler a"))
    assert_pixels_close(ours.images[0], expected)
    fresh = _euler_a_reference(raw, randn(12, _shape(raw, 1)), lambda: torch.zeros(_shape(raw, 1)))
    assert not np.array_equal(pixels(expected), pixels(fresh))  # the step noise matters to the picture


def test_gpu_source_variation_seed_mixes_philox_noises(monkeypatch, engine, raw, tiny_model_dir):
    request = _request(tiny_model_dir, sampler="DPM++ 2M", variation_seed=40, variation_strength=0.35)
    result, latents = _recorded_latents(monkeypatch, engine, request)
    mixed = slerp(0.35, randn(12, _shape(raw)), randn(40, _shape(raw)))[None]
    assert torch.equal(latents, mixed)
    assert_pixels_close(result.images[0], _raw_picture(raw, "DPM++ 2M", latents=mixed))


def test_gpu_source_ensd_draws_the_step_noise_from_seed_plus_delta(engine, raw, tiny_model_dir):
    delta = PhiloxGenerator(12 + 31337)
    expected = _euler_a_reference(raw, randn(12, _shape(raw, 1)), lambda: delta.randn(_shape(raw))[None])
    ours = engine.generate(_request(tiny_model_dir, sampler="Euler a", eta_noise_seed_delta=31337))
    assert_pixels_close(ours.images[0], expected)
    assert "ENSD: 31337" in ours.infotext(0)


def test_nv_equals_gpu_off_cuda(engine, tiny_model_dir):
    for sampler in ("Euler a", "DPM++ 2M"):
        gpu = engine.generate(_request(tiny_model_dir, sampler=sampler, rng="gpu")).images[0]
        nv = engine.generate(_request(tiny_model_dir, sampler=sampler, rng="nv"))
        assert np.array_equal(pixels(gpu), pixels(nv.images[0])), sampler
        assert "RNG: NV" in nv.infotext(0)


@pytest.mark.parametrize("sampler", ["Euler a", "DPM++ 2M"])
def test_the_cpu_source_paints_another_picture(engine, tiny_model_dir, sampler):
    """Three sources, and off CUDA two sets of numbers: gpu and nv are both Philox here (above), cpu is not."""
    painted = {rng: engine.generate(_request(tiny_model_dir, sampler=sampler, rng=rng)) for rng in ("gpu", "cpu")}
    assert not np.array_equal(pixels(painted["gpu"].images[0]), pixels(painted["cpu"].images[0]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_gpu_is_torchs_generator_and_nv_its_emulation():
    shape = (4, 64, 64)
    for seed in (0, 12, 2**32 + 5):
        gpu = NoiseSource("gpu", [seed], "cuda")
        assert isinstance(gpu.generators[0], torch.Generator) and gpu.generators[0].device.type == "cuda"
        expected = torch.randn(shape, generator=torch.Generator("cuda").manual_seed(seed), device="cuda")
        first = gpu.first(shape)
        assert first.device.type == "cuda" and torch.equal(first[0], expected)
        nv = NoiseSource("nv", [seed], "cuda")
        torch.testing.assert_close(nv.first(shape)[0].cuda(), expected, rtol=0, atol=1e-5)
        torch.testing.assert_close(nv.next(shape).cuda(), gpu.next(shape), rtol=0, atol=1e-5)  # the streams go on


def test_a_pasted_rng_cpu_paints_with_the_cpu_source(engine, raw, tiny_model_dir):
    text = f"{PROMPT}\nSteps: {STEPS}, Sampler: Euler a, CFG scale: {GUIDANCE}, Seed: 12, Size: 16x16, RNG: CPU"
    request = request_from_infotext(text, model=str(tiny_model_dir), preview="none", save=False)
    assert request.rng == "cpu"
    expected = _raw_picture(raw, "Euler a", generator=torch.Generator("cpu").manual_seed(12))
    assert_pixels_close(engine.generate(request).images[0], expected)
    default = request_from_infotext(text.replace(", RNG: CPU", ""), model=str(tiny_model_dir))
    assert default.rng == "gpu"


# -- the step-noise hook ---------------------------------------------------------------------------------------------


def test_step_noise_hook_keeps_the_signature_and_restores_randn_tensor(raw):
    scheduler = make_scheduler("Euler a", "Automatic", raw._base)
    namespace = step_globals(scheduler)
    original = namespace["randn_tensor"]
    source = NoiseSource("nv", [3, 4])
    assert supply_step_noise(scheduler, source)
    assert "generator" in inspect.signature(scheduler.step).parameters  # the pipeline still passes it
    scheduler.set_timesteps(3)
    sample = torch.zeros((2, *_shape(raw)))
    out = scheduler.step(torch.zeros_like(sample), scheduler.timesteps[0], sample).prev_sample
    assert namespace["randn_tensor"] is original
    sigma, sigma_to = scheduler.sigmas[0], scheduler.sigmas[1]
    sigma_up = (sigma_to**2 * (sigma**2 - sigma_to**2) / sigma**2) ** 0.5
    expected = torch.stack([randn(3, _shape(raw)), randn(4, _shape(raw))]) * sigma_up  # offset 0: nothing drawn yet
    assert torch.allclose(out, expected, atol=1e-6)


@pytest.mark.parametrize("sampler", ["DPM++ 2M SDE", "DPM++ SDE", "Heun"])
def test_sde_and_noiseless_samplers_keep_their_own_noise(raw, sampler):
    """SDE solvers keep diffusers' seeded noise; samplers whose step draws nothing are left unwrapped."""
    scheduler = make_scheduler(sampler, "Automatic", raw._base)
    step = scheduler.step
    assert not supply_step_noise(scheduler, NoiseSource("gpu", [1]))
    assert scheduler.step == step


def test_cpu_source_leaves_the_step_noise_to_diffusers(raw):
    scheduler = make_scheduler("Euler a", "Automatic", raw._base)
    assert not supply_step_noise(scheduler, NoiseSource("cpu", [1]))


@pytest.mark.parametrize("options", [{"init": "x", "strength": 0.6}, {"hires": 2, "hires_steps": 3}])
def test_gpu_source_reaches_img2img_and_the_hires_pass(engine, tiny_model_dir, options):
    from helpers.paint_modes import init_picture

    from jupyter_sd.engine.pictures import Pictures

    pictures = Pictures(init_picture()) if "init" in options else None
    painted = {
        rng: engine.generate(_request(tiny_model_dir, sampler="Euler a", rng=rng, **options), pictures=pictures)
        for rng in ("gpu", "cpu", "nv")
    }
    gpu, cpu, nv = (pixels(painted[rng].images[0]) for rng in ("gpu", "cpu", "nv"))
    assert not np.array_equal(gpu, cpu)
    assert np.array_equal(gpu, nv)
