"""Chroma, Z-Image, Qwen-Image and Flux.2 klein from tiny diffusers folders built from config: detection, painting
equal to each family's raw diffusers pipeline, previews, stop, defaults, recipes that paint again, X/Y/Z, and
one-line refusals for what these families cannot do yet."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest
import torch
from helpers import tiny_families
from helpers.ipython_shell import run
from helpers.pixels import assert_pixels_close, pixels
from helpers.progress_recorder import Recorder
from PIL import Image

from jupyter_sd.engine import Engine
from jupyter_sd.engine.families import family_named, family_of, family_of_folder
from jupyter_sd.engine.families.fit import fit_request
from jupyter_sd.painting.store import read_parameters
from jupyter_sd.plots.run import run_plot
from jupyter_sd.plots.views import PlotView
from jupyter_sd.recipe.paste import request_from_infotext
from jupyter_sd.recipe.request import PaintRequest

PROMPT = "a red circle on a blue background"


@dataclass(frozen=True)
class Spec:
    """One family under test: its tiny builder, raw pipeline class and how A1111's CFG `g` reaches that pipeline."""

    name: str
    build: Callable[..., Any]
    raw_class: str
    raw_guidance: Callable[[float], dict[str, Any]]
    defaults: dict[str, Any]
    raw_negative: Callable[[Any, str], dict[str, Any]] = lambda pipe, text: {"negative_prompt": text}


SPECS = {
    spec.name: spec
    for spec in (
        Spec("Chroma", tiny_families.make_tiny_chroma, "ChromaPipeline", lambda g: {"guidance_scale": g},
             {"steps": 40, "guidance": 3.0, "sampler": "Euler"}),  # (emphasis weights its T5, as on Flux)
        Spec("Z-Image", tiny_families.make_tiny_zimage, "ZImagePipeline",
             lambda g: {"guidance_scale": g - 1},  # its g guides as pos + g·(pos − neg)
             {"steps": 9, "guidance": 1.0, "sampler": "Euler", "emphasis": "None"}),
        Spec("Qwen-Image", tiny_families.make_tiny_qwenimage, "QwenImagePipeline",
             lambda g: {"true_cfg_scale": g, **({"negative_prompt": " "} if g > 1 else {})},  # the card's empty one
             {"steps": 50, "guidance": 4.0, "sampler": "Euler", "emphasis": "None"}),
        Spec("Flux.2 klein", tiny_families.make_tiny_flux2_klein, "Flux2KleinPipeline", lambda g: {"guidance_scale": g},
             {"steps": 50, "guidance": 4.0, "sampler": "Euler", "emphasis": "None"},  # a base (undistilled) model
             lambda pipe, text: {"negative_prompt_embeds": pipe.encode_prompt(prompt=text)[0]}),  # (no text arg)
    )
}  # fmt: skip


@pytest.fixture(scope="module", params=list(SPECS))
def family(request, tmp_path_factory):
    spec = SPECS[request.param]
    return spec, spec.build(tmp_path_factory.mktemp(f"tiny-{spec.name.replace(' ', '-')}"))


def _raw(spec: Spec, folder, guidance: float, seed: int, steps: int, size: int = 32, **call) -> Image.Image:
    """The family's own diffusers pipeline, untouched: its scheduler, its encoding, its noise from `seed`."""
    import diffusers

    pipe = getattr(diffusers, spec.raw_class).from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator("cpu").manual_seed(seed)
    if "negative_prompt" in call:
        call.update(spec.raw_negative(pipe, call.pop("negative_prompt")))
    call = {**spec.raw_guidance(guidance), **call}
    return pipe(prompt=PROMPT, width=size, height=size, num_inference_steps=steps, generator=generator, **call).images[
        0
    ]


def _request(folder, **changes) -> PaintRequest:
    values = {"prompt": PROMPT, "model": str(folder), "width": 32, "height": 32, "steps": 3, "seed": 7, "rng": "cpu",
              "preview": "none", "save": False}  # fmt: skip
    return PaintRequest(**{**values, **changes})


