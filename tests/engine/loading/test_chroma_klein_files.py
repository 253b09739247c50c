"""Chroma and Flux.2 klein single files as they are downloaded: lodestones' ``Chroma1-HD.safetensors`` and BFL's
``flux-2-klein-4b.safetensors`` (the transformer alone, BFL's names, with or without ComfyUI's
``model.diffusion_model.``), and city96-style GGUF files of them.

The tests write the tiny transformers in BFL's names (`helpers.family_files`: the inverses of diffusers' converters)
and load them with ``--model-config`` a copy of the folder without transformer weights: the picture is raw
diffusers' from the folder (within 1/255: another loading path), the transformer's tensors equal. A GGUF Q8_0 or
Q4_0 file paints within 1/255 of the same tensors dequantized by the ``gguf`` package and saved as a safetensors file.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import tiny_families
from helpers.bfl_checkpoint import config_only, write_bfl_transformer
from helpers.comfy_files import write_comfy_gguf
from helpers.family_files import LAYOUTS, shipped_state, write_transformer_file
from helpers.paint_modes import generators
from helpers.pixels import assert_pixels_close, pixels
from helpers.progress_recorder import Recorder
from helpers.tiny_flow import make_tiny_flux

from jupyter_sd.engine import Engine
from jupyter_sd.engine.loading.files import inspect
from jupyter_sd.recipe.request import PaintRequest

PROMPT = "a red circle on a blue background"
FAMILIES = {
    "Chroma": (tiny_families.make_tiny_chroma, "ChromaPipeline"),
    "Flux.2 klein": (tiny_families.make_tiny_flux2_klein, "Flux2KleinPipeline"),
}
BOUNDS = {"Q8_0": (0.5, 3), "Q4_0": (4.0, 30)}
"""Against the unquantized picture: the largest mean and max absolute pixel difference (of 255) allowed (measured,
2 steps at 32 px: Q8_0 Chroma 0.11 and 1, Flux.2 klein 0.13 and 1; Q4_0 Chroma 2.0 and 11, klein 2.2
and 16). The K-quants (Q4_K …) read through the same diffusers path; the ``gguf`` package cannot write them."""


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request, tmp_path_factory):
    """The family's name, its tiny folder, and a copy holding the VAE's and text encoder's weights only."""
    name = request.param
    folder = FAMILIES[name][0](tmp_path_factory.mktemp(f"tiny-{name}"))
    rest = config_only(folder, tmp_path_factory.mktemp("rest"), keep=("vae", "text_encoder"))
    return name, folder, rest


@pytest.fixture(scope="module")
def expected(family):
    """Raw diffusers' picture from the family's folder (painted once per family)."""
    name, folder, _ = family
    return _raw(name, folder)


def _request(model, config="") -> PaintRequest:
    return PaintRequest(prompt=PROMPT, model=str(model), model_config=str(config), width=32, height=32, steps=2,
                        seed=5, rng="cpu", guidance=1.0, preview="none", save=False)  # fmt: skip


def _raw(name, folder):
    """The family's own diffusers pipeline from the folder, CFG 1, seed 5 on the CPU."""
    import diffusers

    pipe = getattr(diffusers, FAMILIES[name][1]).from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    call = {"width": 32, "height": 32, "num_inference_steps": 2, "guidance_scale": 1.0}
    return pipe(prompt=PROMPT, generator=generators([5]), **call).images[0]


def _transformer_equal(pipe, folder, name):
    import diffusers

    class_name = LAYOUTS[name][0]
    expected = getattr(diffusers, class_name).from_pretrained(folder, subfolder="transformer").state_dict()
    got = pipe.transformer.state_dict()
    assert set(got) == set(expected) and all(torch.equal(got[k], expected[k]) for k in expected)


