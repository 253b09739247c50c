"""Write a diffusers SD3 transformer (and a whole SD3 pipeline) the way Stability AI ships SD3/SD3.5 files.

This is the inverse of diffusers' ``convert_sd3_transformer_checkpoint_to_diffusers``, written out name by name from
diffusers' converter (not from jupyter_sd's loader): ``joint_blocks.N.{x_block,context_block}``, fused ``qkv``, the
last block's context side without its output projection and MLP, and the final adaLN's (shift, scale) order.
"""

from __future__ import annotations

from pathlib import Path

import torch

_TOP = {
    "pos_embed.pos_embed": "pos_embed",
    "pos_embed.proj.weight": "x_embedder.proj.weight",
    "pos_embed.proj.bias": "x_embedder.proj.bias",
    "time_text_embed.timestep_embedder.linear_1": "t_embedder.mlp.0",
    "time_text_embed.timestep_embedder.linear_2": "t_embedder.mlp.2",
    "time_text_embed.text_embedder.linear_1": "y_embedder.mlp.0",
    "time_text_embed.text_embedder.linear_2": "y_embedder.mlp.2",
    "context_embedder": "context_embedder",
    "proj_out": "final_layer.linear",
}
_BLOCK = {
    "attn.to_out.0": "x_block.attn.proj",
    "attn.to_add_out": "context_block.attn.proj",
    "norm1.linear": "x_block.adaLN_modulation.1",
    "norm1_context.linear": "context_block.adaLN_modulation.1",
    "ff.net.0.proj": "x_block.mlp.fc1",
    "ff.net.2": "x_block.mlp.fc2",
    "ff_context.net.0.proj": "context_block.mlp.fc1",
    "ff_context.net.2": "context_block.mlp.fc2",
    "attn.norm_q": "x_block.attn.ln_q",
    "attn.norm_k": "x_block.attn.ln_k",
    "attn.norm_added_q": "context_block.attn.ln_q",
    "attn.norm_added_k": "context_block.attn.ln_k",
    "attn2.to_out.0": "x_block.attn2.proj",  # SD3.5 Medium's second attention (MMDiT-X)
    "attn2.norm_q": "x_block.attn2.ln_q",
    "attn2.norm_k": "x_block.attn2.ln_k",
}

_FUSED = {
    "x_block.attn.qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
    "context_block.attn.qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
    "x_block.attn2.qkv": ("attn2.to_q", "attn2.to_k", "attn2.to_v"),
}


def _scale_shift_swapped(tensor: torch.Tensor) -> torch.Tensor:
    scale, shift = tensor.chunk(2, dim=0)
    return torch.cat([shift, scale], dim=0)


