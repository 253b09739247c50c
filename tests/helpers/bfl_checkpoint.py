"""Write a diffusers Flux transformer the way Black Forest Labs, ComfyUI and city96 ship it (the BFL key layout).

This is the inverse of diffusers' ``convert_flux_transformer_checkpoint_to_diffusers``, written out name by name
from diffusers' converter (not from jupyter_sd's), so a file made here tests the loader against diffusers' map.
"""

from __future__ import annotations

from pathlib import Path

import torch

_RENAMES = {
    "time_text_embed.timestep_embedder.linear_1": "time_in.in_layer",
    "time_text_embed.timestep_embedder.linear_2": "time_in.out_layer",
    "time_text_embed.text_embedder.linear_1": "vector_in.in_layer",
    "time_text_embed.text_embedder.linear_2": "vector_in.out_layer",
    "time_text_embed.guidance_embedder.linear_1": "guidance_in.in_layer",
    "time_text_embed.guidance_embedder.linear_2": "guidance_in.out_layer",
    "context_embedder": "txt_in",
    "x_embedder": "img_in",
    "proj_out": "final_layer.linear",
}
_DOUBLE = {
    "norm1.linear": "img_mod.lin",
    "norm1_context.linear": "txt_mod.lin",
    "ff.net.0.proj": "img_mlp.0",
    "ff.net.2": "img_mlp.2",
    "ff_context.net.0.proj": "txt_mlp.0",
    "ff_context.net.2": "txt_mlp.2",
    "attn.to_out.0": "img_attn.proj",
    "attn.to_add_out": "txt_attn.proj",
}
_DOUBLE_NORMS = {
    "attn.norm_q": "img_attn.norm.query_norm",
    "attn.norm_k": "img_attn.norm.key_norm",
    "attn.norm_added_q": "txt_attn.norm.query_norm",
    "attn.norm_added_k": "txt_attn.norm.key_norm",
}


def diffusers_to_bfl(state: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """A ``FluxTransformer2DModel`` state dict in BFL names (under `prefix`, e.g. ``model.diffusion_model.``).

    A ``ChromaTransformer2DModel``'s too: its blocks lack the modulation layers, which are then not written.
    """
    state = dict(state)
    out: dict[str, torch.Tensor] = {}
    doubles = sorted({int(k.split(".")[1]) for k in state if k.startswith("transformer_blocks.")})
    singles = sorted({int(k.split(".")[1]) for k in state if k.startswith("single_transformer_blocks.")})
    for kind in ("weight", "bias"):
        for ours, theirs in _RENAMES.items():
            if f"{ours}.{kind}" in state:
                out[f"{theirs}.{kind}"] = state.pop(f"{ours}.{kind}")
        if f"norm_out.linear.{kind}" in state:  # (Chroma's final norm has no modulation of its own)
            scale, shift = state.pop(f"norm_out.linear.{kind}").chunk(2, dim=0)
            out[f"final_layer.adaLN_modulation.1.{kind}"] = torch.cat([shift, scale], dim=0)
        for i in doubles:
            b = f"transformer_blocks.{i}."
            for ours, theirs in _DOUBLE.items():
                if f"{b}{ours}.{kind}" in state:  # (Chroma's blocks have no norm1/norm1_context linears)
                    out[f"double_blocks.{i}.{theirs}.{kind}"] = state.pop(f"{b}{ours}.{kind}")
            for side, names in (("img", ("to_q", "to_k", "to_v")), ("txt", ("add_q_proj", "add_k_proj", "add_v_proj"))):
                out[f"double_blocks.{i}.{side}_attn.qkv.{kind}"] = torch.cat(
                    [state.pop(f"{b}attn.{n}.{kind}") for n in names]
                )
        for i in singles:
            b = f"single_transformer_blocks.{i}."
            parts = [state.pop(f"{b}attn.to_{n}.{kind}") for n in "qkv"] + [state.pop(f"{b}proj_mlp.{kind}")]
            out[f"single_blocks.{i}.linear1.{kind}"] = torch.cat(parts)
            out[f"single_blocks.{i}.linear2.{kind}"] = state.pop(f"{b}proj_out.{kind}")
            if f"{b}norm.linear.{kind}" in state:
                out[f"single_blocks.{i}.modulation.lin.{kind}"] = state.pop(f"{b}norm.linear.{kind}")
    for i in doubles:
        for ours, theirs in _DOUBLE_NORMS.items():
            out[f"double_blocks.{i}.{theirs}.scale"] = state.pop(f"transformer_blocks.{i}.{ours}.weight")
    for i in singles:
        out[f"single_blocks.{i}.norm.query_norm.scale"] = state.pop(f"single_transformer_blocks.{i}.attn.norm_q.weight")
        out[f"single_blocks.{i}.norm.key_norm.scale"] = state.pop(f"single_transformer_blocks.{i}.attn.norm_k.weight")
    assert not state, f"unmapped diffusers tensors: {sorted(state)[:5]}"
    return {prefix + name: tensor.contiguous() for name, tensor in out.items()}


def transformer_state(folder: str | Path) -> dict[str, torch.Tensor]:
    """The transformer weights of a saved diffusers Flux folder."""
    from safetensors.torch import load_file

    files = sorted((Path(folder) / "transformer").glob("*.safetensors"))
    return {name: t for path in files for name, t in load_file(path).items()}


def write_bfl_transformer(folder: str | Path, path: str | Path, prefix: str = "") -> Path:
    """The transformer of a diffusers Flux `folder` as one BFL-layout ``.safetensors`` file at `path`."""
    from safetensors.torch import save_file

    save_file(diffusers_to_bfl(transformer_state(folder), prefix), str(path))
    return Path(path)


def config_only(folder: str | Path, target: str | Path, keep: tuple[str, ...] = ()) -> Path:
    """A copy of a diffusers folder without weights, but for the components in `keep` (configs and tokenizers stay)."""
    import shutil

    source, target = Path(folder), Path(target)
    shutil.copytree(source, target, dirs_exist_ok=True)
    for weights in target.rglob("*.safetensors"):
        if weights.parent.name not in keep:
            weights.unlink()
    return target


def write_bfl_checkpoint(folder: str | Path, path: str | Path) -> Path:
    """A whole Flux pipeline in one file as ComfyUI saves it: transformer, VAE (LDM names), CLIP-L and T5."""
    import json

    from safetensors.torch import save_file

    from helpers.ldm_checkpoint import _weights, clip_to_ldm, vae_to_ldm

    folder = Path(folder)
    state = diffusers_to_bfl(transformer_state(folder), "model.diffusion_model.")
    vae_config = json.loads((folder / "vae" / "config.json").read_text())
    state.update({"vae." + n: t for n, t in vae_to_ldm(_weights(folder / "vae"), vae_config).items()})
    clip = clip_to_ldm(_weights(folder / "text_encoder"))
    state.update({"text_encoders.clip_l.transformer." + n: t for n, t in clip.items()})
    t5 = _weights(folder / "text_encoder_2")
    state.update({"text_encoders.t5xxl.transformer." + n: t for n, t in t5.items()})
    save_file({n: t.contiguous() for n, t in state.items()}, str(path))
    return Path(path)
