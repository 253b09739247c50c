"""Flux.2 klein's VAE as BFL ships it (``flux2-vae.safetensors``) for ``--vae``, whole klein checkpoints as ComfyUI's
Checkpoint Save writes them (Flux.2 [dev] files, klein's names and a guidance embedder: test_flux2dev_files.py).

The tests write the tiny klein VAE (with the shipped VAE's quant convolutions) in BFL's names and in ComfyUI's by
the inverse maps below (the LDM body by `helpers.ldm_checkpoint.vae_to_ldm`), and compare with raw diffusers'
``Flux2KleinPipeline`` from the folder, given the same VAE where one is swapped in.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import tiny_families
from helpers.bfl_checkpoint import config_only
from helpers.family_files import shipped_state, write_transformer_file
from helpers.ldm_checkpoint import _weights, vae_to_ldm
from helpers.pixels import assert_pixels_close, pixels
from helpers.progress_recorder import Recorder
from safetensors.torch import save_file

from jupyter_sd import library
from jupyter_sd.engine import Engine
from jupyter_sd.engine.loading.files import inspect
from jupyter_sd.recipe.request import PaintRequest

PROMPT = "a red circle on a blue background"
BFL_TOP = {"quant_conv.": "encoder.quant_conv.", "post_quant_conv.": "decoder.post_quant_conv."}
"""diffusers' (and ComfyUI's) top-level quant convolutions → where BFL's flux2-vae.safetensors keeps them."""


def bfl_vae(vae, comfy: bool = False) -> dict:
    """A diffusers ``AutoencoderKLFlux2`` in BFL's names (or ComfyUI's: quant convs at the top); no batch count."""
    state = {n: t for n, t in vae.state_dict().items() if n != "bn.num_batches_tracked"}
    out = {}
    for name, tensor in vae_to_ldm(state, dict(vae.config)).items():
        top = next((old for old in BFL_TOP if name.startswith(old)), None)
        out[BFL_TOP[top] + name[len(top) :] if top and not comfy else name] = tensor.contiguous()
    return out


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tiny_families.make_tiny_flux2_klein(tmp_path_factory.mktemp("tiny-klein"), quant_conv=True)


@pytest.fixture(scope="module")
def other(folder):
    """A VAE of the folder's config with other random weights and batch-norm statistics."""
    from diffusers import AutoencoderKLFlux2

    torch.manual_seed(11)
    vae = AutoencoderKLFlux2.from_config(AutoencoderKLFlux2.load_config(folder, subfolder="vae")).eval()
    with torch.no_grad():
        vae.bn.running_mean.copy_(torch.linspace(0.3, -0.3, vae.bn.running_mean.numel()))
        vae.bn.running_var.copy_(torch.linspace(1.5, 0.7, vae.bn.running_var.numel()))
    return vae


@pytest.fixture
def models_root(tmp_path):
    root = tmp_path / "models"
    for sub in library.SUBFOLDERS.values():
        (root / sub).mkdir(parents=True)
    before = library.models_dir()
    library.set_models_dir(root)
    yield root
    library.set_models_dir(before)


def _raw(folder, vae=None):
    from diffusers import Flux2KleinPipeline

    pipe = Flux2KleinPipeline.from_pretrained(folder)
    if vae is not None:
        pipe.vae = vae
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator("cpu").manual_seed(5)
    call = {"width": 32, "height": 32, "num_inference_steps": 2, "guidance_scale": 1.0}
    return pipe(prompt=PROMPT, generator=generator, **call).images[0]


def _request(model, config="", **changes) -> PaintRequest:
    return PaintRequest(prompt=PROMPT, model=str(model), model_config=str(config), width=32, height=32, steps=2,
                        seed=5, rng="cpu", guidance=1.0, preview="none", save=False, **changes)  # fmt: skip


def _same_vae(vae, expected):
    got = vae.state_dict()
    assert set(got) == set(expected.state_dict())
    assert all(torch.equal(got[k], t) for k, t in expected.state_dict().items() if k != "bn.num_batches_tracked")


