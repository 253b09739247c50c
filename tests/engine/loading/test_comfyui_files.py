"""Z-Image and Qwen-Image files as ComfyUI ships them: the transformer in ComfyUI's names (``model.diffusion_model.``
prefix), city96-style GGUF files of it (Q8_0, F16), and a whole Z-Image checkpoint as ComfyUI's Checkpoint Save
writes it (VAE under ``vae.``, Qwen3 under ``text_encoders.qwen3_4b.transformer.``), and a whole Qwen-Image
checkpoint (its VAE in Wan 2.1's names, Qwen2.5-VL under ``text_encoders.qwen25_7b.transformer.``).

Loaded through ``--model FILE --model-config FOLDER`` they paint what raw diffusers paints: the tiny folder's own
pipeline for unquantized files, and diffusers' ``from_single_file`` given the same GGUF for quantized ones.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import tiny_families
from helpers.bfl_checkpoint import config_only
from helpers.comfy_files import PREFIX, comfy_state, wan_vae, write_comfy_gguf
from helpers.pixels import pixels
from helpers.progress_recorder import Recorder

from jupyter_sd.engine import Engine
from jupyter_sd.engine.families import family_named
from jupyter_sd.engine.loading.files import inspect
from jupyter_sd.recipe.request import PaintRequest

PROMPT = "a red circle on a blue background"
FAMILIES = {
    "Z-Image": (tiny_families.make_tiny_zimage, "ZImagePipeline", "ZImageTransformer2DModel", "lumina2"),
    "Qwen-Image": (tiny_families.make_tiny_qwenimage, "QwenImagePipeline", "QwenImageTransformer2DModel", "qwen_image"),
}
BOUNDS = {"Q8_0": (0.5, 3), "Q4_0": (3.0, 24), "F16": (0.05, 1)}
"""Per type: the largest mean and max absolute pixel difference (of 255) from the unquantized picture allowed
(measured, 2 steps at 32 px: Z-Image Q8_0 0.13 and 1, Q4_0 2.2 and 15, F16 0.007 and 1; Qwen-Image Q8_0 0.03 and
1, Q4_0 0.59 and 4, F16 0.003 and 1)."""


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request, tmp_path_factory):
    """The family's name, its tiny folder, and a copy holding the VAE's and text encoder's weights only."""
    name = request.param
    folder = FAMILIES[name][0](tmp_path_factory.mktemp(f"tiny-{name}"))
    rest = config_only(folder, tmp_path_factory.mktemp("rest"), keep=("vae", "text_encoder"))
    return name, folder, rest


def _request(model, config="") -> PaintRequest:
    return PaintRequest(prompt=PROMPT, model=str(model), model_config=str(config), width=32, height=32, steps=2,
                        seed=5, rng="cpu", guidance=1.0, preview="none", save=False)  # fmt: skip


def _raw(name, folder, transformer=None, **components):
    """The family's own diffusers pipeline with CFG 1 (Z-Image's guidance 0), seed 5 on the CPU."""
    import diffusers

    extra = components if transformer is None else {"transformer": transformer, **components}
    pipe = getattr(diffusers, FAMILIES[name][1]).from_pretrained(folder, **extra)
    pipe.set_progress_bar_config(disable=True)
    guidance = {"guidance_scale": 0.0} if name == "Z-Image" else {"true_cfg_scale": 1.0}
    generator = torch.Generator("cpu").manual_seed(5)
    return pipe(prompt=PROMPT, width=32, height=32, num_inference_steps=2, generator=generator, **guidance).images[0]


def _loaded_line(recorder, name):
    """The load line, naming the family and its native size."""
    size = family_named(name).native_size
    return next(line for line in recorder.notices if line.startswith("loaded ") and f"({name}, {size}x{size}" in line)


def test_a_comfyui_transformer_file_paints_raw_diffusers_pixels(family, tmp_path):
    from safetensors.torch import save_file

    name, folder, rest = family
    path = tmp_path / f"{name.lower()}_bf16.safetensors"
    save_file(comfy_state(folder, name, PREFIX), str(path))
    info = inspect(path)
    assert (info.family.name, info.parts) == (name, frozenset({"denoiser"}))
    engine, recorder = Engine(), Recorder()
    result = engine.generate(_request(path, rest), recorder)
    expected = _raw(name, folder)
    assert pixels(expected).std() > 1
    assert np.array_equal(pixels(result.images[0]), pixels(expected))
    assert _loaded_line(recorder, name) and engine.info()["family"] == name


