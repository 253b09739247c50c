"""A Flux transformer file with its VAE and text encoders as files in the models folder (Forge's layout).

``VAE/ae.safetensors`` (LDM names, as BFL ships it), ``text_encoder/clip_l.safetensors`` and
``text_encoder/t5xxl.safetensors`` (transformers' names, as ComfyUI and Forge keep them), chosen with ``--vae`` and
``--text-encoder``; ``--model-config`` holds configs and tokenizers only. The picture must equal the folder's.
"""

from __future__ import annotations

import json

import pytest
from helpers.bfl_checkpoint import config_only, write_bfl_transformer
from helpers.ldm_checkpoint import _weights, clip_to_ldm, vae_to_ldm
from helpers.pixels import assert_pixels_close, assert_same_weights
from helpers.tiny_flow import make_tiny_flux
from safetensors.torch import save_file

from jupyter_sd import library
from jupyter_sd.engine import Engine
from jupyter_sd.recipe.request import PaintRequest

PROMPT = "a red circle on a blue background"


@pytest.fixture(scope="module")
def forge(tmp_path_factory):
    """A models folder in Forge's layout around the tiny Flux pipeline's parts, and a configs-only folder."""
    where = tmp_path_factory.mktemp("forge")
    flux = make_tiny_flux(where / "flux")
    root = where / "models"
    for folder in ("Stable-diffusion", "VAE", "text_encoder"):
        (root / folder).mkdir(parents=True)
    model = write_bfl_transformer(flux, root / "Stable-diffusion" / "flux1-tiny.safetensors")
    vae_config = json.loads((flux / "vae" / "config.json").read_text())
    save_file(vae_to_ldm(_weights(flux / "vae"), vae_config), str(root / "VAE" / "ae.safetensors"))
    save_file(clip_to_ldm(_weights(flux / "text_encoder")), str(root / "text_encoder" / "clip_l.safetensors"))
    save_file(_weights(flux / "text_encoder_2"), str(root / "text_encoder" / "t5xxl.safetensors"))
    before = library.models_dir()
    library.set_models_dir(root)
    yield flux, model, config_only(flux, where / "configs")
    library.set_models_dir(before)


def test_the_other_parts_come_from_the_models_folder(forge):
    flux, model, configs = forge
    engine = Engine()
    request = PaintRequest(prompt=PROMPT, model=str(model), model_config=str(configs), vae="ae",
                           text_encoder="clip_l,t5xxl", width=32, height=32, steps=3, seed=5, rng="cpu",
                           preview="none")  # fmt: skip
    from_files = engine.generate(request)
    file_pipe = engine._pipe
    text = from_files.infotext(0)
    assert "Module 1: ae, Module 2: clip_l, Module 3: t5xxl" in text
    plain = engine.generate(request.replace(model=str(flux), model_config="", vae="", text_encoder=""))
    assert_same_weights(file_pipe, engine._pipe)  # VAE, CLIP and T5 all came from the files
    assert_pixels_close(from_files.images[0], plain.images[0])


def test_a_missing_or_misfit_text_encoder_is_one_line(forge):
    _, model, configs = forge
    engine = Engine()
    base = PaintRequest(prompt=PROMPT, model=str(model), model_config=str(configs), vae="ae", steps=1,
                        width=32, height=32, preview="none")  # fmt: skip
    with pytest.raises(ValueError) as caught:
        engine.generate(base.replace(text_encoder="clip_g,t5xxl"))
    text = str(caught.value)
    assert text.startswith("text-encoder: no file 'clip_g' in ") and text.endswith("(there: clip_l, t5xxl)")
    vae_file = str(library.models_dir() / "VAE" / "ae.safetensors")
    with pytest.raises(ValueError) as caught:
        engine.generate(base.replace(text_encoder=vae_file))
    text = str(caught.value)
    assert (
        text == "text-encoder: 'ae.safetensors' is not a text encoder (it has neither T5 blocks nor a token embedding)"
    )
    assert not engine.busy


def test_forge_module_keys_are_read_back(forge):
    """A pasted Forge recipe's ``Module 1..n`` become --vae and --text-encoder for the files found here."""
    from jupyter_sd.recipe.paste import read_pasted

    text = "a fox\nSteps: 3, Sampler: Euler, Seed: 5, Module 1: ae, Module 2: clip_l, Module 3: t5xxl, Module 4: gone"
    options = read_pasted(text).options
    assert (options["vae"], options["text_encoder"]) == ("ae", "clip_l,t5xxl")  # 'gone' is in neither folder
