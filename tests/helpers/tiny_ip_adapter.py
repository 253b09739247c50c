"""Tiny IP-Adapters for the tests: a CLIP vision encoder from config and an adapter in h94's key layout.

The adapter's keys are h94's (``image_proj.proj.weight``, ``image_proj.norm.*``, ``ip_adapter.1.to_k_ip.weight``
… numbered 1, 3, 5 over the UNet's cross-attention layers, as diffusers reads them), its values seeded random and
large enough that the adapter visibly changes a tiny picture.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def tiny_image_encoder(seed: int = 0, projection: int = 24) -> Any:
    """A CLIPVisionModelWithProjection at width 32 (16 heads, as every released one has), 32 px pictures."""
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    config = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=37,
        projection_dim=projection,
        num_hidden_layers=2,
        num_attention_heads=16,
        image_size=32,
        patch_size=8,
        hidden_act="gelu",
    )
    torch.manual_seed(seed)
    return CLIPVisionModelWithProjection(config).eval()


def tiny_adapter_state(unet: Any, clip_width: int, seed: int = 0, scale: float = 1.0) -> dict[str, Any]:
    """A plain IP-Adapter for `unet` taking `clip_width` image embeddings, in h94's safetensors key layout."""
    import torch

    generator = torch.Generator("cpu").manual_seed(seed)
    cross = int(unet.config.cross_attention_dim)

    def rand(*shape: int) -> Any:
        return torch.randn(shape, generator=generator) * scale

    state = {
        "image_proj.proj.weight": rand(4 * cross, clip_width),
        "image_proj.proj.bias": rand(4 * cross),
        "image_proj.norm.weight": 1 + rand(cross) * 0.1,
        "image_proj.norm.bias": rand(cross) * 0.1,
    }
    key_id = 1
    modules = dict(unet.named_modules())
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        hidden = int(modules[name.removesuffix(".processor")].to_q.weight.shape[0])
        state[f"ip_adapter.{key_id}.to_k_ip.weight"] = rand(hidden, cross)
        state[f"ip_adapter.{key_id}.to_v_ip.weight"] = rand(hidden, cross)
        key_id += 2
    return state


def save_adapter(state: dict[str, Any], path: Path) -> Path:
    """`state` as a ``.safetensors`` file, its header padded past 1 MiB with text seeded by the file's name.

    sd-webui-controlnet's ``[hash]`` is A1111's old hash, of the 64 KiB at 1 MiB: every smaller file has the same
    one (``e3b0c442``), so the padding gives each tiny file its own.
    """
    import random

    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    padding = "".join(random.Random(path.name).choices("0123456789abcdef", k=1_200_000))
    save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata={"padding": padding})
    return path


def save_encoder_file(encoder: Any, path: Path) -> Path:
    """The encoder as one ``.safetensors`` of transformers' keys (ComfyUI's ``clip_vision/`` files)."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in encoder.state_dict().items() if not k.endswith("position_ids")}
    save_file(state, str(path))
    return path


def reference_picture(size: int = 40, seed: int = 0) -> Image.Image:
    """A picture for the adapter to look at: coloured blocks (seeded)."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (5, 5, 3), dtype=np.uint8)
    return Image.fromarray(blocks).resize((size, size), Image.NEAREST)


def tiny_plus_adapter_state(unet: Any, clip_hidden: int, seed: int = 0, queries: int = 4) -> dict[str, Any]:
    """An IP-Adapter plus (a Resampler over the encoder's hidden states) for `unet`, in h94's key layout.

    Made as diffusers' ``IPAdapterPlusImageProjection`` (width 64: one head of 64) and written back under h94's
    names (``layers.N.0.to_kv``, ``layers.N.1.1`` …), the inverse of diffusers' conversion.
    """
    import torch
    from diffusers.models.embeddings import IPAdapterPlusImageProjection

    torch.manual_seed(seed)
    cross = int(unet.config.cross_attention_dim)
    resampler = IPAdapterPlusImageProjection(clip_hidden, cross, 64, heads=1, num_queries=queries)
    names = {"ln0": "0.norm1", "ln1": "0.norm2", "attn.to_q": "0.to_q", "attn.to_out.0": "0.to_out"}
    names.update({"ff.0": "1.0", "ff.1.net.0.proj": "1.1", "ff.1.net.2": "1.3"})
    state = {}
    weights = resampler.state_dict()
    for key, value in weights.items():
        if ".attn.to_k." in key or ".attn.to_v." in key:
            continue
        for new, old in names.items():
            key = key.replace(f".{new}.", f".{old}.")
        state[f"image_proj.{key}"] = value
    for key in [k for k in weights if ".attn.to_k." in k]:
        layer = key.split(".")[1]
        value = torch.cat([weights[key], weights[key.replace("to_k", "to_v")]])
        state[f"image_proj.layers.{layer}.0.to_kv.{key.rsplit('.', 1)[1]}"] = value
    plain = tiny_adapter_state(unet, clip_hidden, seed=seed)
    state.update({k: v for k, v in plain.items() if k.startswith("ip_adapter.")})
    return state
