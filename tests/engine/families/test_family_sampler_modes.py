"""DPM++ 2M, UniPC and LCM in img2img and inpaint on Chroma, Z-Image and Qwen-Image (tiny folders built from config),
against each family's own diffusers Img2Img/Inpaint pipeline given diffusers' scheduler class for that sampler on the
model's scheduler config by hand: the same pixels for the same seed (``--rng cpu``) at the strength that runs A1111's
steps, the tail of the schedule from the right noise level, and the original kept outside the mask."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from helpers import tiny_families
from helpers.flow_schedulers import as_the_class_takes_it
from helpers.paint_modes import box_mask, generators, init_picture
from helpers.pixels import assert_pixels_close, pixels
from helpers.progress_recorder import Recorder
from PIL import Image

from jupyter_sd.engine import warmup
from jupyter_sd.engine.pictures import Pictures
from jupyter_sd.recipe.request import PaintRequest

PROMPT = "a red circle on a blue background"
FAMILIES = {  # name → (builder, img2img class, inpaint class, how A1111's CFG g reaches the raw pipeline)
    "Chroma": (tiny_families.make_tiny_chroma, "ChromaImg2ImgPipeline", "ChromaInpaintPipeline",
               lambda g: {"guidance_scale": g}),
    "Z-Image": (tiny_families.make_tiny_zimage, "ZImageImg2ImgPipeline", "ZImageInpaintPipeline",
                lambda g: {"guidance_scale": g - 1}),
    "Qwen-Image": (tiny_families.make_tiny_qwenimage, "QwenImageImg2ImgPipeline", "QwenImageInpaintPipeline",
                   lambda g: {"true_cfg_scale": g, "negative_prompt": " "}),  # (the card's empty negative prompt)
}  # fmt: skip
SAMPLERS = ["DPM++ 2M", "UniPC", "LCM"]
STEPS = 6


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    warmup.wait()
    return {name: spec[0](tmp_path_factory.mktemp("tiny")) for name, spec in FAMILIES.items()}


@functools.cache
def _loaded(name, folder, mode):
    import diffusers

    pipe = getattr(diffusers, FAMILIES[name][1 if mode == "img2img" else 2]).from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    if name == "Chroma" and mode == "inpaint":  # diffusers 0.42's reads a key Chroma's transformer lacks (chroma.py)
        pipe.transformer.register_to_config(guidance_embeds=False)
    return pipe, dict(pipe.scheduler.config)


def _scale_noise(scheduler):
    """Flow matching's forward process x = σ·noise + (1 − σ)·x0 at the level of the timestep asked for.

    diffusers' DPM solver and UniPC have no ``scale_noise`` (the flow img2img/inpaint pipelines call it): the level
    is the scheduler's own sigma at that timestep's place in its timesteps.
    """

    def scale_noise(sample, timestep, noise):
        index = int((scheduler.timesteps == timestep.flatten()[0]).nonzero()[0])
        sigma = scheduler.sigmas[index].to(sample.dtype)
        return sigma * noise + (1 - sigma) * sample

    return scale_noise


def _by_hand(sampler, config, generator):
    """diffusers' own scheduler class for `sampler` on the model's scheduler `config`."""
    import diffusers

    if sampler == "LCM":  # the flow pipelines hand its step no generator: give it the seeded one
        scheduler = diffusers.FlowMatchLCMScheduler.from_config(config)
        scheduler.step = functools.partial(scheduler.step, generator=generator)
        return scheduler
    flow = {"use_flow_sigmas": True, "prediction_type": "flow_prediction", "flow_shift": config["shift"]}
    cls = {"DPM++ 2M": diffusers.DPMSolverMultistepScheduler, "UniPC": diffusers.UniPCMultistepScheduler}[sampler]
    scheduler = as_the_class_takes_it(cls.from_config(config, **flow), config.get("use_dynamic_shifting", False))
    scheduler.scale_noise = _scale_noise(scheduler)
    return scheduler


def _raw(name, folder, mode, sampler, levels=None, **call):
    """The family's raw pipeline for `mode` with `sampler` by hand, CPU generators of seed 5, CFG 2; `levels` gets
    the scheduler's noise level at each step the pipeline runs."""
    pipe, config = _loaded(name, folder, mode)
    generator = generators([5])
    pipe.scheduler = _by_hand(sampler, config, generator[0])

    def record(pipe, index, timestep, tensors):
        levels.append(float(pipe.scheduler.sigmas[pipe.scheduler.step_index - 1]))
        return tensors

    extra = {"callback_on_step_end": record} if levels is not None else {}
    return pipe(PROMPT, num_inference_steps=STEPS, width=32, height=32, generator=generator, **FAMILIES[name][3](2.0),
                **extra, **call).images[0]  # fmt: skip


