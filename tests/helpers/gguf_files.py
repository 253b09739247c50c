"""Write a diffusers Flux transformer as a GGUF file the way city96 publishes them: BFL names, 2-D weights
quantized (Q8_0, Q4_0 …), 1-D tensors (biases, norm scales) kept as F32; written with the ``gguf`` package."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from helpers.bfl_checkpoint import diffusers_to_bfl, transformer_state


def write_gguf_transformer(folder: str | Path, path: str | Path, quant: str = "Q8_0") -> Path:
    """The transformer of a diffusers Flux `folder` as a GGUF file at `path`, its weights in `quant`."""
    return write_gguf(diffusers_to_bfl(transformer_state(folder)), path, quant)


def write_gguf(state: dict, path: str | Path, quant: str = "Q8_0") -> Path:
    """A state dict in BFL names as a GGUF file: 2-D weights in `quant`, the rest F32."""
    import gguf

    qtype = gguf.GGMLQuantizationType[quant]
    writer = gguf.GGUFWriter(str(path), arch="flux")
    for name, tensor in state.items():
        data = tensor.float().numpy()
        if data.ndim == 2:
            writer.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(name, data.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(path)


def write_gguf_text_encoder(model, path: str | Path, quant: str = "Q8_0", arch: str = "", tensor_type: dict = None):
    """A transformers T5 encoder, Qwen3 or Qwen2.5-VL model as llama.cpp's converter (and city96) writes it:
    llama.cpp names (``enc.blk.0.attn_q.weight``, ``blk.0.ffn_up.weight``, ``token_embd.weight``), the
    architecture's metadata, 2-D weights in `quant` where their rows split into its blocks (else F32, as llama.cpp
    falls back), 1-D ones F32; Qwen2.5-VL's language model only (llama.cpp writes its vision tower to an mmproj).

    `tensor_type` forces a type on some llama.cpp names (raw bytes, for a type the ``gguf`` package cannot write).
    """
    import gguf

    config = model.config.get_text_config()  # Qwen2.5-VL: its language model's
    arch = arch or _arch(config)
    writer = gguf.GGUFWriter(str(path), arch=arch)
    writer.add_name(f"tiny {arch}")
    writer.add_block_count(getattr(config, "num_layers", 0) or config.num_hidden_layers)
    writer.add_embedding_length(getattr(config, "d_model", 0) or config.hidden_size)
    writer.add_feed_forward_length(getattr(config, "d_ff", 0) or config.intermediate_size)
    writer.add_head_count(getattr(config, "num_heads", 0) or config.num_attention_heads)
    if arch == "t5encoder":
        writer.add_context_length(512)
        writer.add_key_length(config.d_kv)
        writer.add_value_length(config.d_kv)
        writer.add_layer_norm_rms_eps(config.layer_norm_epsilon)
        writer.add_relative_attn_buckets_count(config.relative_attention_num_buckets)
    else:
        writer.add_context_length(config.max_position_embeddings)
        writer.add_head_count_kv(config.num_key_value_heads)
        writer.add_key_length(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)
        writer.add_rope_freq_base(config.rope_parameters["rope_theta"])
        writer.add_layer_norm_rms_eps(config.rms_norm_eps)
        if arch == "qwen2vl":
            writer.add_rope_dimension_sections([*config.rope_parameters["mrope_section"], 0])
    qtype = gguf.GGMLQuantizationType[quant]
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    state = model.state_dict()
    for hf_name, name in llama_cpp_names(model, arch).items():
        data = state[hf_name].float().numpy()
        forced = (tensor_type or {}).get(name)
        if forced is not None:
            size = gguf.GGML_QUANT_SIZES[forced]
            raw = np.zeros((data.shape[0], data.shape[1] // size[0] * size[1]), dtype=np.uint8)
            writer.add_tensor(name, raw, raw_dtype=forced)
        elif data.ndim == 2 and qtype == gguf.GGMLQuantizationType.F16:
            writer.add_tensor(name, data.astype(np.float16))
        elif data.ndim == 2 and data.shape[1] % block == 0:
            writer.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(name, data.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(path)


def llama_cpp_names(model, arch: str = "") -> dict:
    """HF parameter name → llama.cpp tensor name, as the ``gguf`` package's own name map (its converter's) gives
    them; each tensor once (T5's tied ``encoder.embed_tokens`` and a tied LM head are not written)."""
    import gguf

    config = model.config.get_text_config()
    layers = getattr(config, "num_layers", 0) or config.num_hidden_layers
    table = gguf.get_tensor_name_map(next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == (arch or _arch(config))),
                                     layers)  # fmt: skip
    names: dict = {}
    for hf_name in model.state_dict():
        if hf_name.startswith("model.visual."):
            continue  # llama.cpp writes the vision tower to a separate mmproj file
        stem, _, suffix = hf_name.replace("model.language_model.", "model.").rpartition(".")
        name = table.get_name(stem)
        tied = hf_name == "lm_head.weight" and getattr(model.config, "tie_word_embeddings", False)
        if name is not None and not tied and name + "." + suffix not in names.values():
            names[hf_name] = name + "." + suffix
    return names


def _arch(config) -> str:
    return {"t5": "t5encoder", "qwen2_5_vl_text": "qwen2vl"}.get(config.model_type, config.model_type)
