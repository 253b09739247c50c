"""The flow samplers on Chroma, Z-Image, Qwen-Image and Flux.2 (klein, dev) (tiny folders built from config), each
against the family's raw diffusers pipeline given diffusers' own scheduler for that sampler by hand; their schedule
types.
Heun on the families whose pipelines hand their own levels: test_heun_levels.py."""

from __future__ import annotations

import copy
import functools
import math

import numpy as np
import pytest
import torch
from helpers import tiny_families
from helpers.flow_schedulers import as_the_class_takes_it
from helpers.paint_modes import generators
from helpers.pixels import assert_pixels_close

from jupyter_sd.engine.schedulers import make_scheduler
from jupyter_sd.recipe.paste import request_from_infotext
from jupyter_sd.recipe.request import PaintRequest

PROMPT = "a red circle on a blue background"
FAMILIES = {
    # name: (builder, raw pipeline class, our CFG, the raw pipeline's guidance arguments for it)
    "Chroma": (tiny_families.make_tiny_chroma, "ChromaPipeline", 3.0, {"guidance_scale": 3.0}),
    "Z-Image": (tiny_families.make_tiny_zimage, "ZImagePipeline", 2.0, {"guidance_scale": 1.0}),  # its g = CFG − 1
    "Qwen-Image": (tiny_families.make_tiny_qwenimage, "QwenImagePipeline", 4.0,
                   {"true_cfg_scale": 4.0, "negative_prompt": " "}),  # (the card's empty negative prompt)
    "Flux.2 klein": (tiny_families.make_tiny_flux2_klein, "Flux2KleinPipeline", 4.0, {"guidance_scale": 4.0}),
    "Flux.2 [dev]": (tiny_families.make_tiny_flux2_dev, "Flux2Pipeline", 1.0, {"guidance_scale": 4.0}),  # (distilled)
}  # fmt: skip
SAMPLERS = {name: ["Euler", "UniPC", "LCM"] for name in FAMILIES}
SAMPLERS["Flux.2 klein"] += ["Heun"]  # (its pipeline leaves the levels to the sampler, as Flux's)
SAMPLERS["Flux.2 [dev]"] += ["Heun"]  # (klein's sigmas and mu)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return {name: build(tmp_path_factory.mktemp("tiny")) for name, (build, *_) in FAMILIES.items()}


@functools.cache
def _loaded(name, folder):
    import diffusers

    pipe = getattr(diffusers, FAMILIES[name][1]).from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe, pipe.scheduler


def _pipe(name, folder):
    """The family's raw pipeline (loaded once per module) with the model's own scheduler back in."""
    pipe, own = _loaded(name, folder)
    pipe.scheduler = copy.deepcopy(own)
    return pipe


def _by_hand(sampler, pipe, generator, steps):
    """diffusers' own scheduler for `sampler` on the model's scheduler config, as flow_samplers.py maps them."""
    import diffusers

    config = pipe.scheduler.config
    flow = {"use_flow_sigmas": True, "prediction_type": "flow_prediction", "flow_shift": config.shift}
    if sampler == "Euler":
        return pipe.scheduler  # the model's own: Automatic is raw diffusers' pipeline as it is
    if sampler == "LCM":  # the flow pipelines hand its step no generator: give it the seeded one
        scheduler = diffusers.FlowMatchLCMScheduler.from_config(config)
        scheduler.step = functools.partial(scheduler.step, generator=generator)
        return scheduler
    if sampler == "Heun":  # Flux.2 klein's mu, which Heun cannot take, as the equal static shift e^mu
        from diffusers.pipelines.flux2.pipeline_flux2_klein import compute_empirical_mu

        mu = compute_empirical_mu(image_seq_len=4, num_steps=steps)  # 32 px: 2×2 patches of 16 px
        scheduler = diffusers.FlowMatchHeunDiscreteScheduler.from_config(config, shift=math.exp(mu))
        scheduler.register_to_config(use_flow_sigmas=True)  # its pipeline then hands no sigmas
        return as_the_class_takes_it(scheduler, dynamic=False)
    cls = {"DPM++ 2M": diffusers.DPMSolverMultistepScheduler, "UniPC": diffusers.UniPCMultistepScheduler}[sampler]
    return as_the_class_takes_it(cls.from_config(config, **flow), config.get("use_dynamic_shifting", False))