@pytest.mark.parametrize("quant", ["Q8_0", "Q4_0", "F16"])
def test_a_comfyui_gguf_file_paints_what_diffusers_paints_from_it(family, tmp_path, quant):
    import diffusers
    import gguf
    from diffusers.quantizers.gguf.utils import GGUFParameter

    name, folder, rest = family
    _, _, transformer_class, arch = FAMILIES[name]
    path = write_comfy_gguf(comfy_state(folder, name), tmp_path / f"{arch}-{quant}.gguf", quant, arch)
    info = inspect(path)
    assert (info.family.name, info.format, info.quant, info.denoiser_only) == (name, "gguf", quant, True)
    engine, recorder = Engine(), Recorder()
    result = engine.generate(_request(path, rest), recorder)
    assert f"GGUF {quant}" in _loaded_line(recorder, name) and engine.info()["family"] == name
    weights = dict(engine._pipe.transformer.named_parameters())
    packed = [p for p in weights.values() if isinstance(p, GGUFParameter)]
    if quant == "F16":  # diffusers' GGUF loader casts halves to the compute dtype, as from_single_file does
        assert not packed and {p.dtype for p in weights.values()} == {torch.float32}
    else:  # Z-Image's q, k and v: rows of the file's qkv, still quantized
        assert len(packed) >= 4 and all(p.quant_type == gguf.GGMLQuantizationType[quant] for p in packed)
        assert sum(p.numel() * p.element_size() for p in weights.values()) <= path.stat().st_size  # no second copy
    config = diffusers.GGUFQuantizationConfig(compute_dtype=torch.float32)
    theirs = getattr(diffusers, transformer_class).from_single_file(
        str(path), quantization_config=config, config=str(folder), subfolder="transformer", torch_dtype=torch.float32
    )
    assert np.array_equal(pixels(result.images[0]), pixels(_raw(name, folder, theirs)))
    difference = np.abs(pixels(result.images[0]).astype(int) - pixels(_raw(name, folder)).astype(int))
    mean_bound, max_bound = BOUNDS[quant]
    assert difference.mean() <= mean_bound and difference.max() <= max_bound, (difference.mean(), difference.max())


def _whole_zimage(folder, path, drop: str = ""):
    """The tiny Z-Image as Checkpoint Save writes it (its Qwen3's tensors containing `drop` left out)."""
    from helpers.ldm_checkpoint import _weights, vae_to_ldm
    from safetensors.torch import save_file

    state = comfy_state(folder, "Z-Image", PREFIX)
    vae = vae_to_ldm(_weights(folder / "vae"), json.loads((folder / "vae" / "config.json").read_text()))
    state.update({"vae." + n: t for n, t in vae.items()})
    qwen3 = {n: t for n, t in _weights(folder / "text_encoder").items() if not drop or drop not in n}
    state.update({"text_encoders.qwen3_4b.transformer.model." + n: t for n, t in qwen3.items()})
    save_file({n: t.contiguous() for n, t in state.items()}, str(path))
    return path


@pytest.fixture(scope="module")
def zimage_folder(tmp_path_factory):
    return tiny_families.make_tiny_zimage(tmp_path_factory.mktemp("tiny-zimage-whole"))


def test_a_whole_comfyui_zimage_checkpoint_paints_with_its_own_vae_and_text_encoder(zimage_folder, tmp_path):
    """Checkpoint Save's Z-Image file: every weight from the file, only configs and tokenizer from --model-config."""
    path = _whole_zimage(zimage_folder, tmp_path / "z_image_turbo_aio.safetensors")
    assert inspect(path).parts == frozenset({"denoiser", "vae", "text"})
    configs = config_only(zimage_folder, tmp_path / "configs")
    assert not list(configs.rglob("*.safetensors"))
    engine, recorder = Engine(), Recorder()
    result = engine.generate(_request(path, configs), recorder)
    assert np.array_equal(pixels(result.images[0]), pixels(_raw("Z-Image", zimage_folder)))
    assert _loaded_line(recorder, "Z-Image") and engine.info()["family"] == "Z-Image"


