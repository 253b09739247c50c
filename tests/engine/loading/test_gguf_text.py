"""GGUF text encoders as city96 and llama.cpp publish them: T5 (``t5encoder``) and Qwen3 (``qwen3``), Q8_0 and F16.

Each file is written by the ``gguf`` package from a tiny transformers model, in llama.cpp's tensor names and with its
architecture's metadata. The loaded encoder must hold its Linear weights quantized (diffusers' GGUFParameter),
encode as the same model holding the weights dequantized by the ``gguf`` package (float rounding only), and stay
within Q8_0's rounding of the unquantized model. A tiny Flux painting with the GGUF T5 must equal one with those
dequantized weights in a safetensors T5 file.
"""

from __future__ import annotations

import gguf
import numpy as np
import pytest
import torch
from diffusers.quantizers.gguf.utils import GGUFParameter
from helpers.bfl_checkpoint import config_only, write_bfl_transformer
from helpers.gguf_files import llama_cpp_names, write_gguf_text_encoder
from helpers.ldm_checkpoint import clip_to_ldm
from helpers.pixels import assert_pixels_close
from helpers.progress_recorder import Recorder
from helpers.tiny_flow import make_tiny_flux
from safetensors.torch import save_file
from transformers import Qwen3Config, Qwen3ForCausalLM, Qwen3Model, T5Config, T5EncoderModel

from jupyter_sd import library
from jupyter_sd.engine import Engine
from jupyter_sd.engine.loading import gguf_text
from jupyter_sd.recipe.request import PaintRequest

PROMPT = "a red circle on a blue background"
TWIN_BOUND = 0.005
"""Against the ``gguf`` package's float32 dequantization, over the output's std: diffusers dequantizes Q8_0 through
float16 (measured 0.002)."""
Q8_BOUND = 0.1
"""Q8_0 against the unquantized model: the largest output difference over the output's std (measured: T5 0.048,
Qwen3 0.025)."""


def _t5():
    torch.manual_seed(0)
    config = T5Config(
        vocab_size=64, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, feed_forward_proj="gated-gelu"
    )  # fmt: skip  (T5 v1.1, as t5xxl is)
    return T5EncoderModel(config).eval()


def _qwen3(cls=Qwen3Model):
    torch.manual_seed(0)
    config = Qwen3Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=1, head_dim=16, vocab_size=96, tie_word_embeddings=True)  # fmt: skip
    return cls(config).eval()


