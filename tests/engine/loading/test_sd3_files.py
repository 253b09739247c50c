"""SD3/SD3.5 single files as Stability AI ships them: whole checkpoints and transformer-only files.

`sd3_checkpoint` writes the tiny SD3 pipeline in SD3.5's key layout (the inverse of diffusers' converter); the engine
loads it (the rest from ``--model-config``) and must paint raw diffusers' pixels from the same weights.
"""

from __future__ import annotations

import pytest
import torch
from helpers.bfl_checkpoint import config_only
from helpers.paint_modes import generators
from helpers.pixels import assert_pixels_close, pixels
from helpers.sd3_checkpoint import (
    diffusers_to_sd3,
    make_sd3_for_files,
    transformer_state,
    write_sd3_checkpoint,
    write_sd3_transformer,
)

from jupyter_sd.engine import Engine
from jupyter_sd.engine.loading.files import inspect
from jupyter_sd.recipe.request import PaintRequest

PROMPT = "a red circle on a blue background"


@pytest.fixture(scope="module")
def sd3_dir(tmp_path_factory):
    return make_sd3_for_files(tmp_path_factory.mktemp("tiny-sd3"))


@pytest.fixture(scope="module")
def engine():
    return Engine()


@pytest.fixture(scope="module")
def expected(sd3_dir):
    """Raw diffusers' StableDiffusion3Pipeline from the folder the files are written from."""
    from diffusers import StableDiffusion3Pipeline

    pipe = StableDiffusion3Pipeline.from_pretrained(sd3_dir)
    pipe.set_progress_bar_config(disable=True)
    return pipe(PROMPT, width=32, height=32, num_inference_steps=3, guidance_scale=7.0,
                generator=generators([5])).images[0]  # fmt: skip


def _request(model, config):
    return PaintRequest(prompt=PROMPT, model=str(model), model_config=str(config), width=32, height=32, steps=3,
                        seed=5, rng="cpu", preview="none", save=False)  # fmt: skip


def _transformer_equal(pipe, folder):
    expected = transformer_state(folder)
    got = pipe.transformer.state_dict()
    assert set(got) == set(expected)
    assert all(torch.equal(got[name], expected[name]) for name in expected)


def test_the_sd3_layout_is_the_reverse_of_diffusers_converter():
    """Two blocks (the last one's context side pre-only), QK norms and SD3.5 Medium's second attention."""
    from diffusers import SD3Transformer2DModel
    from diffusers.loaders.single_file_utils import convert_sd3_transformer_checkpoint_to_diffusers as theirs

    model = SD3Transformer2DModel(sample_size=16, patch_size=2, in_channels=4, num_layers=2, attention_head_dim=8,
                                  num_attention_heads=2, joint_attention_dim=16, caption_projection_dim=16,
                                  pooled_projection_dim=8, out_channels=4, pos_embed_max_size=16,
                                  qk_norm="rms_norm", dual_attention_layers=(0,))  # fmt: skip
    state = model.state_dict()
    file = diffusers_to_sd3(state, "model.diffusion_model.")
    assert "model.diffusion_model.joint_blocks.1.context_block.adaLN_modulation.1.weight" in file
    assert "model.diffusion_model.joint_blocks.0.x_block.attn2.qkv.weight" in file
    back = theirs(dict(file))
    assert set(back) == set(state)
    assert all(torch.equal(back[name], state[name]) for name in state)


def test_a_transformer_file_paints_diffusers_pixels(engine, sd3_dir, expected, tmp_path):
    path = write_sd3_transformer(sd3_dir, tmp_path / "sd3.5-tiny-mmdit.safetensors")
    keep = ("vae", "text_encoder", "text_encoder_2", "text_encoder_3")
    configs = config_only(sd3_dir, tmp_path / "rest", keep=keep)
    assert not list((configs / "transformer").glob("*.safetensors"))  # the transformer can only come from the file
    info = inspect(path)
    assert (info.family.name, info.format, info.denoiser_only) == ("SD3", "safetensors", True)
    result = engine.generate(_request(path, configs))
    assert engine.info()["family"] == "SD3" and result.model_name == "sd3.5-tiny-mmdit"
    _transformer_equal(engine._pipe, sd3_dir)
    assert pixels(result.images[0]).std() > 1
    assert_pixels_close(result.images[0], expected)


def test_a_whole_sd3_file_paints_diffusers_pixels(engine, sd3_dir, expected, tmp_path):
    path = write_sd3_checkpoint(sd3_dir, tmp_path / "sd3.5-tiny.safetensors")
    configs = config_only(sd3_dir, tmp_path / "configs")  # configs and tokenizers only: every weight from the file
    assert not list(configs.rglob("*.safetensors"))
    info = inspect(path)
    assert (info.family.name, info.denoiser_only) == ("SD3", False)
    result = engine.generate(_request(path, configs))
    assert engine.info()["family"] == "SD3"
    _transformer_equal(engine._pipe, sd3_dir)
    assert_pixels_close(result.images[0], expected)
