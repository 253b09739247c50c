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
    """A transformers T5 encoder or Qwen3 model as llama.cpp's converter (and city96) writes it: llama.cpp names
    (``enc.blk.0.attn_q.weight``, ``blk.0.ffn_up.weight``, ``token_embd.weight``), the architecture's metadata, 2-D
    weights in `quant` where their rows split into its blocks (else F32, as llama.cpp falls back), 1-D ones F32.

    `tensor_type` forces a type on some llama.cpp names (raw bytes, for a type the ``gguf`` package cannot write).
    """
    import gguf

    config = model.config
    arch = arch or ("t5encoder" if config.model_type == "t5" else config.model_type)
    names = gguf.get_tensor_name_map(next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch),
                                     getattr(config, "num_layers", 0) or config.num_hidden_layers)  # fmt: skip
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
        writer.add_key_length(config.head_dim)
        writer.add_rope_freq_base(config.rope_parameters["rope_theta"])
        writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    qtype = gguf.GGMLQuantizationType[quant]
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    seen = set()
    for hf_name, tensor in model.state_dict().items():
        stem, _, suffix = hf_name.rpartition(".")
        name = names.get_name(stem) + "." + suffix if names.get_name(stem) else None
        if name is None or name in seen or hf_name == "lm_head.weight" and config.tie_word_embeddings:
            continue  # T5's encoder.embed_tokens is its shared table: written once, as token_embd
        seen.add(name)
        data = tensor.float().numpy()
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
