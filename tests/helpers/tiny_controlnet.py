"""Tiny ControlNets for the tests: ``ControlNetModel.from_unet`` of a tiny UNet, its zero layers made random.

``from_unet`` starts the zero convolutions (and the hint block's last layer) at zero, so its residuals would be
zero and a test could not tell control from none; here they are seeded random. Saved as a diffusers folder, or as a
single file in the original (lllyasviel / A1111) key layout, written by `to_original_layout`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any


def tiny_controlnet(unet: Any, seed: int = 0, scale: float = 0.3, hint: tuple = (16, 32)) -> Any:
    """A ControlNet shaped like `unet`, its zero layers random (seeded), so its residuals change the picture.

    Its hint block halves the picture once (channels 16, 32), as the tiny VAE does: the map meets the latents
    (``hint=(16, 32, 96, 256)``: SD's 8× hint block).
    """
    import torch
    from diffusers import ControlNetModel

    model = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=hint)
    generator = torch.Generator("cpu").manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.startswith(("controlnet_down_blocks", "controlnet_mid_block", "controlnet_cond_embedding")):
                param.copy_(torch.randn(param.shape, generator=generator) * scale)
    return model.eval()


def save_folder(model: Any, folder: Path) -> Path:
    model.save_pretrained(str(folder))
    return folder


_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0", "conv2": "out_layers.3"}
_RESNET.update({"time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection"})


def _resnet(rest: str) -> str:
    head, _, tail = rest.partition(".")
    return f"{_RESNET.get(head, head)}.{tail}"


def to_original_layout(state: dict[str, Any], layers_per_block: int) -> dict[str, Any]:
    """A diffusers ControlNet state dict in the original layout (``input_blocks``, ``zero_convs``, hint block)."""
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    direct = {**DIFFUSERS_TO_LDM_MAPPING["controlnet"]["layers"]}
    out = {}
    for key, value in state.items():
        if key in direct:
            out[direct[key]] = value
        elif m := re.fullmatch(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
            block = 1 + int(m[1]) * (layers_per_block + 1) + int(m[2])
            out[f"input_blocks.{block}.0.{_resnet(m[3])}"] = value
        elif m := re.fullmatch(r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.*)", key):
            block = 1 + int(m[1]) * (layers_per_block + 1) + int(m[2])
            out[f"input_blocks.{block}.1.{m[3]}"] = value
        elif m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
            block = 1 + int(m[1]) * (layers_per_block + 1) + layers_per_block
            out[f"input_blocks.{block}.0.op.{m[2]}"] = value
        elif m := re.fullmatch(r"controlnet_down_blocks\.(\d+)\.(.*)", key):
            out[f"zero_convs.{m[1]}.0.{m[2]}"] = value
        elif m := re.fullmatch(r"mid_block\.resnets\.(\d+)\.(.*)", key):
            out[f"middle_block.{2 * int(m[1])}.{_resnet(m[2])}"] = value
        elif m := re.fullmatch(r"mid_block\.attentions\.0\.(.*)", key):
            out[f"middle_block.1.{m[1]}"] = value
        elif m := re.fullmatch(r"controlnet_mid_block\.(.*)", key):
            out[f"middle_block_out.0.{m[1]}"] = value
        elif m := re.fullmatch(r"controlnet_cond_embedding\.blocks\.(\d+)\.(.*)", key):
            out[f"input_hint_block.{2 * (int(m[1]) + 1)}.{m[2]}"] = value
        else:
            raise KeyError(f"no original name for {key}")
    return out


def save_single_file(model: Any, path: Path) -> Path:
    """`model` as one ``.safetensors`` in the original key layout, as lllyasviel's and A1111's files are."""
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(to_original_layout(state, model.config.layers_per_block), str(path))
    return path


def tiny_union(unet: Any, seed: int = 0, scale: float = 0.3, control_types: int = 8) -> Any:
    """A union ControlNet (xinsir's ControlNet++) shaped like `unet`, its zero layers random (seeded).

    ``ControlNetUnionModel.from_unet`` gives the UNet's shape; the control-type transformer is made as wide as the
    UNet's first block (its task embeddings are added to the hint's features). 8 types: ProMax; 6: the first union.
    """
    import torch
    from diffusers import ControlNetUnionModel

    width = unet.config.block_out_channels[0]
    shaped = ControlNetUnionModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32))
    config = {key: value for key, value in shaped.config.items() if not key.startswith("_")}
    config.update(num_control_type=control_types, num_trans_channel=width, num_proj_channel=width, num_trans_head=8)
    torch.manual_seed(seed)
    model = ControlNetUnionModel.from_config(config)
    generator = torch.Generator("cpu").manual_seed(seed)
    zeroed = ("controlnet_down_blocks", "controlnet_mid_block", "controlnet_cond_embedding", "spatial_ch_projs")
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.startswith(zeroed):
                param.copy_(torch.randn(param.shape, generator=generator) * scale)
    return model.eval()


def save_union_file(model: Any, path: Path) -> Path:
    """A union ControlNet as one ``.safetensors`` in diffusers' names, as xinsir's ``…_promax.safetensors`` is."""
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path
