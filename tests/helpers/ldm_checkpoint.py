"""Turn a saved diffusers Stable Diffusion folder into one original-layout (LDM/CompVis) ``.safetensors`` file.

This is the reverse of diffusers' single-file conversion (``convert_ldm_unet_checkpoint``,
``convert_ldm_vae_checkpoint``, ``convert_ldm_clip_checkpoint`` in ``diffusers.loaders.single_file_utils``) and
follows diffusers' ``scripts/convert_diffusers_to_original_stable_diffusion.py``, generalised from SD's fixed four
levels and two layers per block to whatever the UNet and VAE configs say, so the tiny test pipeline converts too.

The file holds what civitai checkpoints hold: ``model.diffusion_model.*`` (UNet), ``first_stage_model.*`` (VAE)
and ``cond_stage_model.transformer.text_model.*`` (CLIP text encoder); for SDXL (a folder with ``text_encoder_2``)
``conditioner.embedders.0.transformer.text_model.*`` (CLIP-L) and ``conditioner.embedders.1.model.*`` (the second
encoder in OpenCLIP's layout, fused q/k/v). Configs, tokenizers and scheduler stay in the folder, which is what
``from_single_file(..., config=folder)`` reads them from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
TEXT_PREFIX = "cond_stage_model.transformer."
SDXL_TEXT_PREFIX = "conditioner.embedders.0.transformer."
SDXL_TEXT_2_PREFIX = "conditioner.embedders.1.model."

_UNET_TOP = {
    "time_embedding.linear_1.": "time_embed.0.",
    "time_embedding.linear_2.": "time_embed.2.",
    "add_embedding.linear_1.": "label_emb.0.0.",  # SDXL's text_time embedding
    "add_embedding.linear_2.": "label_emb.0.2.",
    "conv_in.": "input_blocks.0.0.",
    "conv_norm_out.": "out.0.",
    "conv_out.": "out.2.",
}
_UNET_RESNET = {
    "norm1.": "in_layers.0.",
    "conv1.": "in_layers.2.",
    "norm2.": "out_layers.0.",
    "conv2.": "out_layers.3.",
    "time_emb_proj.": "emb_layers.1.",
    "conv_shortcut.": "skip_connection.",
}
_VAE_TOP = {
    "encoder.conv_norm_out.": "encoder.norm_out.",
    "decoder.conv_norm_out.": "decoder.norm_out.",
}
_VAE_ATTENTION = {
    "group_norm.": "norm.",
    "to_q.": "q.",
    "to_k.": "k.",
    "to_v.": "v.",
    "to_out.0.": "proj_out.",
}


def _replace_start(name: str, table: dict[str, str]) -> str:
    for old, new in table.items():
        if name.startswith(old):
            return new + name[len(old) :]
    return name


def unet_to_ldm(state: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """Rename a diffusers ``UNet2DConditionModel`` state dict to the LDM ``UNetModel`` layout (no prefix)."""
    per_block = config["layers_per_block"]
    per_block = per_block[0] if isinstance(per_block, (list, tuple)) else per_block
    up_with_attention = {
        int(name.split(".")[1]) for name in state if name.startswith("up_blocks.") and ".attentions." in name
    }
    out: dict[str, Any] = {}
    for name, tensor in state.items():
        parts = name.split(".")
        if parts[0] == "down_blocks":
            block, kind = int(parts[1]), parts[2]
            if kind == "downsamplers":  # down_blocks.i.downsamplers.0.conv.* -> input_blocks.n.0.op.*
                index = (block + 1) * (per_block + 1)
                new = f"input_blocks.{index}.0.op." + ".".join(parts[5:])
            else:
                index = 1 + block * (per_block + 1) + int(parts[3])
                rest = ".".join(parts[4:])
                if kind == "resnets":
                    new = f"input_blocks.{index}.0." + _replace_start(rest, _UNET_RESNET)
                else:
                    new = f"input_blocks.{index}.1." + rest
        elif parts[0] == "up_blocks":
            block, kind = int(parts[1]), parts[2]
            if kind == "upsamplers":  # after the block's last layer: its resnet, then its attention if any
                index = block * (per_block + 1) + per_block
                slot = 2 if block in up_with_attention else 1
                new = f"output_blocks.{index}.{slot}." + ".".join(parts[4:])
            else:
                index = block * (per_block + 1) + int(parts[3])
                rest = ".".join(parts[4:])
                if kind == "resnets":
                    new = f"output_blocks.{index}.0." + _replace_start(rest, _UNET_RESNET)
                else:
                    new = f"output_blocks.{index}.1." + rest
        elif parts[0] == "mid_block":
            kind, index, rest = parts[1], int(parts[2]), ".".join(parts[3:])
            if kind == "resnets":  # resnet, attention, resnet -> middle_block.0, .1, .2
                new = f"middle_block.{2 * index}." + _replace_start(rest, _UNET_RESNET)
            else:
                new = f"middle_block.{2 * index + 1}." + rest
        else:
            new = _replace_start(name, _UNET_TOP)
        out[new] = tensor
    return out


def vae_to_ldm(state: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """Rename a diffusers ``AutoencoderKL`` state dict to the LDM ``AutoencoderKL`` layout (no prefix).

    The decoder's up blocks run in reverse order in LDM, and attention projections are 1×1 convolutions there.
    """
    levels = len(config["up_block_types"])
    out: dict[str, Any] = {}
    for name, tensor in state.items():
        parts = name.split(".")
        coder = parts[0]
        if len(parts) > 1 and parts[1] in ("down_blocks", "up_blocks"):
            block, kind = int(parts[2]), parts[3]
            level = block if parts[1] == "down_blocks" else levels - 1 - block
            where = f"{coder}.{'down' if parts[1] == 'down_blocks' else 'up'}.{level}"
            if kind == "resnets":
                new = f"{where}.block.{parts[4]}." + ".".join(parts[5:]).replace("conv_shortcut.", "nin_shortcut.")
            else:  # downsamplers.0.conv.* / upsamplers.0.conv.*
                new = f"{where}.{'downsample' if kind == 'downsamplers' else 'upsample'}." + ".".join(parts[5:])
        elif len(parts) > 1 and parts[1] == "mid_block":
            kind, index, rest = parts[2], int(parts[3]), ".".join(parts[4:])
            if kind == "resnets":
                new = f"{coder}.mid.block_{index + 1}." + rest.replace("conv_shortcut.", "nin_shortcut.")
            else:
                new = f"{coder}.mid.attn_{index + 1}." + _replace_start(rest, _VAE_ATTENTION)
                if tensor.ndim == 2:  # linear -> 1x1 conv, as LDM stores it
                    tensor = tensor[:, :, None, None]
        else:
            new = _replace_start(name, _VAE_TOP)
        out[new] = tensor
    return out


def clip_to_ldm(state: dict[str, Any]) -> dict[str, Any]:
    """Name a transformers ``CLIPTextModel`` state dict as the original checkpoints do (``text_model.*``)."""
    # transformers >= 5.6 flattened CLIPTextModel (no ``text_model.`` level); original checkpoints keep it.
    return {name if name.startswith("text_model.") else "text_model." + name: t for name, t in state.items()}


_OPEN_CLIP_TOP = {
    "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
    "text_model.embeddings.position_embedding.weight": "positional_embedding",
    "text_model.final_layer_norm.weight": "ln_final.weight",
    "text_model.final_layer_norm.bias": "ln_final.bias",
}
_OPEN_CLIP_LAYER = {
    "layer_norm1.": "ln_1.",
    "layer_norm2.": "ln_2.",
    "mlp.fc1.": "mlp.c_fc.",
    "mlp.fc2.": "mlp.c_proj.",
    "self_attn.out_proj.": "attn.out_proj.",
}


def open_clip_to_ldm(state: dict[str, Any]) -> dict[str, Any]:
    """Write a transformers ``CLIPTextModelWithProjection`` in OpenCLIP's layout (SDXL's second text encoder).

    OpenCLIP fuses q, k and v into ``attn.in_proj_*`` and stores ``text_projection`` transposed.
    """
    state = {n if n.startswith(("text_model.", "text_projection.")) else "text_model." + n: t for n, t in state.items()}
    out: dict[str, Any] = {"text_projection": state["text_projection.weight"].T}
    fused: dict[str, dict[str, Any]] = {}
    for name, tensor in state.items():
        if name in _OPEN_CLIP_TOP:
            out[_OPEN_CLIP_TOP[name]] = tensor
        elif name.startswith("text_model.encoder.layers."):
            layer, rest = name.removeprefix("text_model.encoder.layers.").split(".", 1)
            where = f"transformer.resblocks.{layer}."
            if rest.startswith("self_attn.") and rest.split(".")[1] in ("q_proj", "k_proj", "v_proj"):
                _, proj, kind = rest.split(".")
                fused.setdefault(f"{where}attn.in_proj_{kind}", {})[proj] = tensor
            else:
                out[where + _replace_start(rest, _OPEN_CLIP_LAYER)] = tensor
    import torch

    for name, parts in fused.items():
        out[name] = torch.cat([parts["q_proj"], parts["k_proj"], parts["v_proj"]])
    return out


def _weights(folder: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        msg = f"{folder}: no .safetensors weights (save the pipeline with safe_serialization=True)"
        raise FileNotFoundError(msg)
    state: dict[str, Any] = {}
    for file in files:
        state.update(load_file(str(file)))
    return state


def ldm_state_dict(folder: str | Path) -> dict[str, Any]:
    """Return the original-layout state dict of the diffusers SD or SDXL pipeline saved in `folder`."""
    folder = Path(folder)
    unet_config = json.loads((folder / "unet" / "config.json").read_text())
    vae_config = json.loads((folder / "vae" / "config.json").read_text())
    state: dict[str, Any] = {}
    for name, tensor in unet_to_ldm(_weights(folder / "unet"), unet_config).items():
        state[UNET_PREFIX + name] = tensor
    for name, tensor in vae_to_ldm(_weights(folder / "vae"), vae_config).items():
        state[VAE_PREFIX + name] = tensor
    sdxl = (folder / "text_encoder_2").is_dir()
    for name, tensor in clip_to_ldm(_weights(folder / "text_encoder")).items():
        state[(SDXL_TEXT_PREFIX if sdxl else TEXT_PREFIX) + name] = tensor
    if sdxl:
        for name, tensor in open_clip_to_ldm(_weights(folder / "text_encoder_2")).items():
            state[SDXL_TEXT_2_PREFIX + name] = tensor
    return state


def convert_to_ldm_checkpoint(folder: str | Path, path: str | Path) -> Path:
    """Write the diffusers SD pipeline saved in `folder` as ONE original-layout ``.safetensors`` file at `path`.

    Parameters
    ----------
    folder
        A folder saved by ``StableDiffusionPipeline.save_pretrained`` (e.g. ``tiny_pipeline.make_tiny_pipeline``)
        or ``StableDiffusionXLPipeline.save_pretrained`` (``tiny_sdxl.make_tiny_sdxl``).
    path
        Where to write the checkpoint.

    Returns
    -------
    Path
        `path`.
    """
    from safetensors.torch import save_file

    path = Path(path)
    state = {name: tensor.contiguous().clone() for name, tensor in ldm_state_dict(folder).items()}
    save_file(state, str(path), metadata={"format": "pt"})
    return path


def config_only_copy(folder: str | Path, target: str | Path) -> Path:
    """Copy `folder` without its weights: what ``--model-config`` needs (and proof the weights come from the file)."""
    import shutil

    folder, target = Path(folder), Path(target)
    shutil.copytree(folder, target, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    return target
