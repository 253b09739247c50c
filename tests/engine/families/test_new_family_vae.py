"""``--vae`` on Chroma, Z-Image, Qwen-Image and Flux.2 (klein, dev): a VAE file of the family's kind from ``models/VAE``
(Flux's in A1111/LDM layout for Chroma and Z-Image, the diffusers layout of Qwen-Image's and Flux.2's VAE classes)
paints what the raw pipeline paints with that VAE, names it in the recipe, and a request without it paints with the
model's own again."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import tiny_families
from helpers.ldm_checkpoint import vae_to_ldm
from helpers.pixels import assert_pixels_close, pixels
from helpers.progress_recorder import Recorder

from jupyter_sd import library
from jupyter_sd.engine import Engine
from jupyter_sd.recipe.request import PaintRequest

PROMPT = "a red circle on a blue background"

FAMILIES = {
    "Chroma": (tiny_families.make_tiny_chroma, "ChromaPipeline", {"guidance_scale": 1.0}, True),
    "Z-Image": (tiny_families.make_tiny_zimage, "ZImagePipeline", {"guidance_scale": 0.0}, True),
    "Qwen-Image": (tiny_families.make_tiny_qwenimage, "QwenImagePipeline", {"true_cfg_scale": 1.0}, False),
    "Flux.2 klein": (tiny_families.make_tiny_flux2_klein, "Flux2KleinPipeline", {"guidance_scale": 1.0}, False),
    "Flux.2 [dev]": (tiny_families.make_tiny_flux2_dev, "Flux2Pipeline", {"guidance_scale": 4.0}, False),
}
"""Each family: tiny builder, raw pipeline class, CFG 1 in its words (Flux.2 [dev]: no CFG, its card's distilled
guidance 4), and whether its VAE file is in LDM layout."""


def _raw_pipe(raw_class: str, folder):
    import diffusers

    pipe = getattr(diffusers, raw_class).from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request, tmp_path_factory):
    """The tiny model, and a VAE of its class with other random weights saved as ``models/VAE/other.safetensors``."""
    from safetensors.torch import save_file

    name = request.param
    build, raw_class, _, ldm = FAMILIES[name]
    folder = build(tmp_path_factory.mktemp(f"tiny-{''.join(c for c in name if c.isalnum())}"))
    root = tmp_path_factory.mktemp("models")
    for sub in library.SUBFOLDERS.values():
        (root / sub).mkdir(parents=True)
    before = library.models_dir()
    library.set_models_dir(root)
    own = _raw_pipe(raw_class, folder).vae
    torch.manual_seed(5)
    other = type(own).from_config(own.config).eval()
    state = other.state_dict()
    weights = vae_to_ldm(state, dict(other.config)) if ldm else state
    save_file({key: value.contiguous() for key, value in weights.items()}, str(root / "VAE" / "other.safetensors"))
    yield name, folder, other
    library.set_models_dir(before)


def _raw(name: str, folder, vae=None):
    _, raw_class, guidance, _ = FAMILIES[name]
    pipe = _raw_pipe(raw_class, folder)
    if vae is not None:
        pipe.vae = vae
    generator = torch.Generator("cpu").manual_seed(7)
    return pipe(prompt=PROMPT, width=32, height=32, num_inference_steps=2, generator=generator, **guidance).images[0]


def _request(folder, **changes) -> PaintRequest:
    return PaintRequest(prompt=PROMPT, model=str(folder), width=32, height=32, steps=2, guidance=1.0, seed=7,
                        rng="cpu", preview="none", save=False, **changes)  # fmt: skip


def test_an_external_vae_paints_as_the_pipeline_with_it_and_goes_back(family):
    name, folder, other = family
    engine, recorder = Engine(), Recorder()
    result = engine.generate(_request(folder, vae="other"), recorder)
    assert not [line for line in recorder.notices if line.startswith("vae:")], recorder.notices
    for key, tensor in other.state_dict().items():  # the file was read right (LDM names converted)
        assert torch.equal(engine._pipe.vae.state_dict()[key], tensor), key
    with_other = _raw(name, folder, other)
    assert_pixels_close(result.images[0], with_other)
    plain = _raw(name, folder)
    assert np.abs(pixels(plain) - pixels(with_other)).max() > 8  # the VAE changed the picture
    assert "VAE: other.safetensors" in result.infotext(0) and "VAE hash: " in result.infotext(0)
    again = engine.generate(_request(folder))
    assert_pixels_close(again.images[0], plain)
    assert "VAE:" not in again.infotext(0)