def _qwen25_vl():
    """Qwen-Image's text encoder: a Qwen2.5-VL whose GGUF file holds the language model only (no vision tower)."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(0)
    text = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "vocab_size": 96,
        "rope_scaling": {"type": "mrope", "mrope_section": [2, 2, 4]},
    }
    vision = {"depth": 1, "hidden_size": 16, "intermediate_size": 32, "num_heads": 2, "out_hidden_size": 32,
              "patch_size": 2, "temporal_patch_size": 1, "window_size": 4, "fullatt_block_indexes": [0]}  # fmt: skip
    config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, bos_token_id=0, eos_token_id=1)
    return Qwen2_5_VLForConditionalGeneration(config).eval()


def _dequantized(model, path):
    """`model`'s twin holding the file's weights as the ``gguf`` package dequantizes them (independent of ours)."""
    tensors = {t.name: t for t in gguf.GGUFReader(str(path)).tensors}
    twin = type(model)(model.config).eval()
    state = {}
    for hf_name, name in llama_cpp_names(model).items():
        source = tensors[name]
        state[hf_name] = torch.from_numpy(gguf.quants.dequantize(source.data, source.tensor_type).copy())
    twin.load_state_dict(state, strict=False)
    twin.tie_weights()
    return twin


def _encode(model, ids):
    with torch.no_grad():
        return model(ids, output_hidden_states=True).hidden_states[-1]


@pytest.mark.parametrize("quant", ["Q8_0", "F16"])
@pytest.mark.parametrize("build", [_t5, _qwen3, lambda: _qwen3(Qwen3ForCausalLM), _qwen25_vl],
                         ids=["t5", "qwen3", "qwen3-lm", "qwen2.5-vl"])  # fmt: skip
def test_a_gguf_text_encoder_encodes_as_its_weights_say(tmp_path, build, quant):
    model = build()
    path = write_gguf_text_encoder(model, tmp_path / f"encoder-{quant}.gguf", quant)
    names = {t.name for t in gguf.GGUFReader(str(path)).tensors}
    if model.config.model_type == "t5":  # city96's names
        assert {"token_embd.weight", "enc.blk.0.attn_q.weight", "enc.blk.0.attn_rel_b.weight",
                "enc.output_norm.weight", "enc.blk.1.ffn_gate.weight"} <= names  # fmt: skip
    else:  # Qwen3 has q/k norms, Qwen2.5 q/k/v biases
        assert {"token_embd.weight", "blk.0.attn_q.weight", "blk.1.ffn_down.weight", "output_norm.weight"} <= names
        assert ("blk.0.attn_q_norm.weight" in names) == (model.config.model_type == "qwen3")
    loaded = gguf_text.load_encoder((type(model), model.config), path, torch.float32)
    if hasattr(getattr(model, "model", None), "visual"):  # the GGUF holds no vision tower: text-to-image never needs it
        assert loaded.model.visual is None and not any(n.startswith("v.") for n in names)
    linears = [m for m in loaded.modules() if isinstance(m, torch.nn.Linear)]  # all split into Q8_0 blocks
    packed = [m.weight for m in linears if isinstance(m.weight, GGUFParameter)]
    if quant == "Q8_0":
        tied = getattr(model.config, "tie_word_embeddings", False) and hasattr(model, "lm_head")
        assert len(packed) == len(linears) - tied >= 10  # a tied LM head is the (dequantized) embedding
        assert all(p.quant_type == gguf.GGMLQuantizationType.Q8_0 and p.element_size() == 1 for p in packed)
    else:
        assert not packed  # F16 weights are plain tensors
    ids = torch.randint(
        0, model.config.get_text_config().vocab_size, (2, 9), generator=torch.Generator().manual_seed(1)
    )
    ours, twin, plain = _encode(loaded, ids), _encode(_dequantized(model, path), ids), _encode(model, ids)
    same = ((ours - twin).abs().max() / plain.std()).item()
    error = ((ours - plain).abs().max() / plain.std()).item()
    assert same < TWIN_BOUND, same
    assert 0 < error < (Q8_BOUND if quant == "Q8_0" else 0.01), error


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A models folder: the tiny Flux's transformer (BFL names), CLIP-L, and its T5 as Q8_0 GGUF and dequantized."""
    where = tmp_path_factory.mktemp("gguf-text")
    flux = make_tiny_flux(where / "flux")
    root = where / "models"
    for folder in ("Stable-diffusion", "text_encoder"):
        (root / folder).mkdir(parents=True)
    model = write_bfl_transformer(flux, root / "Stable-diffusion" / "flux1-tiny.safetensors")
    t5 = T5EncoderModel.from_pretrained(flux / "text_encoder_2").eval()
    path = write_gguf_text_encoder(t5, root / "text_encoder" / "t5-v1_1-xxl-encoder-Q8_0.gguf", "Q8_0")
    twin = _dequantized(t5, path).state_dict()
    twin.pop("encoder.embed_tokens.weight")  # tied to shared.weight, as T5 files keep it
    save_file({k: v.contiguous() for k, v in twin.items()}, str(root / "text_encoder" / "t5-dequantized.safetensors"))
    write_gguf_text_encoder(_qwen3(), root / "text_encoder" / "qwen3-Q8_0.gguf", "Q8_0")
    write_gguf_text_encoder(_qwen3(), root / "text_encoder" / "llama-Q8_0.gguf", "Q8_0", arch="llama")
    write_gguf_text_encoder(t5, root / "text_encoder" / "t5-Q8_1.gguf", "Q8_0",
                            tensor_type={"enc.blk.0.attn_q.weight": gguf.GGMLQuantizationType.Q8_1})  # fmt: skip
    from safetensors.torch import load_file

    save_file(clip_to_ldm(load_file(str(flux / "text_encoder" / "model.safetensors"))),
              str(root / "text_encoder" / "clip_l.safetensors"))  # fmt: skip
    before = library.models_dir()
    library.set_models_dir(root)
    yield model, config_only(flux, where / "configs", keep=("vae",))
    library.set_models_dir(before)


def _request(model, configs, encoders):
    return PaintRequest(prompt=PROMPT, model=str(model), model_config=str(configs), text_encoder=encoders,
                        width=32, height=32, steps=3, seed=5, rng="cpu", preview="none")  # fmt: skip