def test_detected_from_its_folder_and_its_loaded_pipeline(engine, family):
    spec, folder = family
    assert family_of_folder(folder).name == spec.name
    recorder = Recorder()
    engine.generate(_request(folder, steps=1), recorder)
    assert family_of(engine._pipe).name == spec.name
    native = family_named(spec.name).native_size
    assert any(line.startswith("loaded ") and f"({spec.name}, {native}x{native}" in line for line in recorder.notices)
    info = engine.info()
    assert (info["family"], info["native_size"]) == (spec.name, f"{native}x{native}")


def test_paints_what_diffusers_paints_with_x0_previews(engine, family):
    spec, folder = family
    recorder = Recorder()
    request = _request(folder, guidance=4.0, negative_prompt="green", preview="full", preview_interval=0)
    result = engine.generate(request, recorder)
    expected = _raw(spec, folder, 4.0, 7, 3, negative_prompt="green")
    assert pixels(expected).std() > 1
    assert_pixels_close(result.images[0], expected)
    assert recorder.steps == [(k, 3) for k in range(1, 4)]
    assert [frame[0].size for frame in recorder.frames] == [(32, 32)] * 3
    # the last step lands on sigma 0, where x0 = x_t − σ·v is the picture itself
    assert_pixels_close(recorder.frames[-1][0], result.images[0])
    assert not np.array_equal(pixels(recorder.frames[0][0]), pixels(recorder.frames[-1][0]))
    plain = engine.generate(request.replace(guidance=1.0, negative_prompt=""))
    assert_pixels_close(plain.images[0], _raw(spec, folder, 1.0, 7, 3))
    assert np.abs(pixels(plain.images[0]) - pixels(result.images[0])).max() > 0  # CFG reached the model


def test_its_defaults_replace_ours_where_the_user_kept_ours(engine, family):
    spec, folder = family
    engine.generate(_request(folder, steps=1))
    fitted, _ = fit_request(family_of(engine._pipe), engine._pipe, PaintRequest(prompt=PROMPT, width=33, height=40))
    assert {name: getattr(fitted, name) for name in spec.defaults} == spec.defaults
    assert fitted.schedule == "Automatic" and (fitted.width, fitted.height) == (32, 40)  # multiples of 2×2 patches
    mine, _ = fit_request(family_of(engine._pipe), engine._pipe, PaintRequest(prompt=PROMPT, steps=5, guidance=2.5))
    assert (mine.steps, mine.guidance) == (5, 2.5)


def test_stop_keeps_the_x0_of_the_step_it_stopped_at(engine, family):
    """Stopped at step 3 of 5: the picture is that step's x0, the third preview of the same picture unstopped."""
    spec, folder = family
    request = _request(folder, steps=5, preview="full", preview_interval=0)
    whole = Recorder()
    engine.generate(request, whole)
    event = threading.Event()
    result = engine.generate(request, Recorder(stop_at=2, event=event), stop=event)
    assert result.stopped_by == "stop" and result.interrupted_at == 3 and result.images[0].size == (32, 32)
    assert_pixels_close(result.images[0], whole.frames[2][0])


def test_paint_cell_saves_a_recipe_that_paints_again(shell, family, tmp_path, capsys):
    spec, folder = family
    cell = f"%%paint --model {folder} --rng cpu --size 32x32 --steps 2 --seed 5 -o {tmp_path}\n(a red circle:1.2)"
    result = run(shell, cell)
    note = family_named(spec.name).prompt_note  # a language model: emphasis ignored, said in one line
    out = capsys.readouterr().out
    assert note in out if note else "plain text" not in out  # (Chroma's T5 reads the syntax, as Flux's)
    parameters = read_parameters(result.paths[0])
    assert parameters.startswith("(a red circle:1.2)\nSteps: 2, Sampler: Euler, Schedule type: Automatic, CFG scale:")
    assert f"Model: {folder.name}" in parameters and ("Emphasis: None" in parameters) == bool(note)
    again = Engine().generate(request_from_infotext(parameters, model=str(folder), save=False))
    assert np.array_equal(pixels(again.images[0]), pixels(result.images[0]))


