"""Flux files as civitai, ComfyUI and city96 ship them: transformer-only and whole BFL-layout checkpoints.

`bfl_checkpoint` writes the tiny Flux pipeline's transformer in Black Forest Labs' names (the inverse of diffusers'
converter); the engine loads it with the other parts from ``--model-config`` and must paint the folder's pixels.
"""

from __future__ import annotations

import pytest
import torch
from helpers.bfl_checkpoint import config_only, diffusers_to_bfl, write_bfl_checkpoint, write_bfl_transformer
from helpers.pixels import assert_pixels_close, pixels
from helpers.tiny_flow import make_tiny_flux

from jupyter_sd.engine import Engine
from jupyter_sd.engine.loading.files import inspect
from jupyter_sd.recipe.request import PaintRequest

PROMPT = "a red circle on a blue background"


@pytest.fixture(scope="module")
def flux_dir(tmp_path_factory):
    return make_tiny_flux(tmp_path_factory.mktemp("tiny-flux"))


@pytest.fixture(scope="module")
def engine():
    return Engine()


def _request(model, config="", **extra):
    return PaintRequest(prompt=PROMPT, model=str(model), model_config=str(config), width=32, height=32, steps=3,
                        seed=5, rng="cpu", preview="none", **extra)  # fmt: skip


def _transformer_equal(pipe, folder):
    from diffusers import FluxTransformer2DModel

    expected = FluxTransformer2DModel.from_pretrained(folder, subfolder="transformer").state_dict()
    got = pipe.transformer.state_dict()
    assert set(got) == set(expected)
    assert all(torch.equal(got[name], expected[name]) for name in expected)


def test_the_converter_matches_diffusers_at_flux_width():
    """At Flux.1's own width (3072) our map equals diffusers' converter tensor for tensor."""
    from diffusers import FluxTransformer2DModel
    from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers as theirs

    from jupyter_sd.engine.loading.flux_keys import flux_to_diffusers

    tiny = FluxTransformer2DModel(patch_size=1, in_channels=8, num_layers=2, num_single_layers=2,
                                  attention_head_dim=4, num_attention_heads=2, pooled_projection_dim=8,
                                  joint_attention_dim=8, guidance_embeds=True, axes_dims_rope=(2, 2, 4))  # fmt: skip
    bfl = diffusers_to_bfl(tiny.state_dict(), "model.diffusion_model.")
    for name in [n for n in bfl if n.endswith(("linear1.weight", "linear1.bias"))]:  # only these need the width
        bfl[name] = torch.randn(3 * 3072 + 4 * 3072, *bfl[name].shape[1:])
    bfl["model.diffusion_model.img_in.weight"] = torch.randn(3072, 8)
    ours, reference = flux_to_diffusers(dict(bfl)), theirs(dict(bfl))
    assert set(ours) == set(reference)
    assert all(torch.equal(ours[name], reference[name]) for name in reference)


def test_a_transformer_file_paints_the_folders_pixels(engine, flux_dir, tmp_path):
    path = write_bfl_transformer(flux_dir, tmp_path / "flux1-tiny.safetensors")
    configs = config_only(flux_dir, tmp_path / "rest", keep=("vae", "text_encoder", "text_encoder_2"))
    assert not list((configs / "transformer").glob("*.safetensors"))  # the transformer can only come from the file
    info = inspect(path)
    assert (info.family.name, info.format, info.denoiser_only) == ("Flux", "safetensors", True)
    from_file = engine.generate(_request(path, configs))
    assert engine.info()["family"] == "Flux" and from_file.model_name == "flux1-tiny"
    _transformer_equal(engine._pipe, flux_dir)
    from_folder = engine.generate(_request(flux_dir))
    assert pixels(from_folder.images[0]).std() > 1
    assert_pixels_close(from_file.images[0], from_folder.images[0])


def test_a_whole_comfyui_checkpoint_paints_the_folders_pixels(engine, flux_dir, tmp_path):
    path = write_bfl_checkpoint(flux_dir, tmp_path / "flux1-tiny-full.safetensors")
    configs = config_only(flux_dir, tmp_path / "configs")
    assert not list(configs.rglob("*.safetensors"))  # every weight comes from the file
    assert inspect(path).parts == frozenset({"denoiser", "vae", "text"})
    from_file = engine.generate(_request(path, configs))
    _transformer_equal(engine._pipe, flux_dir)
    from_folder = engine.generate(_request(flux_dir))
    assert_pixels_close(from_file.images[0], from_folder.images[0])


def test_what_a_flux_file_needs_is_said_in_one_line(engine, flux_dir, tmp_path):
    path = write_bfl_transformer(flux_dir, tmp_path / "flux1-dev.safetensors")
    cases = [
        (_request(path), "model: 'flux1-dev.safetensors' is a Flux file; pass --model-config with a diffusers Flux"),
        (_request(path, config_only(flux_dir, tmp_path / "bare")), "model: 'flux1-dev.safetensors' holds only the"),
    ]
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    cases.append((_request(damaged, flux_dir), "model: 'damaged.safetensors' is not a readable .safetensors file"))
    for request, start in cases:
        with pytest.raises(ValueError) as caught:
            engine.generate(request)
        text = str(caught.value)
        assert text.startswith(start) and "\n" not in text and len(text) < 200, text
    assert not engine.busy
