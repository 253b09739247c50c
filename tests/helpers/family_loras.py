"""Tiny LoRA files for the tiny Chroma, Z-Image, Qwen-Image and Flux.2 (klein, dev) (tests/helpers/tiny_families.py): in
diffusers' own (peft) layout, in kohya's ``lora_unet_`` layout that sd-scripts and musubi-tuner save and ComfyUI
reads, and in ai-toolkit's ``diffusion_model.`` layout, with the real key names diffusers' converters map."""

from __future__ import annotations

from pathlib import Path

KOHYA_LAYERS = {
    "Chroma": {  # BFL's Flux names, as for Flux (diffusers' Flux converter)
        "double_blocks_0_img_attn_qkv": (32, 96),
        "double_blocks_0_img_attn_proj": (32, 32),
        "double_blocks_0_txt_mlp_0": (32, 128),
        "single_blocks_0_linear2": (160, 32),
    },
    "Z-Image": {  # the diffusers module path with "_" for ".", as Z-Image's original code names it
        "layers_0_attention_to_q": (32, 32),
        "layers_0_attention_to_out_0": (32, 32),
        "layers_0_feed_forward_w1": (32, 85),
        "noise_refiner_0_attention_to_k": (32, 32),
    },
    "Qwen-Image": {
        "transformer_blocks_0_attn_to_q": (48, 48),
        "transformer_blocks_0_attn_add_k_proj": (48, 48),
        "transformer_blocks_0_img_mlp_net_0_proj": (48, 192),
        "transformer_blocks_1_txt_mlp_net_2": (192, 48),
    },
    "Flux.2 klein": {  # BFL's Flux.2 names (diffusers' kohya Flux.2 converter)
        "double_blocks_0_img_attn_qkv": (32, 96),
        "double_blocks_0_txt_attn_proj": (32, 32),
        "double_blocks_0_img_mlp_0": (32, 192),
        "single_blocks_0_linear1": (32, 288),
    },
}
KOHYA_LAYERS["Flux.2 [dev]"] = KOHYA_LAYERS["Flux.2 klein"]  # (the same tiny transformer, with a guidance embedder)
"""Each tiny family's layers in kohya's names (``lora_unet_`` + the name) → (in, out) features."""

AI_TOOLKIT_LAYERS = {
    "Z-Image": {"layers.0.attention.to_k": (32, 32), "layers.0.feed_forward.w2": (85, 32)},
    "Qwen-Image": {"transformer_blocks.0.attn.to_q": (48, 48), "transformer_blocks.0.img_mlp.net.0.proj": (48, 192)},
    "Flux.2 klein": {"double_blocks.0.img_attn.qkv": (32, 96), "single_blocks.0.linear2": (128, 32)},
}
AI_TOOLKIT_LAYERS["Flux.2 [dev]"] = AI_TOOLKIT_LAYERS["Flux.2 klein"]
"""Layers in the ``diffusion_model.`` names ai-toolkit saves and ComfyUI reads (BFL's for Flux.2, else diffusers')."""

PEFT_BLOCK = {"Z-Image": "layers.0.attention."}
"""The first block's attention, which the peft-layout LoRA changes (``transformer_blocks.0.attn.`` unless named)."""


def kohya_lora(family: str, path: str | Path, seed: int = 0, rank: int = 4, alpha: float = 2.0) -> Path:
    """Write a LoRA for the tiny `family` in kohya's layout: ``lora_down`` / ``lora_up`` / ``alpha`` a layer."""
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(seed)
    weights = {}
    for name, (features_in, features_out) in KOHYA_LAYERS[family].items():
        key = f"lora_unet_{name}"
        weights[f"{key}.lora_down.weight"] = torch.randn(rank, features_in, generator=generator) * 0.5
        weights[f"{key}.lora_up.weight"] = torch.randn(features_out, rank, generator=generator) * 0.5
        weights[f"{key}.alpha"] = torch.tensor(alpha)
    save_file(weights, str(path), metadata={"ss_network_module": "networks.lora"})
    return Path(path)


def peft_lora(family: str, transformer, path: str | Path, seed: int = 1, rank: int = 4) -> Path:
    """Write a LoRA in diffusers' own layout (``transformer.<module>.lora_A/B.weight``) for the first block."""
    import torch
    from safetensors.torch import save_file

    block = PEFT_BLOCK.get(family, "transformer_blocks.0.attn.")
    generator = torch.Generator().manual_seed(seed)
    weights = {}
    for name, module in transformer.named_modules():
        if name.startswith(block) and isinstance(module, torch.nn.Linear):
            key = f"transformer.{name}"
            weights[f"{key}.lora_A.weight"] = torch.randn(rank, module.in_features, generator=generator) * 0.5
            weights[f"{key}.lora_B.weight"] = torch.randn(module.out_features, rank, generator=generator) * 0.5
    save_file(weights, str(path))
    return Path(path)


def ai_toolkit_lora(family: str, path: str | Path, seed: int = 2, rank: int = 4) -> Path:
    """Write a LoRA for the tiny `family` as ai-toolkit does: ``diffusion_model.<layer>.lora_A/B.weight``."""
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(seed)
    weights = {}
    for name, (features_in, features_out) in AI_TOOLKIT_LAYERS[family].items():
        weights[f"diffusion_model.{name}.lora_A.weight"] = torch.randn(rank, features_in, generator=generator) * 0.5
        weights[f"diffusion_model.{name}.lora_B.weight"] = torch.randn(features_out, rank, generator=generator) * 0.5
    save_file(weights, str(path))
    return Path(path)


def zimage_lokr(path: str | Path, seed: int = 3) -> Path:
    """Write a LoKr for the tiny Z-Image as ai-toolkit does (``diffusion_model.<layer>.lokr_w1/lokr_w2/alpha``)."""
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(seed)
    weights = {}
    for name in ("layers.0.attention.to_q", "layers.0.attention.to_out.0"):  # 32×32 = kron(4×4, 8×8)
        weights[f"diffusion_model.{name}.lokr_w1"] = torch.randn(4, 4, generator=generator) * 0.5
        weights[f"diffusion_model.{name}.lokr_w2"] = torch.randn(8, 8, generator=generator) * 0.5
        weights[f"diffusion_model.{name}.alpha"] = torch.tensor(1.0)
    save_file(weights, str(path))
    return Path(path)
