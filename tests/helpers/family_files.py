"""Transformer-only files of the tiny Z-Image, Qwen-Image, Chroma and Flux.2 (klein, dev) as they ship (ComfyUI's
``diffusion_models/``, lodestones' and BFL's files): Z-Image in its original names (fused ``qkv``, ``out``,
``q_norm``, ``final_layer`` — the inverse of diffusers' converter), Qwen-Image in diffusers' own names, which
diffusers' single-file loader reads as they are; Chroma and klein in BFL's names, the inverses of diffusers'
``convert_chroma_transformer_checkpoint_to_diffusers`` and ``convert_flux2_transformer_checkpoint_to_diffusers``,
written name by name from those converters."""

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


def chroma_bfl(state: dict, prefix: str = "") -> dict:
    """A diffusers Chroma transformer state dict in lodestones' (BFL's) names: Flux's blocks without modulations,
    and the approximator as ``distilled_guidance_layer`` (``in_layer``/``out_layer``, RMSNorm ``scale``)."""
    from helpers.bfl_checkpoint import diffusers_to_bfl

    state, approximator = dict(state), {}
    for name in [n for n in state if n.startswith("distilled_guidance_layer.")]:
        tensor, bfl = state.pop(name), name.replace(".linear_1.", ".in_layer.").replace(".linear_2.", ".out_layer.")
        approximator[bfl.replace(".weight", ".scale") if ".norms." in bfl else bfl] = tensor
    return {**{prefix + n: t.contiguous() for n, t in approximator.items()}, **diffusers_to_bfl(state, prefix)}


_KLEIN_RENAMES = {
    "x_embedder.": "img_in.",
    "context_embedder.": "txt_in.",
    "time_guidance_embed.timestep_embedder.linear_1.": "time_in.in_layer.",
    "time_guidance_embed.timestep_embedder.linear_2.": "time_in.out_layer.",
    "time_guidance_embed.guidance_embedder.linear_1.": "guidance_in.in_layer.",
    "time_guidance_embed.guidance_embedder.linear_2.": "guidance_in.out_layer.",
    "double_stream_modulation_img.linear.": "double_stream_modulation_img.lin.",
    "double_stream_modulation_txt.linear.": "double_stream_modulation_txt.lin.",
    "single_stream_modulation.linear.": "single_stream_modulation.lin.",
    "proj_out.": "final_layer.linear.",
}
_KLEIN_DOUBLE = {"attn.norm_q.weight": "img_attn.norm.query_norm.scale",
                 "attn.norm_k.weight": "img_attn.norm.key_norm.scale", "attn.to_out.0.": "img_attn.proj.",
                 "ff.linear_in.": "img_mlp.0.", "ff.linear_out.": "img_mlp.2.",
                 "attn.norm_added_q.weight": "txt_attn.norm.query_norm.scale",
                 "attn.norm_added_k.weight": "txt_attn.norm.key_norm.scale", "attn.to_add_out.": "txt_attn.proj.",
                 "ff_context.linear_in.": "txt_mlp.0.", "ff_context.linear_out.": "txt_mlp.2."}  # fmt: skip
_KLEIN_SINGLE = {"attn.to_qkv_mlp_proj.": "linear1.", "attn.to_out.": "linear2.", "attn.norm_q.weight":
                 "norm.query_norm.scale", "attn.norm_k.weight": "norm.key_norm.scale"}  # fmt: skip
_KLEIN_QKV = {"img_attn.qkv": ("to_q", "to_k", "to_v"), "txt_attn.qkv": ("add_q_proj", "add_k_proj", "add_v_proj")}
_STACKED = ("to_k", "to_v", "add_k_proj", "add_v_proj")


def klein_bfl(state: dict, prefix: str = "") -> dict:
    """A diffusers ``Flux2Transformer2DModel`` state dict in BFL's names (``flux-2-klein-4b.safetensors``)."""
    import torch

    state, out = dict(state), {}
    scale, shift = state.pop("norm_out.linear.weight").chunk(2, dim=0)  # BFL's (shift, scale)
    out["final_layer.adaLN_modulation.1.weight"] = torch.cat([shift, scale], dim=0)
    for name, tensor in state.items():
        block, _, rest = name.partition(".")[2].partition(".")
        fused = [(qkv, parts) for qkv, parts in _KLEIN_QKV.items() if rest.split(".")[1:2] == [parts[0]]]
        if name.startswith("transformer_blocks.") and fused:  # q, k and v rows stacked, as BFL keeps them
            qkv, parts = fused[0]
            stacked = [state[name.replace(f".{parts[0]}.", f".{part}.")] for part in parts]
            out[f"double_blocks.{block}.{qkv}.{rest.rpartition('.')[2]}"] = torch.cat(stacked, dim=0)
        elif name.startswith("transformer_blocks.") and rest.split(".")[1] in _STACKED:
            continue  # (stacked with q above)
        elif name.startswith("transformer_blocks."):
            out[f"double_blocks.{block}.{_rename(rest, _KLEIN_DOUBLE)}"] = tensor
        elif name.startswith("single_transformer_blocks."):
            out[f"single_blocks.{block}.{_rename(rest, _KLEIN_SINGLE)}"] = tensor
        else:
            out[_rename(name, _KLEIN_RENAMES)] = tensor
    return {prefix + n: t.contiguous() for n, t in out.items()}


def _rename(name: str, table: dict) -> str:
    for old, new in table.items():
        if name.startswith(old):
            return new + name[len(old) :]
    raise AssertionError(f"no BFL name for {name}")


LAYOUTS = {
    "Z-Image": ("ZImageTransformer2DModel", zimage_original),
    "Qwen-Image": ("QwenImageTransformer2DModel", lambda state, prefix: {prefix + k: v for k, v in state.items()}),
    "Chroma": ("ChromaTransformer2DModel", chroma_bfl),
    "Flux.2 klein": ("Flux2Transformer2DModel", klein_bfl),
    "Flux.2 [dev]": ("Flux2Transformer2DModel", klein_bfl),  # (klein's names and the guidance embedder's)
}
"""Family → (its diffusers transformer class, diffusers state dict → the shipped layout)."""


def shipped_state(folder: str | Path, family: str, prefix: str = "") -> dict:
    """The folder's transformer in the layout `family`'s files ship in."""
    import diffusers

    class_name, layout = LAYOUTS[family]
    return layout(getattr(diffusers, class_name).from_pretrained(folder, subfolder="transformer").state_dict(), prefix)


def write_transformer_file(folder: str | Path, path: str | Path, family: str, prefix: str = "") -> Path:
    """The folder's transformer as one ``.safetensors`` file in the layout `family`'s files ship in."""
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in shipped_state(folder, family, prefix).items()}, str(path))
    return Path(path)
