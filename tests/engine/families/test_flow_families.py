"""Flux.1 and SD3 from diffusers folders (tiny ones built from config): detection, painting equal to raw diffusers,
x0 previews, stop, infotext, and one-line refusals for what these families cannot do yet."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from helpers.ipython_shell import run
from helpers.pixels import assert_pixels_close, pixels
from helpers.progress_recorder import Recorder
from IPython.core.error import UsageError
from PIL import Image

from jupyter_sd.engine.families import family_of_folder
from jupyter_sd.recipe.request import PaintRequest

PROMPT = "a red circle on a blue background"


def _raw(cls, folder, **call):
    from diffusers import FlowMatchEulerDiscreteScheduler

    pipe = cls.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    assert isinstance(pipe.scheduler, FlowMatchEulerDiscreteScheduler)  # the model's own scheduler, untouched
    seed = call.pop("seed")
    return pipe(PROMPT, width=32, height=32, generator=torch.Generator("cpu").manual_seed(seed), **call).images[0]


def test_each_family_is_detected_from_its_folder(flux_dir, sd3_dir, tiny_model_dir):
    assert family_of_folder(flux_dir).name == "Flux" and family_of_folder(sd3_dir).name == "SD3"
    assert family_of_folder(tiny_model_dir).name == "SD1"


def test_flux_paints_what_diffusers_paints_with_x0_previews(engine, flux_dir):
    from diffusers import FluxPipeline

    recorder = Recorder()
    request = PaintRequest(prompt=PROMPT, model=str(flux_dir), width=32, height=32, steps=4, seed=11, rng="cpu",
                           preview="full", preview_interval=0)  # fmt: skip
    result = engine.generate(request, recorder)
    expected = _raw(FluxPipeline, flux_dir, num_inference_steps=4, guidance_scale=3.5, seed=11)
    assert pixels(expected).std() > 1
    assert_pixels_close(result.images[0], expected)
    assert any(f"({'Flux'}, 1024x1024" in line for line in recorder.notices if line.startswith("loaded"))
    info = engine.info()
    assert (info["family"], info["native_size"], info["pipeline"]) == ("Flux", "1024x1024", "FluxPipeline")
    text = result.infotext(0)
    assert "Sampler: Euler" in text and "CFG scale: 1," in text and "Distilled CFG Scale: 3.5" in text
    assert recorder.steps == [(k, 4) for k in range(1, 5)]
    assert [frame[0].size for frame in recorder.frames] == [(32, 32)] * 4
    # the last step lands on sigma 0, where x0 = x_t − σ·v is the picture itself: the last preview is the picture
    assert_pixels_close(recorder.frames[-1][0], result.images[0])
    assert not np.array_equal(pixels(recorder.frames[0][0]), pixels(recorder.frames[-1][0]))


def test_flux_distilled_guidance_reaches_the_model(engine, flux_dir):
    from diffusers import FluxPipeline

    request = PaintRequest(prompt=PROMPT, model=str(flux_dir), width=32, height=32, steps=3, seed=4, rng="cpu",
                           distilled_cfg=9.0, preview="none")  # fmt: skip
    result = engine.generate(request)
    assert_pixels_close(
        result.images[0], _raw(FluxPipeline, flux_dir, num_inference_steps=3, guidance_scale=9.0, seed=4)
    )
    default = _raw(FluxPipeline, flux_dir, num_inference_steps=3, guidance_scale=3.5, seed=4)
    assert np.abs(pixels(result.images[0]) - pixels(default)).max() > 1
    assert "Distilled CFG Scale: 9" in result.infotext(0)


def test_flux_batch_gives_image_k_seed_plus_k_as_diffusers_does(engine, flux_dir):
    from diffusers import FluxPipeline

    request = PaintRequest(prompt=PROMPT, model=str(flux_dir), width=32, height=32, steps=2, seed=20, n=2, rng="cpu",
                           preview="none")  # fmt: skip
    result = engine.generate(request)
    pipe = FluxPipeline.from_pretrained(flux_dir)
    pipe.set_progress_bar_config(disable=True)
    generators = [torch.Generator("cpu").manual_seed(seed) for seed in (20, 21)]
    expected = pipe(PROMPT, width=32, height=32, num_inference_steps=2, num_images_per_prompt=2, generator=generators)
    assert result.seeds == [20, 21]
    for ours, theirs in zip(result.images, expected.images):
        assert_pixels_close(ours, theirs)


@pytest.mark.parametrize("folder", ["flux_dir", "sd3_dir"])
def test_a1111_noise_and_variation_seeds_paint_packed_and_plain_latents(engine, request, folder):
    """The default (A1111 GPU) noise is ours, not diffusers': Flux's must reach its pipeline packed."""
    model = str(request.getfixturevalue(folder))
    base = PaintRequest(prompt=PROMPT, model=model, width=32, height=32, steps=2, seed=6, preview="none")
    plain, varied = engine.generate(base), engine.generate(base.replace(variation_seed=9, variation_strength=0.5))
    again = engine.generate(base)
    assert plain.images[0].size == varied.images[0].size == (32, 32)
    assert np.array_equal(pixels(plain.images[0]), pixels(again.images[0]))
    assert np.abs(pixels(plain.images[0]) - pixels(varied.images[0])).max() > 1
    assert "Variation seed: 9" in varied.infotext(0)


def test_flux_stop_keeps_the_last_x0(engine, flux_dir):
    """Stopped at step 3: the picture is x0 = x_t − σ·v of that step, v taken from raw diffusers' own latents."""
    from diffusers import FluxPipeline

    event = threading.Event()
    request = PaintRequest(prompt=PROMPT, model=str(flux_dir), width=32, height=32, steps=5, seed=3, rng="cpu",
                           preview="none")  # fmt: skip
    result = engine.generate(request, Recorder(stop_at=2, event=event), stop=event)
    assert result.stopped_by == "stop" and result.interrupted_at == 3 and result.images[0].size == (32, 32)
    pipe = FluxPipeline.from_pretrained(flux_dir)
    pipe.set_progress_bar_config(disable=True)
    seen = []

    def keep(pipe_, index, timestep, tensors):
        seen.append(tensors["latents"].clone())
        return tensors

    generator = torch.Generator("cpu").manual_seed(3)
    pipe(PROMPT, width=32, height=32, num_inference_steps=5, generator=generator, callback_on_step_end=keep)
    sigmas = pipe.scheduler.sigmas
    velocity = (seen[2] - seen[1]) / (sigmas[3] - sigmas[2])  # Euler: x_next = x + (σ_next − σ)·v
    x0 = pipe._unpack_latents(seen[1] - sigmas[2] * velocity, 32, 32, pipe.vae_scale_factor)
    with torch.no_grad():
        decoded = pipe.vae.decode(x0 / pipe.vae.config.scaling_factor + pipe.vae.config.shift_factor).sample
    assert_pixels_close(result.images[0], pipe.image_processor.postprocess(decoded)[0], tolerance=2)


