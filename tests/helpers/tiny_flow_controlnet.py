"""Tiny Flux and SD3 ControlNets built from config, shaped like `tiny_flow`'s transformers, saved as users have them.

diffusers starts their zero layers (the residual projections, the map's embedder) at zero, so a test could not tell
control from none: here they are seeded random. Flux ones are also written as single files: diffusers' names (as
InstantX / Shakker-Labs ship them) or XLabs' (Black Forest Labs' block names, ``input_hint_block``,
``pos_embed_input``), the latter through `bfl_checkpoint`'s inverse of diffusers' converter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

_ZEROED = ("controlnet_blocks", "controlnet_single_blocks", "controlnet_x_embedder", "pos_embed_input",
           "input_hint_block.conv_out", "controlnet_mode_embedder")  # fmt: skip


def _randomized(model: Any, seed: int, scale: float) -> Any:
    import torch

    generator = torch.Generator("cpu").manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.startswith(_ZEROED) or ".after_proj." in name or ".before_proj." in name:
                param.copy_(torch.randn(param.shape, generator=generator) * scale)
    return model.eval()


def tiny_flux_controlnet(seed: int = 0, scale: float = 0.5, hint: bool = False, modes: int | None = None) -> Any:
    """A one double-block, one single-block Flux ControlNet for `make_tiny_flux` (with `hint`: XLabs' form, a hint
    block and double blocks only; with `modes`: InstantX's Union mode embedding)."""
    import torch
    from diffusers import FluxControlNetModel

    torch.manual_seed(seed)
    model = FluxControlNetModel(patch_size=2 if hint else 1, in_channels=64, num_layers=1,
                                num_single_layers=0 if hint else 1, attention_head_dim=16, num_attention_heads=2,
                                joint_attention_dim=32, pooled_projection_dim=32,
                                guidance_embeds=True, axes_dims_rope=(4, 4, 8), num_mode=modes,
                                conditioning_embedding_channels=16 if hint else None)  # fmt: skip
    return _randomized(model, seed, scale)


def tiny_sd3_controlnet(seed: int = 0, scale: float = 0.5, extra: int = 0) -> Any:
    """A one-block SD3 ControlNet for `make_tiny_sd3` (`extra` 1: Alimama's inpaint layout, the mask channel)."""
    import torch
    from diffusers import SD3ControlNetModel

    torch.manual_seed(seed)
    model = SD3ControlNetModel(sample_size=16, patch_size=1, in_channels=16, num_layers=1, attention_head_dim=8,
                               num_attention_heads=4, joint_attention_dim=64, caption_projection_dim=32,
                               pooled_projection_dim=64, out_channels=16, pos_embed_max_size=64,
                               extra_conditioning_channels=extra)  # fmt: skip
    return _randomized(model, seed, scale)


def save_diffusers_file(model: Any, path: Path) -> Path:
    """`model`'s weights as one ``.safetensors`` in diffusers' names (InstantX's file without its config)."""
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def save_xlabs_file(model: Any, path: Path) -> Path:
    """A hint-block Flux ControlNet as XLabs ship it: BFL block names, ``input_hint_block.N``, ``pos_embed_input``."""
    import torch
    from safetensors.torch import save_file

    from helpers.bfl_checkpoint import diffusers_to_bfl

    hint = {"conv_in": 0, "conv_out": 14, **{f"blocks.{i}": 2 * (i + 1) for i in range(6)}}
    own, blocks = {}, {}
    for name, tensor in model.state_dict().items():
        tensor = tensor.contiguous()
        if name.startswith("input_hint_block."):
            layer, kind = name.removeprefix("input_hint_block.").rsplit(".", 1)
            own[f"input_hint_block.{hint[layer]}.{kind}"] = tensor
        elif name.startswith("controlnet_x_embedder."):
            own[name.replace("controlnet_x_embedder.", "pos_embed_input.")] = tensor
        elif name.startswith("controlnet_blocks."):
            own[name] = tensor
        else:
            blocks[name] = tensor
    for kind, size in (("weight", (2, 1)), ("bias", (2,))):  # the converter wants a final layer: a ControlNet has none
        blocks[f"norm_out.linear.{kind}"] = torch.zeros(size)
    bfl = {k: v for k, v in diffusers_to_bfl(blocks).items() if not k.startswith("final_layer.")}
    save_file({**bfl, **own}, str(path))
    return path


def make_tiny_flux_8x(folder: Path) -> Path:
    """`make_tiny_flux` with a four-level VAE (8×, as Flux's): XLabs' hint block brings the map down 8× to meet it."""
    from diffusers import AutoencoderKL

    from helpers.tiny_flow import make_tiny_flux

    make_tiny_flux(folder)
    AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(8, 8, 16, 16), layers_per_block=1,
                  down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                  latent_channels=16, norm_num_groups=8, sample_size=32, shift_factor=0.1159, scaling_factor=0.3611,
                  use_quant_conv=False, use_post_quant_conv=False).save_pretrained(folder / "vae")  # fmt: skip
    return folder


def tiny_qwenimage_controlnet(seed: int = 0, scale: float = 0.5, extra: int = 0) -> Any:
    """A one-block Qwen-Image ControlNet for `tiny_families.make_tiny_qwenimage`.

    `extra` 4: InstantX's inpainting layout (the mask channel, packed 2×2).
    """
    import torch
    from diffusers import QwenImageControlNetModel

    from helpers.tiny_families import QWEN_WIDTH

    torch.manual_seed(seed)
    model = QwenImageControlNetModel(patch_size=2, in_channels=64, out_channels=16, num_layers=1, attention_head_dim=16,
                                     num_attention_heads=3, joint_attention_dim=QWEN_WIDTH,
                                     axes_dims_rope=(8, 4, 4), extra_condition_channels=extra)  # fmt: skip
    return _randomized(model, seed, scale)


def tiny_zimage_controlnet(seed: int = 0, scale: float = 0.5, control_in_dim: int = 16) -> Any:
    """A one-block Z-Image ControlNet for `tiny_families.make_tiny_zimage` (it borrows the transformer's embedders;
    `control_in_dim` 33: Union 2.0's inpaint layout, its map, the mask and the masked init)."""
    import torch
    from diffusers import ZImageControlNetModel

    torch.manual_seed(seed)
    model = ZImageControlNetModel(control_layers_places=[0], control_refiner_layers_places=[0],
                                  control_in_dim=control_in_dim,
                                  all_patch_size=(2,), all_f_patch_size=(1,), dim=32, n_refiner_layers=1, n_heads=2,
                                  n_kv_heads=2, norm_eps=1e-5, qk_norm=True)  # fmt: skip
    return _randomized(model, seed, scale)