def test_the_bfl_layouts_are_the_inverse_of_diffusers_converters():
    """Checked at Chroma's real width (3072, meta tensors: diffusers' Chroma converter assumes it) and klein's tiny."""
    from accelerate import init_empty_weights
    from diffusers import ChromaTransformer2DModel, Flux2Transformer2DModel
    from diffusers.loaders import single_file_utils as theirs

    with init_empty_weights():
        chroma = ChromaTransformer2DModel(num_layers=1, num_single_layers=1, approximator_layers=2).state_dict()
    back = theirs.convert_chroma_transformer_checkpoint_to_diffusers(_layout("Chroma", chroma))
    assert {k: v.shape for k, v in back.items()} == {k: v.shape for k, v in chroma.items()}
    torch.manual_seed(0)
    klein = Flux2Transformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                                    attention_head_dim=8, num_attention_heads=2, joint_attention_dim=8,
                                    timestep_guidance_channels=16, axes_dims_rope=[2, 2, 2, 2])  # fmt: skip
    klein = klein.state_dict()
    back = theirs.convert_flux2_transformer_checkpoint_to_diffusers(_layout("Flux.2 klein", klein, "x."))
    assert set(back) == set(klein) and all(torch.equal(back[k], klein[k]) for k in klein)


def _layout(name, state, prefix=""):
    """`state` in `name`'s BFL layout (unprefixed again where diffusers' converter would keep a prefix)."""
    return {k.removeprefix(prefix): v for k, v in LAYOUTS[name][1](state, prefix).items()}


@pytest.mark.parametrize("prefix", ["", "model.diffusion_model."])
def test_a_transformer_file_paints_the_folders_pixels(family, expected, prefix, tmp_path):
    name, folder, rest = family
    path = write_transformer_file(folder, tmp_path / "diffusion_model.safetensors", name, prefix)
    info = inspect(path)
    assert (info.family.name, info.format, info.denoiser_only) == (name, "safetensors", True)
    engine, recorder = Engine(), Recorder()
    result = engine.generate(_request(path, rest), recorder)
    assert any(line.startswith("loaded diffusion_model") and f"({name}, 1024x1024" in line for line in recorder.notices)
    assert_pixels_close(result.images[0], expected)
    _transformer_equal(engine._pipe, folder, name)


def _dequantized_file(gguf_path, path):
    """The GGUF file's tensors as the ``gguf`` package dequantizes them, saved as a safetensors file (same names)."""
    import gguf
    from safetensors.torch import save_file

    state = {}
    for tensor in gguf.GGUFReader(str(gguf_path)).tensors:
        values = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        state[tensor.name] = torch.from_numpy(np.array(values, dtype=np.float32))
    save_file(state, str(path))
    return path


@pytest.mark.parametrize("quant", list(BOUNDS))
def test_a_gguf_file_paints_its_dequantized_weights(family, expected, tmp_path, quant):
    import gguf
    from diffusers.quantizers.gguf.utils import GGUFParameter

    name, folder, rest = family
    path = write_comfy_gguf(shipped_state(folder, name), tmp_path / f"tiny-{quant}.gguf", quant, "flux")
    info = inspect(path)
    assert (info.family.name, info.format, info.quant, info.denoiser_only) == (name, "gguf", quant, True)
    engine, recorder = Engine(), Recorder()
    result = engine.generate(_request(path, rest), recorder)
    assert any(line.startswith(f"loaded tiny-{quant}") and f"GGUF {quant}" in line for line in recorder.notices)
    weights = dict(engine._pipe.transformer.named_parameters())
    packed = [p for p in weights.values() if isinstance(p, GGUFParameter)]
    assert len(packed) >= 6 and all(p.quant_type == getattr(gguf.GGMLQuantizationType, quant) for p in packed)
    assert sum(p.numel() * p.element_size() for p in weights.values()) <= path.stat().st_size  # no second copy
    twin = _dequantized_file(path, tmp_path / "dequantized.safetensors")
    reference = Engine().generate(_request(twin, rest)).images[0]
    assert_pixels_close(result.images[0], reference)
    difference = np.abs(pixels(result.images[0]) - pixels(expected))
    assert difference.max() > 0  # the quantized weights painted (rounding shows)
    bound = BOUNDS[quant]
    assert difference.mean() <= bound[0] and difference.max() <= bound[1], (difference.mean(), difference.max())


@pytest.fixture(scope="module")
def flux_dir(tmp_path_factory):
    return make_tiny_flux(tmp_path_factory.mktemp("tiny-flux"))


