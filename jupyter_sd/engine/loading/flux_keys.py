"""Flux.1 and Chroma transformer tensors in Black Forest Labs' (ComfyUI's, city96's GGUF) names → diffusers' names.

diffusers' own converters assume Flux.1's width (3072); this one reads the width from the file, so the same code
maps full-size files, reduced-width ones and quantized GGUF tensors (splits and concatenations keep their type).
Chroma's files are Flux's blocks without their modulation layers (``img_mod``, ``modulation``, ``time_in`` …), plus
the ``distilled_guidance_layer`` that computes every modulation (diffusers' ``ChromaApproximator``).
"""

from __future__ import annotations

from typing import Any

PREFIXES = ("model.diffusion_model.", "diffusion_model.")
"""ComfyUI and A1111 full checkpoints keep the transformer under one of these; transformer-only files under none."""

_EMBEDDERS = {
    "time_in.in_layer": "time_text_embed.timestep_embedder.linear_1",
    "time_in.out_layer": "time_text_embed.timestep_embedder.linear_2",
    "vector_in.in_layer": "time_text_embed.text_embedder.linear_1",
    "vector_in.out_layer": "time_text_embed.text_embedder.linear_2",
    "guidance_in.in_layer": "time_text_embed.guidance_embedder.linear_1",
    "guidance_in.out_layer": "time_text_embed.guidance_embedder.linear_2",
    "txt_in": "context_embedder",
    "img_in": "x_embedder",
    "final_layer.linear": "proj_out",
}
_DOUBLE = {
    "img_mod.lin": "norm1.linear",
    "txt_mod.lin": "norm1_context.linear",
    "img_mlp.0": "ff.net.0.proj",
    "img_mlp.2": "ff.net.2",
    "txt_mlp.0": "ff_context.net.0.proj",
    "txt_mlp.2": "ff_context.net.2",
    "img_attn.proj": "attn.to_out.0",
    "txt_attn.proj": "attn.to_add_out",
    "img_attn.norm.query_norm": "attn.norm_q",
    "img_attn.norm.key_norm": "attn.norm_k",
    "txt_attn.norm.query_norm": "attn.norm_added_q",
    "txt_attn.norm.key_norm": "attn.norm_added_k",
}
_DOUBLE_QKV = {"img_attn.qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
               "txt_attn.qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj")}  # fmt: skip
_SINGLE = {
    "modulation.lin": "norm.linear",
    "norm.query_norm": "attn.norm_q",
    "norm.key_norm": "attn.norm_k",
    "linear2": "proj_out",
}
_SINGLE_SPLIT = ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")
_APPROXIMATOR = {"in_layer": "linear_1", "out_layer": "linear_2"}
"""Chroma's ``distilled_guidance_layer.layers.N.*`` → diffusers' (``in_proj``, ``out_proj``, ``norms.N``: the same)."""


def strip_prefix(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The transformer's tensors of a full checkpoint (or all of a transformer-only file), unprefixed."""
    for prefix in PREFIXES:
        if any(name.startswith(prefix) for name in checkpoint):
            return {name[len(prefix) :]: t for name, t in checkpoint.items() if name.startswith(prefix)}
    return dict(checkpoint)


def _param(name: str) -> tuple[str, str]:
    """``a.b.weight`` → (``a.b``, ``weight``); RMSNorm's ``scale`` is diffusers' ``weight``."""
    stem, _, kind = name.rpartition(".")
    return stem, "weight" if kind == "scale" else kind


def flux_to_diffusers(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """Map a Flux.1 (or Chroma) transformer state dict in BFL names to diffusers' names.

    The names of ``FluxTransformer2DModel`` (or ``ChromaTransformer2DModel``), at the file's width.

    Raises
    ------
    ValueError
        For a tensor name this map does not know (a file of another architecture).
    """
    import torch

    tensors = strip_prefix(checkpoint)
    inner = int(tensors["img_in.weight"].shape[0])
    out: dict[str, Any] = {}
    for name, tensor in tensors.items():
        stem, kind = _param(name)
        if stem in _EMBEDDERS:
            out[f"{_EMBEDDERS[stem]}.{kind}"] = tensor
        elif stem == "final_layer.adaLN_modulation.1":  # BFL's (shift, scale) is diffusers' (scale, shift)
            shift, scale = tensor.chunk(2, dim=0)
            out[f"norm_out.linear.{kind}"] = torch.cat([scale, shift], dim=0)
        elif stem.startswith("double_blocks."):
            _double(out, stem, kind, tensor)
        elif stem.startswith("single_blocks."):
            _single(out, stem, kind, tensor, inner)
        elif stem.startswith("distilled_guidance_layer."):  # Chroma's approximator
            parts = stem.split(".")
            out[".".join([_APPROXIMATOR.get(part, part) for part in parts] + [kind])] = tensor
        else:
            msg = f"model: tensor '{name}' is not part of a Flux.1 or Chroma transformer"
            raise ValueError(msg)
    return out


def _double(out: dict[str, Any], stem: str, kind: str, tensor: Any) -> None:
    _, index, rest = stem.split(".", 2)
    prefix = f"transformer_blocks.{index}."
    if rest in _DOUBLE_QKV:
        for target, part in zip(_DOUBLE_QKV[rest], tensor.chunk(3, dim=0), strict=True):
            out[f"{prefix}{target}.{kind}"] = part
    elif rest in _DOUBLE:
        out[f"{prefix}{_DOUBLE[rest]}.{kind}"] = tensor
    else:
        msg = f"model: tensor '{stem}.{kind}' is not part of a Flux.1 or Chroma transformer"
        raise ValueError(msg)


def _single(out: dict[str, Any], stem: str, kind: str, tensor: Any, inner: int) -> None:
    _, index, rest = stem.split(".", 2)
    prefix = f"single_transformer_blocks.{index}."
    if rest == "linear1":
        sizes = (inner, inner, inner, int(tensor.shape[0]) - 3 * inner)
        for target, part in zip(_SINGLE_SPLIT, tensor.split(sizes, dim=0), strict=True):
            out[f"{prefix}{target}.{kind}"] = part
    elif rest in _SINGLE:
        out[f"{prefix}{_SINGLE[rest]}.{kind}"] = tensor
    else:
        msg = f"model: tensor '{stem}.{kind}' is not part of a Flux.1 or Chroma transformer"
        raise ValueError(msg)