def test_flux_paints_with_a_gguf_t5_as_with_its_dequantized_weights(models):
    model, configs = models
    engine = Engine()
    recorder = Recorder()
    quantized = engine.generate(_request(model, configs, "clip_l,t5-v1_1-xxl-encoder-Q8_0"), recorder)
    assert any(line.startswith("loaded") and "T5 GGUF Q8_0" in line for line in recorder.notices), recorder.notices
    t5 = engine._pipe.text_encoder_2
    assert isinstance(t5.encoder.block[0].layer[0].SelfAttention.q.weight, GGUFParameter)
    assert "Module 2: t5-v1_1-xxl-encoder-Q8_0" in quantized.infotext(0)
    plain = engine.generate(_request(model, configs, "clip_l,t5-dequantized"))
    assert not isinstance(engine._pipe.text_encoder_2.encoder.block[0].layer[0].SelfAttention.q.weight, GGUFParameter)
    assert_pixels_close(quantized.images[0], plain.images[0])  # the same numbers, dequantized per call or at load
    assert np.asarray(quantized.images[0]).std() > 1


def test_gguf_text_encoder_refusals_are_one_line(models):
    model, configs = models
    engine = Engine()
    with pytest.raises(ValueError) as caught:
        engine.generate(_request(model, configs, "clip_l,qwen3-Q8_0"))
    assert str(caught.value) == (
        "text-encoder: 'qwen3-Q8_0.gguf' is a Qwen3 GGUF file, and this model takes CLIPTextModel, T5EncoderModel"
    )
    with pytest.raises(ValueError) as caught:
        engine.generate(_request(model, configs, "clip_l,llama-Q8_0"))
    assert (
        str(caught.value) == "text-encoder: 'llama-Q8_0.gguf' is a llama GGUF file; GGUF text encoders are T5 or Qwen"
    )
    with pytest.raises(ValueError) as caught:
        engine.generate(_request(model, configs, "clip_l,t5-Q8_1"))
    assert str(caught.value) == (
        "text-encoder: 't5-Q8_1.gguf' holds Q8_1 tensors, which diffusers' GGUF layers cannot run "
        "(Q8_0, Q6_K, Q5_K, Q4_K, Q4_0 … can)"
    )
    assert not engine.busy


def test_a_qwen3_file_goes_to_the_qwen3_slot(models):
    """Z-Image's and klein's one text encoder is a Qwen3: the file's architecture picks the slot, whatever its name."""
    path = library.models_dir() / "text_encoder" / "qwen3-Q8_0.gguf"
    qwen = _qwen3()
    slots = {"text_encoder": (Qwen3Model, qwen.config)}
    assert gguf_text.slot_for(path, slots) == "text_encoder"
    assert gguf_text.slot_for(path, {"text_encoder": (Qwen3ForCausalLM, qwen.config)}) == "text_encoder"
    t5 = library.models_dir() / "text_encoder" / "t5-v1_1-xxl-encoder-Q8_0.gguf"
    with pytest.raises(ValueError) as caught:
        gguf_text.slot_for(t5, slots)
    assert (
        str(caught.value)
        == "text-encoder: 't5-v1_1-xxl-encoder-Q8_0.gguf' is a T5 GGUF file, and this model takes Qwen3Model"
    )


def test_a_pasted_forge_recipe_finds_a_gguf_text_encoder(models):
    from jupyter_sd.recipe.paste import read_pasted

    text = "a fox\nSteps: 3, Seed: 5, Module 1: clip_l, Module 2: t5-v1_1-xxl-encoder-Q8_0"
    assert read_pasted(text).options["text_encoder"] == "clip_l,t5-v1_1-xxl-encoder-Q8_0"


def test_z_image_paints_with_a_gguf_qwen3_as_with_its_dequantized_weights(tmp_path):
    """Z-Image reads the prompt through its Qwen3's second-to-last hidden states, under its chat template; a mixed
    file (as llama.cpp writes narrow rows: Q8_0 where the rows split into blocks, F32 elsewhere) feeds it the same."""
    from diffusers import ZImagePipeline
    from helpers.tiny_families import make_tiny_zimage

    folder = make_tiny_zimage(tmp_path / "zimage")
    qwen = Qwen3Model.from_pretrained(folder / "text_encoder").eval()
    path = write_gguf_text_encoder(qwen, tmp_path / "Qwen3-tiny-Q8_0.gguf", "Q8_0")
    loaded = gguf_text.load_encoder((Qwen3Model, qwen.config), path, torch.float32)
    assert isinstance(loaded.layers[0].mlp.down_proj.weight, GGUFParameter)  # 32 wide: Q8_0 blocks
    pictures = []
    for encoder in (loaded, _dequantized(qwen, path)):
        pipe = ZImagePipeline.from_pretrained(folder, text_encoder=encoder, dtype=torch.float32)
        call = {"prompt": PROMPT, "height": 32, "width": 32, "num_inference_steps": 2, "guidance_scale": 1.0}
        pictures.append(pipe(**call, generator=torch.Generator().manual_seed(4)).images[0])
    assert_pixels_close(*pictures)
