"""Memory options and the fp16 VAE rescue (issue 16 §3–4) on a tiny pipeline on the CPU: what diffusers allows
here runs and paints the same picture; what needs CUDA is refused in one line before anything loads."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.progress_recorder import Recorder

from jupyter_sd.engine import Engine, memory
from jupyter_sd.recipe.request import PaintRequest


def _pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


@pytest.fixture(scope="module")
def engine():
    return Engine()


@pytest.fixture(scope="module")
def reference(engine, tiny_model_dir):
    """The plain picture (sdpa, no tiling, no fast mode) every variant is compared with."""
    request = PaintRequest(prompt="a red circle", model=str(tiny_model_dir), steps=3, seed=11)
    image = engine.generate(request).images[0]
    assert _pixels(image).std() > 1
    return request, _pixels(image)


@pytest.mark.parametrize("mode", ["model", "sequential"])
def test_offload_needs_cuda_and_says_so_in_one_line(tiny_model_dir, mode):
    engine = Engine()
    request = PaintRequest(prompt="x", model=str(tiny_model_dir), steps=2, offload=mode)
    with pytest.raises(ValueError) as error:
        engine.generate(request)
    message = str(error.value)
    assert message == (
        f"offload: '{mode}' offload moves weights between the CPU and a CUDA GPU, and this runs on cpu "
        f"(allowed here: auto, none) (got '{mode}')"
    )
    assert engine._pipe is None and engine.load_count == 0  # refused before loading


def test_auto_and_none_offload_paint_on_the_cpu(engine, reference):
    request, expected = reference
    for mode in ("auto", "none"):
        result = engine.generate(request.replace(offload=mode))
        assert np.array_equal(_pixels(result.images[0]), expected)
        assert engine.info()["offload"] == "none"


def test_offload_auto_picks_from_free_vram():
    """SDXL fp16 (6.9 GB of weights, the UNet 5.1 GB): whole on a free T4, model offload on a 6 GB card."""
    from jupyter_sd.engine.families import SD1, SDXL

    sdxl = {"unet": 5.1, "text_encoder": 0.25, "text_encoder_2": 1.4, "vae": 0.17}
    assert memory.offload_for(14.5, sdxl, SDXL.activations_gb) == "none"
    assert memory.offload_for(5.8, sdxl, SDXL.activations_gb) == "model"
    assert memory.offload_for(3.0, sdxl, SDXL.activations_gb) == "sequential"
    sd15 = {"unet": 1.7, "text_encoder": 0.25, "vae": 0.17}
    assert memory.offload_for(5.8, sd15, SD1.activations_gb) == "none"


def test_attention_slicing_and_vae_tiling_paint_the_same_picture(engine, reference):
    request, expected = reference
    result = engine.generate(request.replace(attention="slicing", vae_tiling="on"))
    pipe = engine._pipe
    processors = {type(p).__name__ for p in pipe.unet.attn_processors.values()}
    assert processors == {"SlicedAttnProcessor"} and pipe.vae.use_tiling
    assert np.abs(_pixels(result.images[0]) - expected).max() <= 1
    engine.generate(request)  # back to the defaults
    assert not pipe.vae.use_tiling
    assert "SlicedAttnProcessor" not in {type(p).__name__ for p in pipe.unet.attn_processors.values()}


def test_vae_tiling_auto_threshold():
    assert not memory.wants_tiling("auto", 1536, 1536) and memory.wants_tiling("auto", 1536, 1544)
    assert memory.wants_tiling("on", 64, 64) and not memory.wants_tiling("off", 4096, 4096)


def test_nan_from_a_half_precision_vae_is_decoded_again_in_float32(tiny_model_dir, reference):
    """A test double of the VAE's decode only: NaN whenever the VAE runs in float16, the real decode otherwise."""
    request, expected = reference
    engine = Engine()
    pipe = engine.pipeline(request)
    vae = pipe.vae
    real_decode = vae.decode
    calls = []

    def nan_in_half(z, *args, **kwargs):
        calls.append(vae.dtype)
        output = real_decode(z, *args, **kwargs)
        if vae.dtype == torch.float16:
            output = (torch.full_like(output[0], float("nan")),) if isinstance(output, tuple) else output
            if not isinstance(output, tuple):
                output.sample = torch.full_like(output.sample, float("nan"))
        return output

    vae.to(torch.float16)
    vae.decode = nan_in_half
    recorder = Recorder()
    result = engine.generate(request.replace(preview="none"), recorder)
    rescue = [line for line in recorder.notices if "NaN" in line]
    assert rescue == [
        "the VAE produced NaN in float16: decoded again in float32 (it stays float32 now; "
        "--vae madebyollin/sdxl-vae-fp16-fix avoids this)"
    ]
    assert calls == [torch.float16, torch.float32] and vae.dtype == torch.float32
    pixels = _pixels(result.images[0])
    assert np.isfinite(pixels).all() and np.abs(pixels - expected).max() <= 1
    # the next picture decodes in float32 straight away: no second notice
    again = Recorder()
    engine.generate(request.replace(preview="none"), again)
    assert not [line for line in again.notices if "NaN" in line] and calls[-1] == torch.float32


def test_out_of_memory_in_the_vae_is_retried_in_tiles(tiny_model_dir, reference):
    request, expected = reference
    engine = Engine()
    pipe = engine.pipeline(request)
    vae = pipe.vae
    real_decode = vae.decode

    def oom_unless_tiled(z, *args, **kwargs):
        if not vae.use_tiling:
            raise RuntimeError("CUDA out of memory. Tried to allocate 9.00 GiB")
        return real_decode(z, *args, **kwargs)

    vae.decode = oom_unless_tiled
    recorder = Recorder()
    result = engine.generate(request.replace(preview="none"), recorder)
    assert "out of memory decoding the picture: retried in tiles (--vae-tiling on)" in recorder.notices
    assert np.abs(_pixels(result.images[0]) - expected).max() <= 1


def test_fast_mode_on_the_cpu_says_what_it_does_and_paints_the_same(engine, reference):
    request, expected = reference
    recorder = Recorder()
    result = engine.generate(request.replace(fast=True), recorder)
    line = "fast mode: channels_last, fused QKV, SDPA; torch.compile is used on CUDA only (here: cpu)"
    assert line in recorder.notices
    assert engine.info()["fast"] == line
    pipe = engine._pipe
    assert pipe.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert {type(p).__name__ for p in pipe.unet.attn_processors.values()} == {"FusedAttnProcessor2_0"}
    assert np.abs(_pixels(result.images[0]) - expected).max() <= 1


def test_fast_mode_says_when_a_new_size_compiles():
    fast = memory.FastMode.__new__(memory.FastMode)
    fast.compiled, fast.shapes = True, set()
    assert fast.before_call(1024, 1024, 1) == "fast mode: compiling for 1024x1024 (once per size)…"
    assert fast.before_call(1024, 1024, 1) == ""  # kept across cells
    assert fast.before_call(832, 1216, 2) == "fast mode: new size: compiling again for 832x1216 ×2 (once per size)…"