def test_files_of_another_family_than_model_config_are_one_line(family, flux_dir, tmp_path):
    """Chroma's and klein's files are told from Flux's by their tensor names; a Flux --model-config is refused."""
    name, folder, rest = family
    path = write_transformer_file(folder, tmp_path / "chroma-or-klein.safetensors", name)
    with pytest.raises(ValueError) as caught:
        Engine().generate(_request(path, flux_dir))
    line = (
        f"model: 'chroma-or-klein.safetensors' is a {name} file, and --model-config '{flux_dir}' is a Flux model "
        f"(pass a diffusers {name} folder or hub id)"
    )
    assert str(caught.value) == line[:199]
    flux_file = write_bfl_transformer(flux_dir, tmp_path / "flux1.safetensors")
    assert inspect(flux_file).family.name == "Flux"
    with pytest.raises(ValueError) as caught:
        Engine().generate(_request(flux_file, rest))
    assert str(caught.value).startswith(f"model: 'flux1.safetensors' is a Flux file, and --model-config '{rest}' is a")
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 200


@pytest.fixture
def models_root(tmp_path):
    """An empty models folder in Forge's layout, set as the models folder for one test."""
    from jupyter_sd import library

    root = tmp_path / "models"
    for sub in ("VAE", "text_encoder"):
        (root / sub).mkdir(parents=True)
    before = library.models_dir()
    library.set_models_dir(root)
    yield root
    library.set_models_dir(before)


def test_the_other_parts_come_from_the_models_folder(family, expected, models_root, tmp_path):
    """Chroma: ``--vae ae --text-encoder t5xxl`` (BFL's VAE names, transformers' T5); Flux.2 klein: ComfyUI's
    ``qwen_3_4b.safetensors`` (transformers' names under ``model.``, no LM head); --model-config holds configs only."""
    import json

    from helpers.ldm_checkpoint import _weights, vae_to_ldm
    from safetensors.torch import save_file

    name, folder, _ = family
    path = write_transformer_file(folder, tmp_path / "diffusion_model.safetensors", name)
    encoder, vae = ("qwen_3_4b", "") if name == "Flux.2 klein" else ("t5xxl", "ae")
    if vae:
        vae_config = json.loads((folder / "vae" / "config.json").read_text())
        save_file(vae_to_ldm(_weights(folder / "vae"), vae_config), str(models_root / "VAE" / "ae.safetensors"))
    weights = {n: t for n, t in _weights(folder / "text_encoder").items() if n != "lm_head.weight"}  # (Qwen3's)
    save_file(weights, str(models_root / "text_encoder" / f"{encoder}.safetensors"))
    configs = config_only(folder, tmp_path / "configs", keep=() if vae else ("vae",))
    engine = Engine()
    result = engine.generate(_request(path, configs).replace(vae=vae, text_encoder=encoder))
    assert f"Module {1 + bool(vae)}: {encoder}" in result.infotext(0)
    assert_pixels_close(result.images[0], expected)
    weights, got = _weights(folder / "text_encoder"), engine._pipe.text_encoder.state_dict()
    assert all(torch.equal(got[n], weights[n]) for n in weights if n != "lm_head.weight")


def test_a_whole_chroma_checkpoint_paints_with_its_own_vae_and_t5(tmp_path_factory, tmp_path):
    """ComfyUI's Checkpoint Save layout (transformer, ``vae.`` in LDM names, ``text_encoders.t5xxl.transformer.``):
    every weight from the file, only configs and the tokenizer from --model-config."""
    import json

    from helpers.ldm_checkpoint import _weights, vae_to_ldm
    from safetensors.torch import save_file

    folder = tiny_families.make_tiny_chroma(tmp_path_factory.mktemp("tiny-chroma-whole"))
    state = shipped_state(folder, "Chroma", "model.diffusion_model.")
    vae = vae_to_ldm(_weights(folder / "vae"), json.loads((folder / "vae" / "config.json").read_text()))
    state.update({"vae." + n: t for n, t in vae.items()})
    state.update({"text_encoders.t5xxl.transformer." + n: t for n, t in _weights(folder / "text_encoder").items()})
    path = tmp_path / "chroma_aio.safetensors"
    save_file({n: t.contiguous() for n, t in state.items()}, str(path))
    assert inspect(path).parts == frozenset({"denoiser", "vae", "text"})
    engine = Engine()
    result = engine.generate(_request(path, config_only(folder, tmp_path / "configs")))
    assert_pixels_close(result.images[0], _raw("Chroma", folder))
    _transformer_equal(engine._pipe, folder, "Chroma")