def test_xyz_plot_over_cfg_paints_each_cell_as_diffusers(family, tmp_path):
    spec, folder = family
    request = _request(folder, steps=2, seed=3, save=True, outdir=str(tmp_path))
    plot = run_plot(request, {"x": "CFG scale: 1, 5"}, PlotView())
    assert len(plot) == 2 and not plot.interrupted
    for guidance in (1, 5):
        assert_pixels_close(plot[guidance].images[0], _raw(spec, folder, float(guidance), 3, 2))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"sampler": "DPM++ 2M SDE"}, "sampler: 'DPM++ 2M SDE' cannot paint {name} models yet (allowed: Euler, "),
        ({"refiner": "refiner"}, "model: refiner is not supported for {name} models yet"),
    ],
)
def test_what_it_cannot_do_yet_is_one_line(engine, family, changes, message):
    spec, folder = family
    with pytest.raises(ValueError) as info:
        engine.generate(_request(folder, **changes))
    text = str(info.value)
    assert text.startswith(message.format(name=spec.name)) and "\n" not in text and len(text) < 200


def test_a1111_noise_and_variation_seeds_reach_its_pipeline(engine, family):
    """The default (A1111 GPU) noise is ours, not diffusers': it must reach the pipeline in the latents it takes."""
    spec, folder = family
    base = _request(folder, rng="gpu", steps=2, seed=6)
    plain, varied, again = (
        engine.generate(base),
        engine.generate(base.replace(variation_seed=9, variation_strength=0.5)),
        engine.generate(base),
    )
    assert plain.images[0].size == varied.images[0].size == (32, 32) and pixels(plain.images[0]).std() > 1
    assert np.array_equal(pixels(plain.images[0]), pixels(again.images[0]))
    assert np.abs(pixels(plain.images[0]) - pixels(varied.images[0])).max() > 1
    assert "Variation seed: 9" in varied.infotext(0)


def test_a_turbo_model_keeps_its_family_defaults_not_sd_turbos(tmp_path):
    """A folder named Z-Image-Turbo is not SD-Turbo: no few-step preset (Euler a, SGM Uniform) is applied to it."""
    folder = tiny_families.make_tiny_zimage(tmp_path / "Z-Image-Turbo")
    recorder = Recorder()
    result = Engine().generate(_request(folder, steps=2, guidance=5.0), recorder)
    assert not [line for line in recorder.notices if "preset" in line.lower() or "SD-Turbo" in line]
    assert "Sampler: Euler, Schedule type: Automatic, CFG scale: 5," in result.infotext(0)


def test_a_distilled_flux2_klein_paints_its_card_defaults_with_latent2rgb_previews(tmp_path):
    """A step-distilled klein (``is_distilled``) takes 4 steps and CFG 1 unless told; previews unpack the 128
    patch channels to the 32 the Flux.2 latent→RGB factors are for."""
    import diffusers

    folder = tiny_families.make_tiny_flux2_klein(tmp_path / "klein-4b", distilled=True)
    recorder = Recorder()
    request = PaintRequest(prompt=PROMPT, model=str(folder), width=48, height=32, seed=2, rng="cpu",
                           preview="latent2rgb", preview_interval=0, save=False)  # fmt: skip
    result = Engine().generate(request, recorder)
    assert "Steps: 4, Sampler: Euler, Schedule type: Automatic, CFG scale: 1," in result.infotext(0)
    assert [frame[0].size for frame in recorder.frames] == [(48, 32)] * 4
    pipe = diffusers.Flux2KleinPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(prompt=PROMPT, width=48, height=32, num_inference_steps=4, guidance_scale=1.0,
                    generator=torch.Generator("cpu").manual_seed(2)).images[0]  # fmt: skip
    assert_pixels_close(result.images[0], expected)


def test_cfg_on_a_distilled_flux2_klein_is_said_and_its_recipe_says_cfg_1(tmp_path):
    folder = tiny_families.make_tiny_flux2_klein(tmp_path / "klein-4b", distilled=True)
    recorder = Recorder()
    engine = Engine()
    result = engine.generate(_request(folder, steps=2, guidance=5.0), recorder)
    line = "cfg: this Flux.2 klein model is step-distilled and ignores CFG: painted at CFG 1 (not 5)"
    assert line in recorder.notices and "CFG scale: 1," in result.infotext(0)
    plain = engine.generate(_request(folder, steps=2, guidance=1.0))
    assert np.array_equal(pixels(plain.images[0]), pixels(result.images[0]))  # CFG 5 painted as CFG 1 does