def diffusers_to_sd3(state: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """An ``SD3Transformer2DModel`` state dict in Stability AI's names (under `prefix`: ``model.diffusion_model.``)."""
    state = dict(state)
    out: dict[str, torch.Tensor] = {}
    blocks = sorted({int(k.split(".")[1]) for k in state if k.startswith("transformer_blocks.")})
    last = blocks[-1]
    for ours, theirs in _TOP.items():
        for suffix in ("", ".weight", ".bias"):
            if f"{ours}{suffix}" in state:
                out[f"{theirs}{suffix}"] = state.pop(f"{ours}{suffix}")
    for kind in ("weight", "bias"):
        out[f"final_layer.adaLN_modulation.1.{kind}"] = _scale_shift_swapped(state.pop(f"norm_out.linear.{kind}"))
    for i in blocks:
        b, j = f"transformer_blocks.{i}.", f"joint_blocks.{i}."
        for kind in ("weight", "bias"):
            for fused, names in _FUSED.items():
                if f"{b}{names[0]}.{kind}" in state:
                    out[f"{j}{fused}.{kind}"] = torch.cat([state.pop(f"{b}{n}.{kind}") for n in names])
            if i == last:  # its context side is pre-only: diffusers swaps this modulation's halves
                name = f"{b}norm1_context.linear.{kind}"
                out[f"{j}context_block.adaLN_modulation.1.{kind}"] = _scale_shift_swapped(state.pop(name))
        for ours, theirs in _BLOCK.items():
            for kind in ("weight", "bias"):
                if f"{b}{ours}.{kind}" in state:
                    out[f"{j}{theirs}.{kind}"] = state.pop(f"{b}{ours}.{kind}")
    if state:
        raise ValueError(f"names the SD3 layout has no place for: {sorted(state)[:5]}")
    return {prefix + name: tensor.contiguous() for name, tensor in out.items()}


def transformer_state(folder: str | Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    files = sorted((Path(folder) / "transformer").glob("*.safetensors"))
    return {name: t for path in files for name, t in load_file(path).items()}


def write_sd3_transformer(folder: str | Path, path: str | Path) -> Path:
    """The transformer of a diffusers SD3 `folder` as one transformer-only ``.safetensors`` file at `path`."""
    from safetensors.torch import save_file

    save_file(diffusers_to_sd3(transformer_state(folder)), str(path))
    return Path(path)


def write_sd3_checkpoint(folder: str | Path, path: str | Path) -> Path:
    """A whole SD3 pipeline in one file as SD3.5's are: the MMDiT, the VAE (LDM names), CLIP-L, CLIP-G and T5."""
    import json

    from safetensors.torch import save_file

    from helpers.ldm_checkpoint import _weights, clip_to_ldm, vae_to_ldm

    folder = Path(folder)
    state = diffusers_to_sd3(transformer_state(folder), "model.diffusion_model.")
    vae_config = json.loads((folder / "vae" / "config.json").read_text())
    state.update({"first_stage_model." + n: t for n, t in vae_to_ldm(_weights(folder / "vae"), vae_config).items()})
    for part, name in (("text_encoder", "clip_l"), ("text_encoder_2", "clip_g")):  # transformers' names, as SD3.5's
        weights = _weights(folder / part)
        projection = {"text_projection.weight": weights.pop("text_projection.weight")}
        clip = {**clip_to_ldm(weights), **(projection if name == "clip_g" else {})}  # (CLIP-L's: none, the identity)
        state.update({f"text_encoders.{name}.transformer.{n}": t for n, t in clip.items()})
    t5 = _weights(folder / "text_encoder_3")
    state.update({"text_encoders.t5xxl.transformer." + n: t for n, t in t5.items()})
    save_file({n: t.contiguous() for n, t in state.items()}, str(path))
    return Path(path)


def make_sd3_for_files(folder: str | Path, seed: int = 0) -> Path:
    """A tiny StableDiffusion3Pipeline whose parts a single file can tell apart, saved at `folder`.

    diffusers tells CLIP-L from CLIP-G in a file by their widths (here 32 and 48, T5 96), and loads CLIP-L's
    projection as the identity (SD3.5's files hold none): the folder's is the identity too.
    """
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    from helpers.tiny_flow import flow_vae, t5_encoder, t5_tokenizer
    from helpers.tiny_pipeline import _tokenizer

    folder = Path(folder)
    torch.manual_seed(seed)
    tokenizer, t5_tok = _tokenizer(folder / "_tok"), t5_tokenizer()

    def clip(width: int) -> CLIPTextModelWithProjection:
        config = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=width, intermediate_size=64,
                                num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=16,
                                bos_token_id=0, eos_token_id=1, pad_token_id=1, projection_dim=width)  # fmt: skip
        return CLIPTextModelWithProjection(config)

    clip_l = clip(32)
    with torch.no_grad():
        clip_l.text_projection.weight.copy_(torch.eye(32))
    transformer = SD3Transformer2DModel(sample_size=16, patch_size=1, in_channels=16, num_layers=2,
                                        attention_head_dim=8, num_attention_heads=4, joint_attention_dim=96,
                                        caption_projection_dim=32, pooled_projection_dim=80, out_channels=16,
                                        pos_embed_max_size=64, qk_norm="rms_norm")  # fmt: skip
    pipe = StableDiffusion3Pipeline(scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), vae=flow_vae(0.0609, 1.5035),
                                    text_encoder=clip_l, tokenizer=tokenizer, text_encoder_2=clip(48),
                                    tokenizer_2=tokenizer, text_encoder_3=t5_encoder(len(t5_tok), 96),
                                    tokenizer_3=t5_tok, transformer=transformer)  # fmt: skip
    pipe.save_pretrained(folder)
    return folder
