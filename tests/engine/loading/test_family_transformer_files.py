"""Z-Image and Qwen-Image transformer-only files as ComfyUI ships them (``z_image_turbo_bf16.safetensors``,
``qwen_image_*.safetensors`` in ``diffusion_models/``): loaded through diffusers' single-file loader with the rest
from ``--model-config`` (a folder without transformer weights), they paint the full folder's pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import tiny_families
from helpers.bfl_checkpoint import config_only
from helpers.family_files import write_transformer_file
from helpers.pixels import assert_pixels_close, pixels

from jupyter_sd.engine import Engine
from jupyter_sd.recipe.request import PaintRequest

PROMPT = "a red circle on a blue background"

BUILDERS = {"Z-Image": tiny_families.make_tiny_zimage, "Qwen-Image": tiny_families.make_tiny_qwenimage}


@pytest.fixture(scope="module", params=list(BUILDERS))
def family(request, tmp_path_factory):
    """The tiny folder, and a copy of it holding every part's weights but the transformer's."""
    name = request.param
    folder = BUILDERS[name](tmp_path_factory.mktemp(f"tiny-{name}"))
    configs = config_only(folder, tmp_path_factory.mktemp("configs"), keep=("vae", "text_encoder"))
    assert not list((configs / "transformer").glob("*.safetensors"))
    return name, folder, configs


def _request(model, config="") -> PaintRequest:
    return PaintRequest(prompt=PROMPT, model=str(model), model_config=str(config), width=32, height=32, steps=2,
                        seed=5, rng="cpu", preview="none", save=False)  # fmt: skip


@pytest.mark.parametrize("prefix", ["", "model.diffusion_model."])
def test_a_transformer_file_paints_the_folders_pixels(family, prefix, tmp_path):
    name, folder, configs = family
    path = write_transformer_file(folder, tmp_path / "diffusion_model.safetensors", name, prefix)
    engine = Engine()
    result = engine.generate(_request(path, configs))
    expected = Engine().generate(_request(folder)).images[0]
    assert pixels(expected).std() > 1
    assert np.array_equal(pixels(result.images[0]), pixels(expected))
    from_folder = type(engine._pipe.transformer).from_pretrained(folder, subfolder="transformer").state_dict()
    loaded = engine._pipe.transformer.state_dict()
    assert set(loaded) == set(from_folder) and all(torch.equal(loaded[k], from_folder[k]) for k in from_folder)


def test_a_transformer_file_without_model_config_is_one_line(family, tmp_path):
    name, folder, _ = family
    path = write_transformer_file(folder, tmp_path / "diffusion_model.safetensors", name)
    with pytest.raises(ValueError) as info:
        Engine().generate(_request(path))
    text = str(info.value)
    assert text.startswith(f"model: 'diffusion_model.safetensors' is a {name} file; pass --model-config")
    assert "\n" not in text and len(text) < 200


def test_a_qwen_image_file_takes_a_vae_of_its_own_class(tmp_path_factory, tmp_path):
    """``--vae`` with a Qwen-Image transformer file: its VAE class (not AutoencoderKL) swapped in, as for its folder."""
    from diffusers import AutoencoderKLQwenImage
    from safetensors.torch import save_file

    from jupyter_sd import library

    folder = BUILDERS["Qwen-Image"](tmp_path_factory.mktemp("tiny-qwen-vae"))
    configs = config_only(folder, tmp_path / "configs", keep=("vae", "text_encoder"))
    path = write_transformer_file(folder, tmp_path / "qwen_image.safetensors", "Qwen-Image")
    root = tmp_path / "models"
    for sub in library.SUBFOLDERS.values():
        (root / sub).mkdir(parents=True)
    torch.manual_seed(5)
    own = AutoencoderKLQwenImage.from_pretrained(folder, subfolder="vae")
    save_file(AutoencoderKLQwenImage.from_config(own.config).state_dict(), str(root / "VAE" / "other.safetensors"))
    before = library.models_dir()
    library.set_models_dir(root)
    try:
        result = Engine().generate(_request(path, configs).replace(vae="other"))
        expected = Engine().generate(_request(folder).replace(vae="other")).images[0]
        plain = Engine().generate(_request(folder)).images[0]
    finally:
        library.set_models_dir(before)
    assert_pixels_close(result.images[0], expected)  # the file's transformer: float sums in another order (1/255)
    assert np.abs(pixels(plain) - pixels(expected)).max() > 8 and "VAE: other.safetensors" in result.infotext(0)