def _raw(name, folder, sampler=None, scheduler=None, steps=3, **call):
    pipe = _pipe(name, folder)
    generator = generators([9])
    pipe.scheduler = scheduler(pipe) if scheduler else _by_hand(sampler, pipe, generator, steps)
    return pipe(prompt=PROMPT, width=32, height=32, num_inference_steps=steps, generator=generator,
                **FAMILIES[name][3], **call).images[0]  # fmt: skip


def _request(name, folder, **changes):
    base = dict(prompt=PROMPT, model=str(folder), width=32, height=32, steps=3, seed=9, rng="cpu", preview="none",
                save=False, guidance=FAMILIES[name][2])  # fmt: skip
    return PaintRequest(**{**base, **changes})


@pytest.mark.parametrize(("name", "sampler"), [(n, s) for n in FAMILIES for s in SAMPLERS[n]])
def test_each_sampler_paints_raw_diffusers_pixels(engine, folders, name, sampler):
    result = engine.generate(_request(name, folders[name], sampler=sampler))
    assert_pixels_close(result.images[0], _raw(name, folders[name], sampler))
    assert f"Sampler: {sampler}, Schedule type: Automatic," in result.infotext(0)
    pasted = request_from_infotext(result.infotext(0), model=str(folders[name]))
    assert (pasted.sampler, pasted.schedule) == (sampler, "Automatic")


@pytest.mark.parametrize("name", list(FAMILIES))
def test_dpm_2m_equals_diffusers_dpm_solver_on_flow_sigmas(folders, name):
    """DPM++ 2M is also our own default sampler, which these families replace by Euler: checked in the pipeline."""

    def ours(pipe):
        config = {**pipe.scheduler.config, "_class_name": type(pipe.scheduler).__name__}
        return make_scheduler("DPM++ 2M", "Automatic", config)

    expected = _raw(name, folders[name], "DPM++ 2M", output_type="latent")
    torch.testing.assert_close(_raw(name, folders[name], scheduler=ours, output_type="latent"), expected, rtol=0,
                               atol=0)  # fmt: skip
    euler = _raw(name, folders[name], "Euler", output_type="latent")
    assert (euler - expected).abs().max() > 1e-3  # another sampler than the model's own Euler


def _pipeline_call(name, config, steps):
    """``set_timesteps``'s arguments as the family's pipeline passes them for a 32 px picture."""
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    if name.startswith("Flux.2"):  # no sigmas: the scheduler's config says use_flow_sigmas
        from diffusers.pipelines.flux2.pipeline_flux2_klein import compute_empirical_mu

        return {"mu": compute_empirical_mu(image_seq_len=4, num_steps=steps)}
    mu = calculate_shift(4, config.base_image_seq_len, config.max_image_seq_len, config.base_shift, config.max_shift)
    return {"sigmas": np.linspace(1.0, 1 / steps, steps), "mu": mu}


@pytest.mark.parametrize("name", list(FAMILIES))
@pytest.mark.parametrize("sampler", ["Heun", "DPM++ 2M", "UniPC", "LCM"])
@pytest.mark.parametrize("schedule", ["Simple", "Karras"])
def test_schedule_types_give_each_sampler_the_flow_euler_levels(folders, name, sampler, schedule):
    """A schedule type is the flow Euler's levels for the pipeline's own call (its sigmas, mu, the model's shift);
    Heun keeps each level after the first twice."""
    import diffusers

    own = diffusers.FlowMatchEulerDiscreteScheduler.from_pretrained(folders[name], subfolder="scheduler")
    call = _pipeline_call(name, own.config, 4)
    flags = {"Karras": {"use_karras_sigmas": True}}.get(schedule, {})
    euler = diffusers.FlowMatchEulerDiscreteScheduler.from_config(own.config, **flags)
    euler.set_timesteps(None if "sigmas" in call else 4, **call)
    ours = make_scheduler(sampler, schedule, {**own.config, "_class_name": type(own).__name__})
    ours.set_timesteps(None if "sigmas" in call else 4, **call)
    levels = ours.sigmas if sampler != "Heun" else torch.cat([ours.sigmas[:1], ours.sigmas[1::2]])
    assert len(ours.sigmas) == (8 if sampler == "Heun" else 5)
    torch.testing.assert_close(levels.float(), euler.sigmas.float(), rtol=0, atol=1e-6)