def test_sd3_paints_what_diffusers_paints(engine, sd3_dir):
    from diffusers import StableDiffusion3Pipeline

    recorder = Recorder()
    request = PaintRequest(prompt=PROMPT, model=str(sd3_dir), width=32, height=32, steps=3, seed=8, rng="cpu",
                           negative_prompt="green", preview="latent2rgb", preview_interval=0)  # fmt: skip
    result = engine.generate(request, recorder)
    expected = _raw(StableDiffusion3Pipeline, sd3_dir, num_inference_steps=3, guidance_scale=7.0, seed=8,
                    negative_prompt="green")  # fmt: skip
    assert pixels(expected).std() > 1
    assert_pixels_close(result.images[0], expected)
    assert engine.info()["family"] == "SD3" and engine.info()["native_size"] == "32x32"  # 16 × the VAE's 2
    assert [frame[0].size for frame in recorder.frames] == [(32, 32)] * 3
    assert "Distilled CFG Scale" not in result.infotext(0) and "Sampler: Euler" in result.infotext(0)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"sampler": "DPM++ 2M SDE"},
            "sampler: 'DPM++ 2M SDE' cannot paint Flux models yet (allowed: Euler, Heun, DPM++ 2M, UniPC, LCM)",
        ),
        ({"schedule": "Exponential"}, "schedule: 'Exponential' cannot paint Flux models yet (allowed: Automatic, Si"),
        ({"refiner": "some/refiner"}, "model: refiner is not supported for Flux models yet"),
    ],
)
def test_what_flux_cannot_do_yet_is_one_line(engine, flux_dir, changes, message):
    request = PaintRequest(
        **{"prompt": PROMPT, "model": str(flux_dir), "width": 32, "height": 32, "steps": 2, **changes}
    )
    pictures = None
    if "init" in changes:
        from jupyter_sd.engine.pictures import Pictures

        pictures = Pictures(init=Image.new("RGB", (32, 32)))
    with pytest.raises(ValueError, match="^") as info:
        engine.generate(request, pictures=pictures)
    text = str(info.value)
    assert text.startswith(message) and "\n" not in text and len(text) < 200


