"""Extra-network files made the way A1111 users get them, for the tests and the recipes benchmark."""

from __future__ import annotations

import torch
from safetensors.torch import save_file

_LINEARS = ("to_q", "to_k", "to_v", "to_out.0", "q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")


def kohya_lora(pipe, path, seed=0, rank=4, alpha=2.0, te_prefix="lora_te_"):
    """Write a kohya/A1111-format LoRA for the pipeline's attention and MLP layers.

    Returns ``[(component, module name, up, down)]`` so a test can merge the same weights by hand.
    """
    generator = torch.Generator().manual_seed(seed)
    weights, layers = {}, []
    for component, prefix, model in (("unet", "lora_unet_", pipe.unet), ("text_encoder", te_prefix, pipe.text_encoder)):
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and name.endswith(_LINEARS):
                # kohya names CLIP's layers as the original checkpoints do (text_model.encoder.layers...)
                kohya = name if component == "unet" or name.startswith("text_model.") else "text_model." + name
                key = prefix + kohya.replace(".", "_")
                down = torch.randn(rank, module.in_features, generator=generator) * 0.3
                up = torch.randn(module.out_features, rank, generator=generator) * 0.3
                weights.update({f"{key}.lora_down.weight": down, f"{key}.lora_up.weight": up})
                weights[f"{key}.alpha"] = torch.tensor(alpha)
                layers.append((component, name, up, down))
    save_file(weights, str(path), metadata={"ss_network_module": "networks.lora"})
    return layers
