"""Heun, DPM++ 2M, UniPC and LCM on Flux and SD3 (tiny folders built from config) against raw diffusers' pipelines
with that scheduler put in by hand; schedule types for each; x0 previews; the recipe written and pasted back; the
one-line refusals. Heun in Flux's img2img, inpaint and hires pass: test_heun_levels.py."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from helpers.paint_modes import generators, init_picture
from helpers.pixels import assert_pixels_close, pixels
from helpers.tiny_flow import make_tiny_flux, make_tiny_sd3

from jupyter_sd.engine.passes import X0Capture
from jupyter_sd.engine.pictures import Pictures
from jupyter_sd.engine.schedulers import make_scheduler
from jupyter_sd.recipe.paste import request_from_infotext
from jupyter_sd.recipe.request import PaintRequest

PROMPT = "a red circle on a blue background"
CLASSES = {"flux": "FluxPipeline", "sd3": "StableDiffusion3Pipeline"}
GUIDANCE = {"flux": 3.5, "sd3": 7.0}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return {
        "flux": make_tiny_flux(tmp_path_factory.mktemp("tiny-flux")),
        "sd3": make_tiny_sd3(tmp_path_factory.mktemp("tiny-sd3")),
    }


def _pipe(family, folder, kind=None):
    import diffusers

    pipe = getattr(diffusers, kind or CLASSES[family]).from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _flux_mu(pipe, size=32):
    """Flux's size-dependent shift exponent for a `size`² picture, as its pipeline computes it."""
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    config = pipe.scheduler.config
    tokens = (size // pipe.vae_scale_factor // 2) ** 2
    return calculate_shift(tokens, config.base_image_seq_len, config.max_image_seq_len, config.base_shift,
                           config.max_shift)  # fmt: skip


def _diffusers_scheduler(sampler, pipe, family, generator):
    """diffusers' own scheduler for `sampler`, configured by hand from the model's scheduler config."""
    import diffusers

    config = pipe.scheduler.config
    flow = {"use_flow_sigmas": True, "prediction_type": "flow_prediction", "flow_shift": config.shift}
    if sampler == "DPM++ 2M":
        return diffusers.DPMSolverMultistepScheduler.from_config(config, **flow)
    if sampler == "UniPC":
        return diffusers.UniPCMultistepScheduler.from_config(config, **flow)
    if sampler == "LCM":  # the flow pipelines hand its step no generator: give it the seeded one
        scheduler = diffusers.FlowMatchLCMScheduler.from_config(config)
        scheduler.step = functools.partial(scheduler.step, generator=generator)
        return scheduler
    if family == "sd3":
        return diffusers.FlowMatchHeunDiscreteScheduler.from_config(config)
    # Flux: Heun takes neither the pipeline's sigmas nor mu; its own spacing at the equal static shift e^mu
    scheduler = diffusers.FlowMatchHeunDiscreteScheduler.from_config(config, shift=math.exp(_flux_mu(pipe)))
    scheduler.register_to_config(use_flow_sigmas=True)  # FluxPipeline then passes no sigmas
    own = scheduler.set_timesteps
    scheduler.set_timesteps = lambda steps, device=None, mu=None: own(steps, device)
    return scheduler


def _raw(family, folder, sampler):
    pipe = _pipe(family, folder)
    generator = generators([9])
    pipe.scheduler = _diffusers_scheduler(sampler, pipe, family, generator)
    return pipe(PROMPT, width=32, height=32, num_inference_steps=4, guidance_scale=GUIDANCE[family],
                generator=generator).images[0]  # fmt: skip


def _request(folder, **changes):
    base = dict(prompt=PROMPT, model=str(folder), width=32, height=32, steps=4, seed=9, rng="cpu", preview="none",
                save=False)  # fmt: skip
    return PaintRequest(**{**base, **changes})


@pytest.mark.parametrize("family", ["flux", "sd3"])
@pytest.mark.parametrize("sampler", ["Heun", "DPM++ 2M", "UniPC", "LCM"])
def test_each_sampler_paints_raw_diffusers_pixels_and_pastes_back(engine, folders, family, sampler):
    """DPM++ 2M is also our default sampler: asked for, it paints DPM++ 2M, not the family's Euler."""
    result = engine.generate(_request(folders[family], sampler=sampler))
    assert_pixels_close(result.images[0], _raw(family, folders[family], sampler))
    euler = engine.generate(_request(folders[family], sampler="Euler")).images[0]
    assert np.abs(pixels(euler) - pixels(result.images[0])).max() > 1  # another picture than Euler's
    text = result.infotext(0)
    assert f"Sampler: {sampler}, Schedule type: Automatic," in text
    pasted = request_from_infotext(text, model=str(folders[family]), save=False, preview="none", rng="cpu")
    assert (pasted.sampler, pasted.schedule) == (sampler, "Automatic")
    assert_pixels_close(engine.generate(pasted).images[0], result.images[0])


@pytest.mark.parametrize("family", ["flux", "sd3"])
def test_dpm_2m_scheduler_equals_diffusers_dpm_solver_on_flow_sigmas(folders, family):
    """Our DPM++ 2M scheduler for flow models is diffusers' DPM solver on flow sigmas, step for step."""
    pipe = _pipe(family, folders[family])
    config = {**pipe.scheduler.config, "_class_name": type(pipe.scheduler).__name__}
    pictures = []
    for scheduler in (
        make_scheduler("DPM++ 2M", "Automatic", config),
        _diffusers_scheduler("DPM++ 2M", pipe, family, None),
    ):
        pipe.scheduler = scheduler
        pictures.append(pipe(PROMPT, width=32, height=32, num_inference_steps=4, guidance_scale=GUIDANCE[family],
                             generator=generators([9])).images[0])  # fmt: skip
    assert_pixels_close(*pictures, tolerance=0)


@pytest.mark.parametrize("family", ["flux", "sd3"])
@pytest.mark.parametrize("sampler", ["Heun", "DPM++ 2M", "UniPC", "LCM"])
@pytest.mark.parametrize("schedule", ["Simple", "Beta", "Karras"])
def test_schedule_types_give_every_sampler_the_flow_euler_levels(folders, family, sampler, schedule):
    import diffusers

    pipe = _pipe(family, folders[family])
    config = {**pipe.scheduler.config, "_class_name": type(pipe.scheduler).__name__}
    mu = _flux_mu(pipe) if family == "flux" else None
    flags = {"Beta": {"use_beta_sigmas": True}, "Karras": {"use_karras_sigmas": True}}.get(schedule, {})
    euler = diffusers.FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config, **flags)
    euler.set_timesteps(4, mu=mu)
    ours = make_scheduler(sampler, schedule, config)
    ours.set_timesteps(4, mu=mu)
    levels = ours.sigmas if sampler != "Heun" else torch.cat([ours.sigmas[:1], ours.sigmas[1::2]])
    torch.testing.assert_close(levels, euler.sigmas, rtol=0, atol=1e-6)