def test_a_whole_file_whose_text_encoder_is_incomplete_is_one_line(zimage_folder, tmp_path):
    path = _whole_zimage(zimage_folder, tmp_path / "z_image_aio.safetensors", drop="layers.1.mlp")
    with pytest.raises(ValueError) as caught:
        Engine().generate(_request(path, config_only(zimage_folder, tmp_path / "configs")))
    text = str(caught.value)
    assert text.startswith("model: the qwen3_4b text encoder in 'z_image_aio.safetensors' lacks 3 of Qwen3Model's")
    assert "\n" not in text and len(text) < 200


def _wan_like_vae(seed):
    """A random Qwen-Image VAE of the shipped layout (four levels, two residual blocks each), 8 wide."""
    from diffusers import AutoencoderKLQwenImage

    torch.manual_seed(seed)
    return AutoencoderKLQwenImage(base_dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
                                  temperal_downsample=[False, True, True],
                                  latents_mean=[0.05 * k - 0.4 for k in range(16)],
                                  latents_std=[0.8 + 0.05 * k for k in range(16)])  # fmt: skip


def _whole_qwen(folder, path, vae_state):
    """The tiny Qwen-Image as Checkpoint Save writes it: `vae_state` (Wan's names) under ``vae.``, its Qwen2.5-VL
    under ``text_encoders.qwen25_7b.transformer.`` without the LM head."""
    from helpers.ldm_checkpoint import _weights
    from safetensors.torch import save_file

    state = comfy_state(folder, "Qwen-Image", PREFIX)
    qwen = {n: t for n, t in _weights(folder / "text_encoder").items() if not n.startswith("lm_head.")}
    state.update({"text_encoders.qwen25_7b.transformer." + n: t for n, t in qwen.items()})
    state.update({"vae." + n: t for n, t in vae_state.items()})
    save_file({n: t.contiguous() for n, t in state.items()}, str(path))
    return path


@pytest.fixture(scope="module")
def qwen_folder(tmp_path_factory):
    return tiny_families.make_tiny_qwenimage(tmp_path_factory.mktemp("tiny-qwen-whole"))


def test_a_whole_comfyui_qwen_image_checkpoint_paints_with_its_own_wan_layout_vae(qwen_folder, tmp_path):
    """Every weight from the file: the transformer, the Qwen2.5-VL (ComfyUI's ``qwen25_7b``, no LM head) and the
    VAE in Wan 2.1's names (written by the test's own map of them), while --model-config holds another VAE."""
    theirs, other = _wan_like_vae(1), _wan_like_vae(2)
    path = _whole_qwen(qwen_folder, tmp_path / "qwen_image_aio.safetensors", wan_vae(theirs.state_dict(), 2))
    assert inspect(path).parts == frozenset({"denoiser", "vae", "text"})
    configs = config_only(qwen_folder, tmp_path / "configs")
    other.save_pretrained(configs / "vae")  # same layout, other weights: were they read, the pixels would show it
    assert not [f for f in configs.rglob("*.safetensors") if f.parent.name != "vae"]
    engine, recorder = Engine(), Recorder()
    result = engine.generate(_request(path, configs), recorder)
    expected = _raw("Qwen-Image", qwen_folder, vae=theirs)
    assert pixels(expected).std() > 1
    assert np.array_equal(pixels(result.images[0]), pixels(expected))
    assert not np.array_equal(pixels(result.images[0]), pixels(_raw("Qwen-Image", qwen_folder, vae=other)))
    line = _loaded_line(recorder, "Qwen-Image")
    assert "VAE from --model-config" not in line
    loaded = engine._pipe.vae.state_dict()
    assert all(torch.equal(loaded[n], t) for n, t in theirs.state_dict().items())


def test_a_whole_qwen_image_file_whose_vae_does_not_fit_is_one_line(qwen_folder, tmp_path):
    """Three levels of one residual block (the tiny folder's VAE) are not the layout diffusers' Wan converter maps."""
    from helpers.ldm_checkpoint import _weights

    state = wan_vae(_weights(qwen_folder / "vae"), 1)
    path = _whole_qwen(qwen_folder, tmp_path / "qwen_odd_vae.safetensors", state)
    with pytest.raises(ValueError) as caught:
        Engine().generate(_request(path, config_only(qwen_folder, tmp_path / "configs")))
    text = str(caught.value)
    assert text.startswith("model: the VAE in 'qwen_odd_vae.safetensors' does not fit --model-config's")
    assert "AutoencoderKLQwenImage (Wan 2.1's layout:" in text and "\n" not in text and len(text) < 200
