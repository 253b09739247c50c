"""Transformer-only files of the tiny Z-Image and Qwen-Image as ComfyUI ships them (``diffusion_models/``): Z-Image
in its original names (fused ``qkv``, ``out``, ``q_norm``, ``final_layer`` — the inverse of diffusers' converter),
Qwen-Image in diffusers' own names, which diffusers' single-file loader reads as they are."""

from __future__ import annotations

from pathlib import Path

_ZIMAGE_RENAMES = (
    ("all_final_layer.2-1.", "final_layer."),
    ("all_x_embedder.2-1.", "x_embedder."),
    (".attention.to_out.0.", ".attention.out."),
    (".attention.norm_k.", ".attention.k_norm."),
    (".attention.norm_q.", ".attention.q_norm."),
)


def zimage_original(state: dict, prefix: str = "") -> dict:
    """A diffusers Z-Image transformer state dict in the original layout (q, k and v fused in ``qkv``)."""
    import torch

    out = {}
    for name, tensor in state.items():
        if ".attention.to_k." in name or ".attention.to_v." in name:
            continue
        if ".attention.to_q." in name:
            parts = [state[name.replace(".to_q.", f".to_{x}.")] for x in "qkv"]
            name, tensor = name.replace(".to_q.", ".qkv."), torch.cat(parts, dim=0)
        for old, new in _ZIMAGE_RENAMES:
            name = name.replace(old, new)
        out[prefix + name] = tensor.contiguous()
    return out


def write_transformer_file(folder: str | Path, path: str | Path, family: str, prefix: str = "") -> Path:
    """The folder's transformer as one file in the layout ComfyUI ships for `family` (Z-Image or Qwen-Image)."""
    import diffusers
    from safetensors.torch import save_file

    class_name = {"Z-Image": "ZImageTransformer2DModel", "Qwen-Image": "QwenImageTransformer2DModel"}[family]
    state = getattr(diffusers, class_name).from_pretrained(folder, subfolder="transformer").state_dict()
    weights = zimage_original(state, prefix) if family == "Z-Image" else {prefix + k: v for k, v in state.items()}
    save_file({k: v.contiguous() for k, v in weights.items()}, str(path))
    return Path(path)
