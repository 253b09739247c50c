"""A tiny Flux IP-Adapter in XLabs' published key layout and a ViT-L-shaped (quick GELU, 16 heads) image encoder.

XLabs-AI/flux-ip-adapter's ``ip_adapter.safetensors`` holds ``ip_adapter_proj_model.proj`` / ``.norm`` (CLIP's 768
image embedding to 4 tokens of T5's width) and, per double block, ``double_blocks.N.processor.
ip_adapter_double_stream_k_proj`` / ``…_v_proj`` (weight and bias); here shaped for `tiny_flow.make_tiny_flux`.
"""

from __future__ import annotations

from typing import Any


def tiny_vit_l_encoder(seed: int = 0, projection: int = 24) -> Any:
    """A CLIPVisionModelWithProjection as OpenAI's ViT-L/14 is built (quick GELU, 16 heads), tiny: width 32, 32 px."""
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    config = CLIPVisionConfig(hidden_size=32, intermediate_size=37, projection_dim=projection, num_hidden_layers=2,
                              num_attention_heads=16, image_size=32, patch_size=8, hidden_act="quick_gelu")  # fmt: skip
    torch.manual_seed(seed)
    return CLIPVisionModelWithProjection(config).eval()


def xlabs_flux_adapter(transformer: Any, clip_width: int, seed: int = 0, scale: float = 1.0) -> dict[str, Any]:
    """A Flux IP-Adapter for `transformer` taking `clip_width` image embeddings, in XLabs' key layout."""
    import torch

    generator = torch.Generator("cpu").manual_seed(seed)
    text, inner = int(transformer.config.joint_attention_dim), int(transformer.inner_dim)

    def rand(*shape: int) -> Any:
        return torch.randn(shape, generator=generator) * scale

    state = {
        "ip_adapter_proj_model.proj.weight": rand(4 * text, clip_width),
        "ip_adapter_proj_model.proj.bias": rand(4 * text),
        "ip_adapter_proj_model.norm.weight": 1 + rand(text) * 0.1,
        "ip_adapter_proj_model.norm.bias": rand(text) * 0.1,
    }
    for block in range(len(transformer.transformer_blocks)):
        for kind in ("k", "v"):
            key = f"double_blocks.{block}.processor.ip_adapter_double_stream_{kind}_proj"
            state[f"{key}.weight"] = rand(inner, text)
            state[f"{key}.bias"] = rand(inner)
    return state
