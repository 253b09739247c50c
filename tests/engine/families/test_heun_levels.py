"""Heun where the pipeline hands the sampler its own levels: Chroma, Z-Image, Qwen-Image (txt2img, img2img,
inpaint) and Flux's img2img, inpaint and hires pass (tiny folders built from config).

The reference is each family's raw diffusers pipeline with `FormulaHeun` put in by hand: diffusers' flow-matching
Euler computes the levels of the pipeline's own call (its sigmas, shift, ``mu``), every level after the first is
kept twice (two transformer passes a step), and the step is Heun's formula written here: x' = x + dt·v,
x_next = x + dt·(v + v')/2, the last step (to σ = 0) Euler's. Raw img2img pipelines count those 2n − 1 timesteps as
steps, so the test hands them the strength that cuts the n-step schedule where A1111 cuts it.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from helpers import tiny_families
from helpers.paint_modes import box_mask, generators, init_picture
from helpers.pixels import assert_pixels_close, pixels
from helpers.progress_recorder import Recorder
from PIL import Image

from jupyter_sd.engine.pictures import Pictures
from jupyter_sd.recipe.paste import request_from_infotext
from jupyter_sd.recipe.request import PaintRequest

PROMPT = "a red circle on a blue background"
FAMILIES = {
    # name: (builder, raw pipeline class, our CFG, the raw pipeline's guidance arguments for it)
    "Chroma": (tiny_families.make_tiny_chroma, "ChromaPipeline", 3.0, {"guidance_scale": 3.0}),
    "Z-Image": (tiny_families.make_tiny_zimage, "ZImagePipeline", 2.0, {"guidance_scale": 1.0}),  # its g = CFG − 1
    "Qwen-Image": (tiny_families.make_tiny_qwenimage, "QwenImagePipeline", 4.0,
                   {"true_cfg_scale": 4.0, "negative_prompt": " "}),
}  # fmt: skip
IMG2IMG = {"Chroma": "ChromaImg2ImgPipeline", "Z-Image": "ZImageImg2ImgPipeline",
           "Qwen-Image": "QwenImageImg2ImgPipeline"}  # fmt: skip
INPAINT = {"Chroma": "ChromaInpaintPipeline", "Z-Image": "ZImageInpaintPipeline",
           "Qwen-Image": "QwenImageInpaintPipeline"}  # fmt: skip


class FormulaHeun(FlowMatchEulerDiscreteScheduler):
    """Heun from its formula on the flow Euler's levels of the pipeline's call, each level after the first twice."""

    order = 2

    def set_timesteps(self, num_inference_steps=None, device=None, sigmas=None, mu=None):
        super().set_timesteps(num_inference_steps, device, sigmas=sigmas, mu=mu)  # raw diffusers' Euler levels
        self.levels = self.sigmas.clone()  # s0 … s(n−1), 0
        self.timesteps = torch.cat([self.timesteps[:1], self.timesteps[1:].repeat_interleave(2)])
        self.evaluations, self.saved = 0, None

    def scale_noise(self, sample, timestep, noise):
        sigma = self._level(timestep)
        return self.levels[sigma] * noise + (1 - self.levels[sigma]) * sample

    def _level(self, timestep):
        return int((self.levels[:-1] * 1000 - torch.as_tensor(timestep).flatten()[0]).abs().argmin())

    def step(self, model_output, timestep, sample, return_dict=True, **kwargs):
        self.evaluations += 1
        v, x = model_output.float(), sample.float()
        if self.saved is None:  # the Euler prediction to the next level (the result, on the last step)
            index = self._level(timestep)
            dt = self.levels[index + 1] - self.levels[index]
            out = x + dt * v
            self.saved = (x, v, dt) if self.levels[index + 1] > 0 else None
        else:  # the correction: the mean of both slopes from where the step began
            x0, v0, dt = self.saved
            out, self.saved = x0 + dt * (v0 + v) / 2, None
        out = out.to(model_output.dtype)
        return (out,) if not return_dict else type("Output", (), {"prev_sample": out})()


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    built = {name: build(tmp_path_factory.mktemp("tiny")) for name, (build, *_) in FAMILIES.items()}
    from helpers.tiny_flow import make_tiny_flux

    built["Flux"] = make_tiny_flux(tmp_path_factory.mktemp("tiny-flux"))
    return built


def _raw(class_name, folder):
    import diffusers

    pipe = getattr(diffusers, class_name).from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = FormulaHeun.from_config(pipe.scheduler.config)
    return pipe


def _request(name, folder, **changes):
    base = dict(prompt=PROMPT, model=str(folder), width=32, height=32, steps=3, seed=9, rng="cpu", preview="none",
                save=False, sampler="Heun", guidance=FAMILIES[name][2] if name in FAMILIES else 1.0)  # fmt: skip
    return PaintRequest(**{**base, **changes})


@pytest.mark.parametrize("name", list(FAMILIES))
def test_heun_paints_the_formula_on_the_pipelines_levels(engine, folders, name):
    pipe = _raw(FAMILIES[name][1], folders[name])
    expected = pipe(prompt=PROMPT, width=32, height=32, num_inference_steps=3, generator=generators([9]),
                    **FAMILIES[name][3]).images[0]  # fmt: skip
    assert pipe.scheduler.evaluations == 5  # 3 steps: two passes each, the last one
    recorder = Recorder()
    result = engine.generate(_request(name, folders[name]), recorder)
    assert_pixels_close(result.images[0], expected)
    assert recorder.steps[-1] == (3, 3) and result.steps_total == 3  # a Heun step counts as one (A1111, Forge)
    euler = engine.generate(_request(name, folders[name], sampler="Euler")).images[0]
    assert np.abs(pixels(euler) - pixels(result.images[0])).max() > 1  # another picture than Euler's
    text = result.infotext(0)
    assert "Steps: 3, Sampler: Heun, Schedule type: Automatic," in text
    assert request_from_infotext(text, model=str(folders[name])).sampler == "Heun"


def test_heun_stop_and_previews_on_chroma(engine, folders):
    event = threading.Event()
    request = _request("Chroma", folders["Chroma"], steps=4, preview="latent2rgb", preview_interval=0)
    recorder = Recorder(stop_at=2, event=event)
    result = engine.generate(request, recorder, stop=event)
    # the stop asked at step 2's first pass is seen at its second: 2 steps done, a preview of each pass
    assert result.stopped_by == "stop" and result.interrupted_at == 2 and result.images[0].size == (32, 32)
    assert recorder.steps == [(1, 4), (1, 4), (2, 4)] and len(recorder.frames) == 3


def _flux_reference(strength):
    """The raw Flux pipeline's strength that cuts Heun's 6-step schedule as A1111 does for `strength`.

    A1111 runs int(6·s) + 1 steps, the last ones: at 0.6, 4 steps from level 2. The raw pipeline counts 2·6 − 1 = 11
    timesteps and cuts int(11 − 11·s') levels (two timesteps each): s' = 8.5 / 11 cuts 2.
    """
    run = int(strength * 6) + 1
    return run, (11 - (6 - run) - 0.5) / 11


@pytest.mark.parametrize("mode", ["img2img", "inpaint"])
def test_heun_on_flux_img2img_and_inpaint_runs_a1111s_steps(engine, folders, mode, monkeypatch):
    init, mask = init_picture(32), box_mask(32, (8, 8, 24, 24))
    run, raw_strength = _flux_reference(0.6)
    pipe = _raw("FluxImg2ImgPipeline" if mode == "img2img" else "FluxInpaintPipeline", folders["Flux"])
    masked = {"mask_image": mask} if mode == "inpaint" else {}
    expected = pipe(PROMPT, image=init, strength=raw_strength, num_inference_steps=6, width=32, height=32,
                    generator=generators([5]), guidance_scale=3.5, **masked).images[0]  # fmt: skip
    assert pipe.scheduler.evaluations == 2 * run - 1 == 7
    if mode == "inpaint":
        expected = Image.composite(expected, init, mask)
    import diffusers

    passes, forward = [], diffusers.FluxTransformer2DModel.forward
    monkeypatch.setattr(
        diffusers.FluxTransformer2DModel, "forward", lambda *a, **k: passes.append(1) or forward(*a, **k)
    )
    recorder = Recorder()
    changes = {"mask": "m", "mask_blur": 0} if mode == "inpaint" else {}
    request = _request("Flux", folders["Flux"], steps=6, seed=5, init="x", strength=0.6, **changes)
    result = engine.generate(request, recorder, pictures=Pictures(init, mask if mode == "inpaint" else None))
    assert recorder.steps[-1] == (run, run) and result.steps_total == run == 4
    assert len(passes) == 7  # 4 Heun steps: two transformer passes each, the last one
    assert_pixels_close(result.images[0], expected)


@pytest.mark.parametrize("mode", ["img2img", "inpaint"])
@pytest.mark.parametrize("name", list(IMG2IMG))
def test_heun_img2img_and_inpaint_on_each_family_run_a1111s_steps(engine, folders, name, mode):
    init, mask = init_picture(32), box_mask(32, (8, 8, 24, 24))
    run, raw_strength = _flux_reference(0.6)  # (the same cut: these pipelines count as Flux's)
    pipe = _raw((IMG2IMG if mode == "img2img" else INPAINT)[name], folders[name])
    if name == "Chroma" and mode == "inpaint":  # diffusers 0.42's reads a key Chroma's transformer lacks (chroma.py)
        pipe.transformer.register_to_config(guidance_embeds=False)
    masked = {"mask_image": mask} if mode == "inpaint" else {}
    expected = pipe(PROMPT, image=init, strength=raw_strength, num_inference_steps=6, width=32, height=32,
                    generator=generators([5]), **masked, **FAMILIES[name][3]).images[0]  # fmt: skip
    assert pipe.scheduler.evaluations == 2 * run - 1
    if mode == "inpaint":
        expected = Image.composite(expected, init, mask)
    recorder = Recorder()
    changes = {"mask": "m", "mask_blur": 0} if mode == "inpaint" else {}
    request = _request(name, folders[name], steps=6, seed=5, init="x", strength=0.6, **changes)
    result = engine.generate(request, recorder, pictures=Pictures(init, mask if mode == "inpaint" else None))
    assert recorder.steps[-1] == (run, run) and result.steps_total == run
    assert_pixels_close(result.images[0], expected)
    if mode == "inpaint":  # outside the mask the picture is the init's
        outside = np.asarray(mask) == 0
        assert np.array_equal(pixels(result.images[0])[outside], pixels(init)[outside])


def test_heun_in_flux_hires_pass_equals_the_formula(engine, folders):
    """Euler first, then a Heun hires pass: int(4 / 0.5) = 8 levels scheduled, the last 4 run as 4 Heun steps.

    The reference: raw FluxPipeline's latents, unpacked, ×2 by torch's bilinear interpolate, then raw
    FluxImg2ImgPipeline with `FormulaHeun`, which counts 2·8 − 1 = 15 timesteps: s' = 10.5 / 15 cuts 4 levels.
    """
    import diffusers

    txt2img = diffusers.FluxPipeline.from_pretrained(folders["Flux"])
    txt2img.set_progress_bar_config(disable=True)
    latents = txt2img(PROMPT, width=32, height=32, num_inference_steps=4, guidance_scale=3.5,
                      generator=generators([5]), output_type="latent").images  # fmt: skip
    latents = txt2img._unpack_latents(latents, 32, 32, txt2img.vae_scale_factor)
    latents = torch.nn.functional.interpolate(latents, size=(32, 32), mode="bilinear")  # the tiny VAE halves
    img2img = diffusers.FluxImg2ImgPipeline.from_pipe(txt2img)
    img2img.scheduler = FormulaHeun.from_config(txt2img.scheduler.config)
    expected = img2img(PROMPT, image=latents, strength=10.5 / 15, num_inference_steps=8, width=64, height=64,
                       guidance_scale=3.5, generator=generators([5])).images[0]  # fmt: skip
    assert img2img.scheduler.evaluations == 7
    recorder = Recorder()
    request = _request("Flux", folders["Flux"], sampler="Euler", steps=4, seed=5, hires=2.0, hires_upscaler="Latent",
                       hires_denoise=0.5, hires_sampler="Heun")  # fmt: skip
    result = engine.generate(request, recorder)
    assert recorder.phases[-1][0] == "hires" and recorder.steps[-1] == (4, 4)
    assert_pixels_close(result.images[0], expected)
    assert "Hires sampler: Heun" in result.infotext(0)