def test_sd3_larger_than_its_position_embeddings_is_one_line(engine, sd3_dir):
    request = PaintRequest(prompt=PROMPT, model=str(sd3_dir), width=136, height=64, steps=1, seed=1)
    with pytest.raises(ValueError) as info:  # 64 patches × patch 1 × VAE 2 = 128 px
        engine.generate(request)
    assert str(info.value) == "size: SD3 paints at most 128 px a side (got 136x64)"
    assert engine.generate(request.replace(width=128)).images[0].size == (128, 64)


def test_paint_magic_paints_flux_and_saves_its_recipe(shell, flux_dir, tmp_path, capsys):
    from diffusers import FluxPipeline

    pipe = FluxPipeline.from_pretrained(flux_dir)  # (before the cell: the kernel may preload in the background)
    pipe.set_progress_bar_config(disable=True)
    expected = pipe("a red circle AND a square", width=40, height=40, num_inference_steps=3,
                    generator=torch.Generator("cpu").manual_seed(5)).images[0]  # fmt: skip
    cell = (
        f"%%paint --model {flux_dir} --rng cpu --size 40x40 --steps 3 --seed 5 -o {tmp_path}\na red circle AND a square"
    )
    result = run(shell, cell)
    assert (
        "prompt: AND is read as text on Flux (its distilled guidance has no CFG to combine parts in)"
        in capsys.readouterr().out
    )
    with Image.open(result.paths[0]) as saved:
        parameters = saved.info["parameters"]
        assert saved.size == (40, 40)
    assert parameters.startswith(
        "a red circle AND a square\nSteps: 3, Sampler: Euler, Schedule type: Automatic, CFG scale: 1,"
    )
    assert "Distilled CFG Scale: 3.5" in parameters
    assert_pixels_close(result.images[0], expected)
    with pytest.raises(UsageError, match="allowed: Euler"):
        run(shell, f"%%paint --model {flux_dir} --sampler 'Euler a' --steps 1 -o {tmp_path}\na fox")


def test_flux_first_block_cache_skips_the_later_blocks_and_comes_off(engine, flux_dir):
    """diffusers' first-block cache: the later blocks run only while the first block's output still changes by more
    than the threshold; the next uncached picture is the uncached picture again (the hooks are gone)."""
    base = PaintRequest(prompt=PROMPT, model=str(flux_dir), width=32, height=32, steps=8, seed=3, rng="cpu",
                        preview="none", save=False)  # fmt: skip
    plain = engine.generate(base).images[0]
    tail = engine._pipe.transformer.single_transformer_blocks[-1].attn  # the last block's insides: run or skipped
    runs: list[int] = []
    hook = tail.register_forward_pre_hook(lambda module, args: runs.append(1))
    try:
        counts = {}
        for cache in ("off", "fbcache:0.3", "fbcache:1"):
            runs.clear()
            result = engine.generate(base.replace(cache=cache))
            counts[cache] = len(runs)
        assert counts["off"] == 8 and 1 <= counts["fbcache:1"] < counts["fbcache:0.3"] < 8, counts
        assert "Cache: fbcache 1," in result.infotext(0)
        again = engine.generate(base)
    finally:
        hook.remove()
    assert np.array_equal(pixels(again.images[0]), pixels(plain))
    assert np.abs(pixels(result.images[0]) - pixels(plain)).max() > 0  # skipping changed the picture a little
    with pytest.raises(ValueError, match="cache: deepcache needs a UNet model"):
        engine.generate(base.replace(cache="deepcache:3"))


def test_first_block_cache_is_refused_on_unet_models(engine, tiny_model_dir):
    request = PaintRequest(prompt=PROMPT, model=str(tiny_model_dir), steps=2, cache="fbcache", save=False)
    with pytest.raises(ValueError, match=r"cache: fbcache needs a transformer model whose pipeline diffusers caches"):
        engine.generate(request)