@pytest.mark.parametrize("family", ["flux", "sd3"])
def test_a_schedule_type_changes_heun_pixels(engine, folders, family):
    automatic = engine.generate(_request(folders[family], sampler="Heun")).images[0]
    karras = engine.generate(_request(folders[family], sampler="Heun", schedule="Karras"))
    assert np.abs(pixels(automatic) - pixels(karras.images[0])).max() > 1
    assert "Sampler: Heun, Schedule type: Karras," in karras.infotext(0)


@pytest.mark.parametrize("family", ["flux", "sd3"])
@pytest.mark.parametrize("sampler", ["Euler", "Heun", "DPM++ 2M", "UniPC"])
def test_preview_x0_is_the_clean_picture_of_each_evaluation(folders, family, sampler):
    """x0 = x_t − σ·v with σ = t/1000 of each evaluation (Heun's two a step; the multistep solvers' own x0); after
    the last step, the result."""
    pipe = _pipe(family, folders[family])
    pipe.scheduler = make_scheduler(sampler, "Automatic", {**pipe.scheduler.config, "_class_name": "FlowMatch"})
    capture = X0Capture(pipe.scheduler)
    seen = []
    inner = pipe.scheduler.step

    def step(model_output, timestep, sample, **kwargs):
        output = inner(model_output, timestep, sample, **kwargs)
        if sampler in ("DPM++ 2M", "UniPC"):  # their timesteps are whole numbers: their own x0 of this step
            seen.append((capture.x0, pipe.scheduler.model_outputs[-1]))
        else:
            seen.append((capture.x0, sample - timestep.float() / 1000 * model_output))
        return output

    pipe.scheduler.step = step
    latents = pipe(PROMPT, width=32, height=32, num_inference_steps=4, guidance_scale=GUIDANCE[family],
                   generator=generators([9]), output_type="latent").images  # fmt: skip
    assert len(seen) == (7 if sampler == "Heun" else 4)
    for x0, expected in seen:
        torch.testing.assert_close(x0, expected.to(x0.dtype), rtol=0, atol=1e-5)
    torch.testing.assert_close(seen[-1][0].to(latents.dtype), latents, rtol=0, atol=1e-5)


@pytest.mark.parametrize("family", ["flux", "sd3"])
def test_unipc_img2img_equals_diffusers_img2img(engine, folders, family):
    kind = {"flux": "FluxImg2ImgPipeline", "sd3": "StableDiffusion3Img2ImgPipeline"}[family]
    pipe = _pipe(family, folders[family], kind)
    scheduler = pipe.scheduler = _diffusers_scheduler("UniPC", pipe, family, None)

    def scale_noise(sample, timestep, noise):  # diffusers' UniPC has none: the flow forward process at the start
        sigma = scheduler.sigmas[scheduler.begin_index]
        return sigma * noise + (1 - sigma) * sample

    scheduler.scale_noise = scale_noise
    init = init_picture(32)
    # A1111: int(0.6 × 6) + 1 = 4 steps; the flow pipelines keep 6 − int(6 − 6·s): s = 0.65 keeps 4
    expected = pipe(PROMPT, image=init, strength=0.65, num_inference_steps=6, width=32, height=32,
                    generator=generators([5]), guidance_scale=GUIDANCE[family]).images[0]  # fmt: skip
    request = _request(folders[family], sampler="UniPC", steps=6, seed=5, init="x", strength=0.6)
    result = engine.generate(request, pictures=Pictures(init))
    assert_pixels_close(result.images[0], expected)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"sampler": "DDIM"},
         "sampler: 'DDIM' cannot paint Flux models yet (allowed: Euler, Heun, DPM++ 2M, UniPC, LCM)"),
        ({"schedule": "Exponential"},
         "schedule: 'Exponential' cannot paint Flux models yet (allowed: Automatic, Simple, Beta, Karras)"),
    ],
)  # fmt: skip
def test_what_flow_models_cannot_run_is_one_line(engine, folders, changes, message):
    with pytest.raises(ValueError) as info:
        engine.generate(_request(folders["flux"], **changes))
    assert str(info.value) == message
