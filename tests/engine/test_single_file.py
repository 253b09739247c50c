"""Single original-layout (LDM/CompVis) ``.safetensors`` checkpoints, really loaded through the engine.

`ldm_checkpoint.convert_to_ldm_checkpoint` writes the tiny test pipeline as one civitai-style file; the engine
loads it with ``from_single_file(config=...)`` from a folder that holds configs only, so every weight in the
pipeline comes from the file. A ``.ckpt`` without ``allow_pickle`` is refused in test_engine.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers.ldm_checkpoint import (
    TEXT_PREFIX,
    UNET_PREFIX,
    VAE_PREFIX,
    _weights,
    config_only_copy,
    convert_to_ldm_checkpoint,
    ldm_state_dict,
)
from helpers.pixels import assert_pixels_close, assert_same_weights

from jupyter_sd.engine import Engine
from jupyter_sd.recipe.request import PaintRequest


def _pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


@pytest.fixture(scope="module")
def checkpoint(tiny_model_dir, tmp_path_factory):
    """The tiny pipeline as one LDM-layout file, and a copy of its folder with configs but no weights."""
    where = tmp_path_factory.mktemp("single-file")
    path = convert_to_ldm_checkpoint(tiny_model_dir, where / "tiny-ldm.safetensors")
    configs = config_only_copy(tiny_model_dir, where / "configs")
    return path, configs


@pytest.fixture(scope="module")
def engine():
    return Engine()


def test_conversion_is_the_reverse_of_diffusers(tiny_model_dir):
    """diffusers' own LDM→diffusers converters give back every original tensor, and nothing else."""
    from diffusers.loaders.single_file_utils import (
        convert_ldm_clip_checkpoint,
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
    )

    ldm = ldm_state_dict(tiny_model_dir)
    assert {name.split(".")[0] for name in ldm} == {"model", "first_stage_model", "cond_stage_model"}
    assert all(name.startswith((UNET_PREFIX, VAE_PREFIX, TEXT_PREFIX + "text_model.")) for name in ldm)
    for part, convert in (("unet", convert_ldm_unet_checkpoint), ("vae", convert_ldm_vae_checkpoint)):
        config = json.loads((tiny_model_dir / part / "config.json").read_text())
        original, back = _weights(tiny_model_dir / part), convert(ldm, config)
        assert set(back) == set(original), part
        assert all(torch.equal(back[name], original[name]) for name in original), part
    text = {name.removeprefix("text_model."): t for name, t in convert_ldm_clip_checkpoint(ldm).items()}
    original = _weights(tiny_model_dir / "text_encoder")
    assert set(text) == set(original)
    assert all(torch.equal(text[name], original[name]) for name in original)


def test_single_file_paints_the_same_pixels_as_its_folder(engine, checkpoint, tiny_model_dir, offline):
    path, configs = checkpoint
    assert not list(configs.rglob("*.safetensors"))  # every weight must come from the file
    request = PaintRequest(prompt="a red circle", model=str(path), model_config=str(configs), steps=3, seed=5)
    from_file = engine.generate(request)
    assert engine.info()["pipeline"] == "StableDiffusionPipeline" and engine.info()["model"] == str(path.resolve())
    assert from_file.model_name == "tiny-ldm" and from_file.request.model == str(path.resolve())
    file_pipe = engine._pipe
    from_folder = engine.generate(request.replace(model=str(tiny_model_dir), model_config=""))
    assert_same_weights(file_pipe, engine._pipe)  # every weight came from the file
    assert_pixels_close(from_file.images[0], from_folder.images[0])  # CPU kernels may differ by 1/255


def test_single_file_without_config_offline_is_one_clear_line(engine, checkpoint, tiny_model_dir, offline):
    path, _ = checkpoint
    with pytest.raises(ValueError) as caught:
        engine.generate(PaintRequest(prompt="a", model=str(path), steps=1))
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"model: could not load '{path.resolve()}' as a Stable Diffusion checkpoint (")
    assert message.endswith("pass --model-config with a diffusers folder of the same architecture")
    assert not engine.busy
    after = engine.generate(PaintRequest(prompt="a", model=str(tiny_model_dir), steps=1, preview="none"))
    assert len(after.images) == 1  # the engine is ready for the next cell
