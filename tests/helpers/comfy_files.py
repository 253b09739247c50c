"""Z-Image and Qwen-Image files as ComfyUI ships and saves them, written from ComfyUI's own module names.

Z-Image: ComfyUI's ``NextDiT`` (``comfy/ldm/lumina/model.py``, Z-Image variant) names its modules ``x_embedder``,
``t_embedder.mlp.{0,2}``, ``cap_embedder.{0,1}``, ``noise_refiner.N`` / ``context_refiner.N`` / ``layers.N`` blocks
with ``attention.qkv`` (q, k and v rows stacked), ``attention.out``, ``attention.q_norm``/``k_norm``,
``feed_forward.w1..w3``, four RMSNorms and ``adaLN_modulation.0`` (a one-Linear Sequential), ``final_layer.linear``
and ``final_layer.adaLN_modulation.1`` (SiLU then Linear), the pad tokens, and the original checkpoint's unused
top-level ``norm_final``. Qwen-Image: ComfyUI's ``QwenImageTransformer2DModel`` uses diffusers' names. Checkpoint
Save puts the transformer under ``model.diffusion_model.``, the VAE under ``vae.`` and the text encoder under
``text_encoders.<name>.transformer.`` (``qwen3_4b`` for Z-Image, its Qwen3 under ``model.``).

GGUF files follow city96's converter: 1-D tensors and tensors of at most 1024 values stay unquantized (F32 here),
the rest in the chosen type; no prefix.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

PREFIX = "model.diffusion_model."

_ZIMAGE_TOP = {
    "all_x_embedder.2-1.": "x_embedder.",
    "all_final_layer.2-1.": "final_layer.",
}
_ZIMAGE_BLOCK = {
    "attention.to_out.0.": "attention.out.",
    "attention.norm_q.": "attention.q_norm.",
    "attention.norm_k.": "attention.k_norm.",
}
_BLOCK = re.compile(r"^((?:noise_refiner|context_refiner|layers)\.\d+\.)(.*)$")


def comfy_zimage(state: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """A diffusers ``ZImageTransformer2DModel`` state dict in ComfyUI's ``NextDiT`` names (under `prefix`)."""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        block = _BLOCK.match(name)
        if block is None:
            top = next((k for k in _ZIMAGE_TOP if name.startswith(k)), None)
            out[name if top is None else _ZIMAGE_TOP[top] + name[len(top) :]] = tensor
            continue
        head, rest = block.groups()
        if rest.startswith(("attention.to_k.", "attention.to_v.")):
            continue  # stacked under attention.qkv with to_q
        if rest.startswith("attention.to_q."):
            stacked = [state[f"{head}attention.to_{x}.{rest.rsplit('.', 1)[1]}"] for x in "qkv"]
            out[f"{head}attention.qkv.{rest.rsplit('.', 1)[1]}"] = torch.cat(stacked, dim=0)
            continue
        renamed = next((new + rest[len(old) :] for old, new in _ZIMAGE_BLOCK.items() if rest.startswith(old)), rest)
        out[head + renamed] = tensor
    width = state["all_x_embedder.2-1.weight"].shape[0]
    out["norm_final.weight"] = torch.ones(width)  # NextDiT's top-level RMSNorm, which Z-Image never applies
    return {prefix + name: tensor.contiguous() for name, tensor in out.items()}


