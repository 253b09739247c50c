"""GGUF transformer files (city96's layout: BFL names, quantized 2-D weights) through diffusers' GGUF quantizer.

The test writes the tiny Flux transformer with the ``gguf`` package in Q8_0 and Q4_0, loads it with the rest from
the folder (``--model-config``), and compares the picture with the unquantized folder's. The weights must stay
quantized in memory: diffusers' GGUF layers dequantize one weight at a time while painting.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers.bfl_checkpoint import config_only
from helpers.gguf_files import write_gguf_transformer
from helpers.pixels import pixels
from helpers.progress_recorder import Recorder
from helpers.tiny_flow import make_tiny_flux

from jupyter_sd.engine import Engine
from jupyter_sd.engine.loading.files import inspect
from jupyter_sd.recipe.request import PaintRequest

PROMPT = "a red circle on a blue background"
BOUNDS = {"Q8_0": (0.5, 4), "Q4_0": (4.0, 30)}
"""Per type: the largest mean and max absolute pixel difference (of 255) from the unquantized picture allowed
(measured on this tiny model, 3 steps: Q8_0 0.12 and 1, Q4_0 2.2 and 15)."""


@pytest.fixture(scope="module")
def flux_dir(tmp_path_factory):
    return make_tiny_flux(tmp_path_factory.mktemp("tiny-flux"))


@pytest.fixture(scope="module")
def engine():
    return Engine()


def _request(model, config=""):
    return PaintRequest(prompt=PROMPT, model=str(model), model_config=str(config), width=32, height=32, steps=3,
                        seed=5, rng="cpu", preview="none")  # fmt: skip


@pytest.mark.parametrize("quant", ["Q8_0", "Q4_0"])
def test_a_gguf_transformer_paints_close_to_the_unquantized_one(engine, flux_dir, tmp_path, quant):
    import gguf
    from diffusers.quantizers.gguf.utils import GGUFParameter

    path = write_gguf_transformer(flux_dir, tmp_path / f"flux1-tiny-{quant}.gguf", quant)
    configs = config_only(flux_dir, tmp_path / "rest", keep=("vae", "text_encoder", "text_encoder_2"))
    info = inspect(path)
    assert (info.family.name, info.format, info.quant, info.denoiser_only) == ("Flux", "gguf", quant, True)
    recorder = Recorder()
    quantized = engine.generate(_request(path, configs), recorder)
    assert any(line.startswith("loaded") and f"GGUF {quant}" in line for line in recorder.notices)
    weights = dict(engine._pipe.transformer.named_parameters())
    packed = [p for p in weights.values() if isinstance(p, GGUFParameter)]
    assert len(packed) == sum(1 for p in weights.values() if p.dim() == 2)  # every 2-D weight is still quantized
    assert all(p.quant_type == gguf.GGMLQuantizationType[quant] and p.dtype.itemsize == 1 for p in packed)
    held = sum(p.numel() * p.element_size() for p in weights.values())
    assert held <= path.stat().st_size  # no dequantized second copy of any weight
    plain = engine.generate(_request(flux_dir))
    difference = np.abs(pixels(quantized.images[0]).astype(int) - pixels(plain.images[0]).astype(int))
    mean_bound, max_bound = BOUNDS[quant]
    assert pixels(plain.images[0]).std() > 1
    assert difference.max() > 0  # the quantized weights painted (rounding shows)
    assert difference.mean() <= mean_bound and difference.max() <= max_bound, (difference.mean(), difference.max())


def test_a_damaged_gguf_file_is_one_line(engine, flux_dir, tmp_path):
    path = tmp_path / "broken.gguf"
    path.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\xff" * 40)
    with pytest.raises(ValueError) as caught:
        engine.generate(_request(path, flux_dir))
    text = str(caught.value)
    assert text.startswith("model: 'broken.gguf' is not a readable GGUF file (") and "\n" not in text, text
    assert len(text) < 200


def test_fp8_on_a_gguf_file_is_one_line(engine, flux_dir, tmp_path):
    path = write_gguf_transformer(flux_dir, tmp_path / "flux1-tiny-Q8_0.gguf", "Q8_0")
    with pytest.raises(ValueError) as caught:
        engine.generate(_request(path, flux_dir).replace(quant="fp8"))
    assert str(caught.value) == (
        "quant: this model is gguf-quantized already; --quant fp8 applies to unquantized weights (use none)"
    )
    assert not engine.busy
