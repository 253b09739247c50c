"""FLUX.2 [dev] single files as they are downloaded: BFL's ``flux2-dev.safetensors`` (the transformer alone, BFL's
names: klein's and a guidance embedder ``guidance_in``), with or without ComfyUI's ``model.diffusion_model.``, and a
city96-style GGUF Q8_0 file of it. Detection reads the tensor names alone (a klein file stays klein); loading takes
the rest from ``--model-config`` (a copy of the tiny folder holding only the VAE's and Mistral's weights) and paints
raw diffusers' ``Flux2Pipeline`` pixels from the folder (within 1/255; the Q8_0 file within a measured bound)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import tiny_families
from helpers.bfl_checkpoint import config_only
from helpers.comfy_files import write_comfy_gguf
from helpers.family_files import shipped_state, write_transformer_file
from helpers.paint_modes import generators
from helpers.pixels import assert_pixels_close, pixels
from helpers.progress_recorder import Recorder

from jupyter_sd.engine import Engine, warmup
from jupyter_sd.engine.families import family_of_checkpoint
from jupyter_sd.engine.loading.files import inspect
from jupyter_sd.recipe.request import PaintRequest

PROMPT = "a red circle on a blue background"
DEV = "Flux.2 [dev]"
Q8_BOUND = (0.5, 3)
"""Q8_0 against the unquantized picture: the largest mean and max absolute pixel difference (of 255) allowed
(measured, 2 steps at 32 px: 0.14 and 1)."""


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """The tiny FLUX.2 [dev] folder and a copy holding only the VAE's and the text encoder's weights."""
    warmup.wait()
    folder = tiny_families.make_tiny_flux2_dev(tmp_path_factory.mktemp("tiny-flux2-dev"))
    return folder, config_only(folder, tmp_path_factory.mktemp("rest"), keep=("vae", "text_encoder"))


@pytest.fixture(scope="module")
def expected(folders):
    """Raw diffusers' Flux2Pipeline from the folder: distilled guidance 4 (its card's), 2 steps, seed 5 on the CPU."""
    from diffusers import Flux2Pipeline

    pipe = Flux2Pipeline.from_pretrained(folders[0])
    pipe.set_progress_bar_config(disable=True)
    call = {"width": 32, "height": 32, "num_inference_steps": 2, "guidance_scale": 4.0}
    return pipe(prompt=PROMPT, generator=generators([5]), **call).images[0]


def _request(model, config) -> PaintRequest:
    return PaintRequest(prompt=PROMPT, model=str(model), model_config=str(config), width=32, height=32, steps=2,
                        seed=5, rng="cpu", preview="none", save=False)  # fmt: skip


def test_its_tensor_names_tell_it_from_klein_and_flux(folders):
    names = list(shipped_state(folders[0], DEV))
    assert any(n.startswith("guidance_in.") for n in names)
    assert any(n.startswith("single_stream_modulation.") for n in names)
    assert family_of_checkpoint(names).name == DEV
    assert family_of_checkpoint(["model.diffusion_model." + n for n in names]).name == DEV
    klein = [n for n in names if not n.startswith("guidance_in.")]
    assert family_of_checkpoint(klein).name == "Flux.2 klein"
    flux1 = [n for n in names if not n.startswith("single_stream_modulation.")]  # Flux.1-dev has guidance_in too
    assert family_of_checkpoint(flux1).name == "Flux"


@pytest.mark.parametrize("prefix", ["", "model.diffusion_model."])
def test_a_transformer_file_with_model_config_paints_the_folders_pixels(folders, expected, prefix, tmp_path):
    folder, rest = folders
    path = write_transformer_file(folder, tmp_path / "flux2-dev.safetensors", DEV, prefix)
    info = inspect(path)
    assert (info.family.name, info.format, info.denoiser_only) == (DEV, "safetensors", True)
    engine, recorder = Engine(), Recorder()
    result = engine.generate(_request(path, rest), recorder)
    assert any(line.startswith("loaded flux2-dev") and f"({DEV}, 1024x1024" in line for line in recorder.notices)
    assert_pixels_close(result.images[0], expected)
    from diffusers import Flux2Transformer2DModel

    want = Flux2Transformer2DModel.from_pretrained(folder, subfolder="transformer").state_dict()
    got = engine._pipe.transformer.state_dict()
    assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)


def test_a_transformer_file_without_model_config_is_one_line(folders, tmp_path):
    path = write_transformer_file(folders[0], tmp_path / "flux2-dev.safetensors", DEV)
    with pytest.raises(ValueError) as caught:
        Engine().generate(_request(path, ""))
    text = str(caught.value)
    assert text.startswith(f"model: 'flux2-dev.safetensors' is a {DEV} file; pass --model-config with a diffusers")
    assert "\n" not in text and len(text) < 200


def test_a_gguf_q8_file_loads_quantized_and_paints_close_to_the_folder(folders, expected, tmp_path):
    import gguf
    from diffusers.quantizers.gguf.utils import GGUFParameter

    folder, rest = folders
    path = write_comfy_gguf(shipped_state(folder, DEV), tmp_path / "flux2-dev-Q8_0.gguf", "Q8_0", "flux")
    info = inspect(path)
    assert (info.family.name, info.format, info.quant, info.denoiser_only) == (DEV, "gguf", "Q8_0", True)
    engine, recorder = Engine(), Recorder()
    result = engine.generate(_request(path, rest), recorder)
    assert any(line.startswith("loaded flux2-dev-Q8_0") and "GGUF Q8_0" in line for line in recorder.notices)
    weights = dict(engine._pipe.transformer.named_parameters())
    packed = [p for p in weights.values() if isinstance(p, GGUFParameter)]
    assert len(packed) >= 6 and all(p.quant_type == gguf.GGMLQuantizationType.Q8_0 for p in packed)
    difference = np.abs(pixels(result.images[0]) - pixels(expected))
    assert difference.max() > 0  # the quantized weights painted (rounding shows)
    assert difference.mean() <= Q8_BOUND[0] and difference.max() <= Q8_BOUND[1], (difference.mean(), difference.max())