def comfy_qwen(state: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """A diffusers ``QwenImageTransformer2DModel`` state dict as ComfyUI names it (diffusers' names, `prefix`)."""
    return {prefix + name: tensor.contiguous() for name, tensor in state.items()}


def transformer_state(folder: str | Path, family: str) -> dict[str, torch.Tensor]:
    """The transformer weights of a saved tiny Z-Image or Qwen-Image folder."""
    import diffusers

    cls = {"Z-Image": diffusers.ZImageTransformer2DModel, "Qwen-Image": diffusers.QwenImageTransformer2DModel}[family]
    return cls.from_pretrained(folder, subfolder="transformer").state_dict()


def comfy_state(folder: str | Path, family: str, prefix: str = "") -> dict[str, torch.Tensor]:
    """The folder's transformer in ComfyUI's names for `family`."""
    convert = comfy_zimage if family == "Z-Image" else comfy_qwen
    return convert(transformer_state(folder, family), prefix)


def write_comfy_gguf(state: dict[str, torch.Tensor], path: str | Path, quant: str, arch: str = "lumina2") -> Path:
    """`state` as a city96-style GGUF file (`arch`: ``lumina2`` for Z-Image, ``qwen_image``): tensors of more than
    1024 values whose rows split into `quant`'s blocks in `quant` (F16 or a block type), the rest F32."""
    import gguf

    qtype = gguf.GGMLQuantizationType[quant]
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    writer = gguf.GGUFWriter(str(path), arch=arch)
    for name, tensor in state.items():
        data = tensor.float().numpy()
        if data.ndim < 2 or data.size <= 1024 or data.shape[-1] % block:
            writer.add_tensor(name, data.astype(np.float32))
        elif qtype == gguf.GGMLQuantizationType.F16:
            writer.add_tensor(name, data.astype(np.float16))
        else:
            writer.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(path)


_WAN_RESNET = {"norm1.": "residual.0.", "conv1.": "residual.2.", "norm2.": "residual.3.", "conv2.": "residual.6.",
               "conv_shortcut.": "shortcut."}  # fmt: skip
"""A residual block's parts in Wan's ``ResidualBlock``: ``residual`` = (RMS_norm, SiLU, conv, RMS_norm, SiLU,
Dropout, conv), ``shortcut`` the 1×1 conv where the width changes."""
_WAN_TOP = {"quant_conv.": "conv1.", "post_quant_conv.": "conv2.", "encoder.conv_in.": "encoder.conv1.",
            "decoder.conv_in.": "decoder.conv1.", "encoder.norm_out.": "encoder.head.0.",
            "encoder.conv_out.": "encoder.head.2.", "decoder.norm_out.": "decoder.head.0.",
            "decoder.conv_out.": "decoder.head.2."}  # fmt: skip
_WAN_MIDDLE = {"resnets.0.": "0.", "attentions.0.": "1.", "resnets.1.": "2."}


def wan_vae(state: dict[str, torch.Tensor], num_res_blocks: int, prefix: str = "") -> dict[str, torch.Tensor]:
    """A diffusers ``AutoencoderKLQwenImage`` state dict in the Wan 2.1 reference names (``wan/modules/vae.py``,
    as ComfyUI's Wan VAE keeps them): ``conv1``/``conv2`` around the latent, ``encoder.downsamples.N`` (residual
    blocks and ``Resample``s in one Sequential), ``middle.{0,1,2}``, ``head.{0,2}``, and ``decoder.upsamples.N``
    holding each level's ``num_res_blocks + 1`` residual blocks then its ``Resample``."""
    out = {}
    for name, tensor in state.items():
        new = next((wan + name[len(ours) :] for ours, wan in _WAN_TOP.items() if name.startswith(ours)), None)
        if new is None:
            side, kind, rest = name.split(".", 2)
            if kind == "mid_block":
                head = next(k for k in _WAN_MIDDLE if rest.startswith(k))
                new, rest = f"{side}.middle.{_WAN_MIDDLE[head]}", rest[len(head) :]
            elif kind == "down_blocks":
                index, rest = rest.split(".", 1)
                new = f"{side}.downsamples.{index}."
            else:  # decoder.up_blocks.L.resnets.J / .upsamplers.0
                level, group, index, rest = rest.split(".", 3)
                step = int(level) * (num_res_blocks + 2) + (int(index) if group == "resnets" else num_res_blocks + 1)
                new = f"{side}.upsamples.{step}."
            part = next((k for k in _WAN_RESNET if rest.startswith(k)), None)
            new += rest if part is None else _WAN_RESNET[part] + rest[len(part) :]
        out[prefix + new] = tensor
    return out