def _request(folder, **changes):
    base = dict(prompt=PROMPT, model=str(folder), steps=STEPS, seed=5, rng="cpu", preview="none", save=False,
                guidance=2.0, width=32, height=32, init="x")  # fmt: skip
    return PaintRequest(**{**base, **changes})


STRENGTHS = [  # (ours, the raw pipeline's that runs the same steps, steps run)
    (0.6, 0.65, 4),  # A1111: int(0.6 × 6) + 1 = 4; the flow pipelines keep 6 − int(6 − 6·s): 0.65 keeps those 4
    (0.3, 0.3, 2),
    (1.0, 1.0, 6),
]


@pytest.mark.parametrize(("strength", "raw_strength", "run"), STRENGTHS)
@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("name", list(FAMILIES))  # (one family's tests together: the engine keeps its pipeline)
def test_img2img_runs_a1111_steps_from_the_right_level_as_diffusers_img2img(
    engine, folders, name, sampler, strength, raw_strength, run
):
    """The raw pipeline runs the last `run` levels of the 6-step schedule; ours paints its pixels in `run` steps."""
    init, levels = init_picture(32), []
    expected = _raw(name, folders[name], "img2img", sampler, levels, image=init, strength=raw_strength)
    full = _loaded(name, folders[name], "img2img")[0].scheduler.sigmas  # the whole 6-step schedule it set
    assert len(full) == STEPS + 1 and levels == [float(s) for s in full[STEPS - run : STEPS]]  # its tail
    recorder = Recorder()
    request = _request(folders[name], sampler=sampler, strength=strength)
    result = engine.generate(request, recorder, pictures=Pictures(init))
    assert_pixels_close(result.images[0], expected)
    assert recorder.steps[-1] == (run, run) and result.steps_total == run
    assert f"Sampler: {sampler}, Schedule type: Automatic," in result.infotext(0)
    if strength == 0.6:  # another picture than Euler's (at 2 steps the tiny models' pictures are too alike)
        euler = engine.generate(_request(folders[name], strength=strength), pictures=Pictures(init)).images[0]
        assert np.abs(pixels(euler) - pixels(result.images[0])).max() > 1


@pytest.mark.parametrize(("strength", "raw_strength", "run"), [STRENGTHS[0], STRENGTHS[2]])
@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("name", list(FAMILIES))
def test_inpaint_equals_diffusers_inpaint_and_keeps_the_rest(engine, folders, name, sampler, strength, raw_strength,
                                                             run):  # fmt: skip
    init, mask = init_picture(32), box_mask(32, (8, 8, 24, 24))
    painted = _raw(name, folders[name], "inpaint", sampler, image=init, mask_image=mask, strength=raw_strength)
    expected = Image.composite(painted, init, mask)
    recorder = Recorder()
    request = _request(folders[name], sampler=sampler, mask="m", strength=strength, mask_blur=0)
    result = engine.generate(request, recorder, pictures=Pictures(init, mask))
    assert_pixels_close(result.images[0], expected)
    assert recorder.steps[-1] == (run, run)
    outside = np.asarray(mask) == 0
    assert np.array_equal(pixels(result.images[0])[outside], pixels(init)[outside])
    assert np.abs(pixels(result.images[0])[12:20, 12:20] - pixels(init)[12:20, 12:20]).max() > 0


def test_scale_noise_reference_is_the_flow_forward_process():
    """The reference's own noising (for schedulers diffusers gives none) against a flow Euler's ``scale_noise``."""
    import diffusers

    euler = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)
    euler.set_timesteps(6)
    x0, noise = torch.randn(1, 4, 2, 2), torch.randn(1, 4, 2, 2)
    for timestep in euler.timesteps[:-1]:
        expected = euler.scale_noise(x0, timestep[None], noise)
        torch.testing.assert_close(_scale_noise(euler)(x0, timestep[None], noise), expected)
