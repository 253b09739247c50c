"""A tiny SD3.5 IP-Adapter in InstantX's published layout and a tiny SigLIP vision encoder, both from config.

InstantX/SD3.5-Large-IP-Adapter's ``ip-adapter.bin`` is a pickle of ``{"image_proj": …, "ip_adapter": …}``: its
``image_proj`` a time-conditioned Resampler whose blocks are named ``layers.N.0.norm1`` / ``0.norm2`` / ``0.to_q`` /
``0.to_kv`` / ``0.to_out`` (attention), ``1.0`` / ``1.1`` / ``1.3`` (the feed-forward's norm and linears) and
``2.1`` (the AdaLN modulation); its ``ip_adapter`` one attention processor a transformer block (``N.norm_ip…``,
``N.to_k_ip`` …, diffusers' own names). Made here as diffusers' ``IPAdapterTimeImageProjection`` and
``SD3IPAdapterJointAttnProcessor2_0`` with seeded random weights (4 Resampler blocks of 64 wide: diffusers'
loader builds InstantX's depth and head width, whatever the file holds), and the Resampler's names written back the way
InstantX has them (the inverse of diffusers' conversion).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

_INSTANTX_NAMES = {
    "ln0": "0.norm1",
    "ln1": "0.norm2",
    "attn.to_q": "0.to_q",
    "attn.to_kv": "0.to_kv",
    "attn.to_out.0": "0.to_out",
    "adaln_norm": "1.0",
    "ff.net.0.proj": "1.1",
    "ff.net.2": "1.3",
    "adaln_proj": "2.1",
}
"""diffusers' names of a Resampler block's parts → InstantX's."""


def tiny_siglip(seed: int = 0) -> Any:
    """A SiglipVisionModel at width 32 (16 heads, as so400m), 32 px pictures in patches of 8."""
    import torch
    from transformers import SiglipVisionConfig, SiglipVisionModel

    config = SiglipVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=16,
                                image_size=32, patch_size=8)  # fmt: skip
    torch.manual_seed(seed)
    return SiglipVisionModel(config).eval()


def save_siglip_folder(encoder: Any, folder: Path) -> Path:
    """The encoder as a transformers folder with its image processor (google's repository, vision half)."""
    from transformers import SiglipImageProcessor

    encoder.save_pretrained(str(folder))
    size = int(encoder.config.image_size)
    SiglipImageProcessor(size={"height": size, "width": size}).save_pretrained(str(folder))
    return folder


def instantx_sd3_adapter(transformer: Any, siglip_width: int, seed: int = 0, scale: float = 0.5) -> dict[str, Any]:
    """An SD3 IP-Adapter for `transformer` over `siglip_width` hidden states, as InstantX's nested state dict."""
    import torch
    from diffusers.models.attention_processor import SD3IPAdapterJointAttnProcessor2_0
    from diffusers.models.embeddings import IPAdapterTimeImageProjection

    config = transformer.config
    inner = int(config.attention_head_dim * config.num_attention_heads)
    torch.manual_seed(seed)
    resampler = IPAdapterTimeImageProjection(embed_dim=siglip_width, output_dim=inner, hidden_dim=64, depth=4,
                                             dim_head=64, heads=1, num_queries=4, timestep_in_dim=32)  # fmt: skip
    generator = torch.Generator("cpu").manual_seed(seed)

    def rand(value: Any) -> Any:
        noise = torch.randn(value.shape, generator=generator) * scale
        return 1 + noise * 0.2 if value.ndim == 1 and bool((value == 1).all()) else noise  # norms stay near 1

    image_proj = {}
    for key, value in resampler.state_dict().items():
        for new, old in _INSTANTX_NAMES.items():
            key = key.replace(f".{new}.", f".{old}.")
        image_proj[key] = rand(value)
    ip_adapter = {}
    for index in range(len(transformer.attn_processors)):
        processor = SD3IPAdapterJointAttnProcessor2_0(hidden_size=inner, ip_hidden_states_dim=inner,
                                                      head_dim=int(config.attention_head_dim),
                                                      timesteps_emb_dim=64)  # fmt: skip
        ip_adapter.update({f"{index}.{key}": rand(value) for key, value in processor.state_dict().items()})
    return {"image_proj": image_proj, "ip_adapter": ip_adapter}


def save_pickle(state: dict[str, Any], path: Path) -> Path:
    """`state` as InstantX ships it: a ``.bin`` pickle (torch.save)."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, str(path))
    return path


def save_comfy_file(encoder: Any, path: Path) -> Path:
    """The encoder as ComfyUI's ``clip_vision/sigclip_vision_patch14_384.safetensors``: transformers' names under
    ``vision_model.`` (as transformers 4 and google's checkpoint name them), one file, no config."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "vision_model." + k.removeprefix("vision_model."): v.contiguous()
        for k, v in encoder.state_dict().items()
        if not k.endswith("position_ids")
    }
    save_file(state, str(path))
    return path
