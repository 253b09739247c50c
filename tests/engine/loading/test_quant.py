"""``--quant``: fp8 storage with layerwise upcasting on any device; NF4/int8 refused without CUDA in one line."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from helpers.pixels import pixels
from helpers.progress_recorder import Recorder
from helpers.tiny_flow import make_tiny_flux

from jupyter_sd.engine import Engine
from jupyter_sd.recipe.request import PaintRequest

PROMPT = "a red circle on a blue background"


@pytest.fixture(scope="module")
def flux_dir(tmp_path_factory):
    return make_tiny_flux(tmp_path_factory.mktemp("tiny-flux"))


@pytest.fixture(scope="module")
def engine():
    return Engine()


def _request(model, **extra):
    return PaintRequest(prompt=PROMPT, model=str(model), width=32, height=32, steps=3, seed=5, rng="cpu",
                        preview="none", **extra)  # fmt: skip


@pytest.mark.parametrize("which", ["flux", "sd1"])
def test_fp8_stores_the_denoiser_in_float8_and_paints_close(engine, flux_dir, tiny_model_dir, which):
    model = flux_dir if which == "flux" else tiny_model_dir
    recorder = Recorder()
    fp8 = engine.generate(_request(model, quant="fp8"), recorder)
    denoiser = engine._pipe.transformer if which == "flux" else engine._pipe.unet
    from diffusers.hooks.layerwise_casting import DEFAULT_SKIP_MODULES_PATTERN as KEPT  # sensitive layers, in full

    for name, weight in denoiser.named_parameters():
        module = name.rsplit(".", 1)[0]
        wanted = torch.float32 if any(re.search(p, module) for p in KEPT) else torch.float8_e4m3fn
        assert weight.dtype == wanted, name  # attention, feed-forward, convolutions … held in 8 bits
    held = sum(p.numel() * p.element_size() for p in denoiser.parameters())
    assert held < 0.5 * sum(p.numel() * 4 for p in denoiser.parameters())
    assert next(engine._pipe.vae.parameters()).dtype == torch.float32  # only the denoiser is stored in fp8
    assert any(line.startswith("loaded") and "fp8" in line for line in recorder.notices)
    assert "Quant: fp8" in fp8.infotext(0)
    plain = engine.generate(_request(model))
    assert "Quant" not in plain.infotext(0)
    difference = np.abs(pixels(fp8.images[0]).astype(int) - pixels(plain.images[0]).astype(int))
    assert 0 < difference.max() and difference.mean() <= 6.0, difference.mean()  # float8 rounding, not a new picture


@pytest.mark.parametrize("quant", ["nf4", "int8"])
def test_bitsandbytes_quants_are_refused_on_a_cpu_in_one_line(engine, tiny_model_dir, quant):
    with pytest.raises(ValueError) as caught:
        engine.generate(_request(tiny_model_dir, quant=quant))
    text = str(caught.value)
    wanted = f"quant: --quant {quant} needs a CUDA GPU (this runs on cpu); here use --quant fp8 or a GGUF file"
    assert text == wanted + " (Q8_0, Q4_K …)"
    assert not engine.busy


def test_quant_is_read_back_from_the_infotext():
    from jupyter_sd.recipe.paste import read_pasted

    text = "a fox\nSteps: 3, Sampler: Euler, CFG scale: 1, Seed: 5, Size: 32x32, Quant: fp8"
    assert read_pasted(text).options["quant"] == "fp8"