def test_our_map_inverts_the_bfl_and_comfyui_layouts(other):
    from jupyter_sd.engine.loading.vae_files import flux2_to_diffusers

    for comfy in (False, True):
        names = bfl_vae(other, comfy)
        assert ("encoder.quant_conv.weight" in names) != comfy and "bn.running_var" in names
        assert "encoder.down.0.block.0.conv1.weight" in names and "decoder.mid.attn_1.q.weight" in names
        back = flux2_to_diffusers({"vae." * comfy + n: t for n, t in names.items()}, dict(other.config))
        state = other.state_dict()
        assert set(back) == set(state) and all(torch.equal(back[k], state[k]) for k in state)


@pytest.mark.parametrize("model", ["folder", "transformer file"])
def test_bfl_flux2_vae_from_the_models_folder_paints_as_the_pipeline_with_it(
    folder, other, models_root, model, tmp_path
):
    """``--vae flux2-vae``: on the folder (swapped per picture), and for a transformer-only file whose
    --model-config holds no VAE weights (the file's VAE is the pipeline's)."""
    save_file(bfl_vae(other), str(models_root / "VAE" / "flux2-vae.safetensors"))
    request = _request(folder, vae="flux2-vae")
    if model == "transformer file":
        path = write_transformer_file(folder, tmp_path / "flux-2-klein-4b.safetensors", "Flux.2 klein")
        request = _request(path, config_only(folder, tmp_path / "configs", keep=("text_encoder",)), vae="flux2-vae")
    engine, recorder = Engine(), Recorder()
    result = engine.generate(request, recorder)
    assert not [line for line in recorder.notices if line.startswith("vae:")], recorder.notices
    _same_vae(engine._pipe.vae, other)
    with_other = _raw(folder, other)
    assert_pixels_close(result.images[0], with_other)
    assert np.abs(pixels(with_other) - pixels(_raw(folder))).max() > 8  # the VAE changed the picture
    assert "VAE: flux2-vae.safetensors" in result.infotext(0)


def _whole_klein(folder, path, vae=None, drop=""):
    """The tiny klein as Checkpoint Save writes it: transformer (BFL's names), VAE (ComfyUI's), Qwen3."""
    from diffusers import AutoencoderKLFlux2

    state = shipped_state(folder, "Flux.2 klein", "model.diffusion_model.")
    vae = vae if vae is not None else AutoencoderKLFlux2.from_pretrained(folder, subfolder="vae")
    state.update({"vae." + n: t for n, t in bfl_vae(vae, comfy=True).items() if not drop or drop not in n})
    qwen3 = {n: t for n, t in _weights(folder / "text_encoder").items() if n != "lm_head.weight"}
    state.update({"text_encoders.qwen3_4b.transformer." + n: t for n, t in qwen3.items()})
    save_file({n: t.contiguous() for n, t in state.items()}, str(path))
    return path


def test_a_whole_klein_checkpoint_paints_with_its_own_vae_and_qwen3(folder, other, tmp_path):
    """Every weight from the file (its VAE not the folder's); only configs and tokenizer from --model-config."""
    path = _whole_klein(folder, tmp_path / "flux-2-klein-aio.safetensors", other)
    assert inspect(path).parts == frozenset({"denoiser", "vae", "text"})
    configs = config_only(folder, tmp_path / "configs")
    assert not list(configs.rglob("*.safetensors"))
    engine, recorder = Engine(), Recorder()
    result = engine.generate(_request(path, configs), recorder)
    assert any(line.startswith("loaded flux-2-klein-aio (Flux.2 klein") for line in recorder.notices)
    assert_pixels_close(result.images[0], _raw(folder, other))
    _same_vae(engine._pipe.vae, other)
    qwen3, got = _weights(folder / "text_encoder"), engine._pipe.text_encoder.state_dict()
    assert all(torch.equal(got[n], qwen3[n]) for n in qwen3 if n != "lm_head.weight")


def test_a_whole_klein_file_with_a_damaged_vae_is_one_line(folder, tmp_path):
    path = _whole_klein(folder, tmp_path / "klein_odd.safetensors", drop="decoder.mid.attn_1.q.")
    with pytest.raises(ValueError) as caught:
        Engine().generate(_request(path, config_only(folder, tmp_path / "configs")))
    text = str(caught.value)
    assert text.startswith("model: the VAE in 'klein_odd.safetensors' does not fit --model-config's AutoencoderKLFlux2")
    assert "(BFL's layout: 2 weights missing, e.g. decoder.mid_block.attentions.0.to_q" in text
    assert "\n" not in text and len(text) < 200
