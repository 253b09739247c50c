"""Tiny random Flux.1 and SD3 pipelines built from config (CLIP and T5 from small configs), saved as folders.

The T5 tokenizer is a `tokenizers` WordLevel model wrapped in transformers' T5TokenizerFast: nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

from helpers.tiny_pipeline import WORDS, _tokenizer, tiny_text_encoder

T5_WIDTH = 32


def t5_tokenizer():
    """A Unigram T5 tokenizer over the test words (``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2, as T5 numbers them)."""
    from transformers import T5TokenizerFast

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    vocab += [("\u2581" + word, -1.0) for word in WORDS]
    return T5TokenizerFast(vocab=vocab, extra_ids=0)


def t5_encoder(vocab_size: int, width: int = T5_WIDTH):
    """A random two-layer T5 encoder of width `width`."""
    from transformers import T5Config, T5EncoderModel

    config = T5Config(vocab_size=vocab_size, d_model=width, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                      decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)  # fmt: skip
    return T5EncoderModel(config)


def flow_vae(shift: float = 0.1159, scale: float = 0.3611):
    """A random two-level AutoencoderKL with 16 latent channels and a shift, as Flux's and SD3's VAEs have."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(8, 16), layers_per_block=1,
                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                         latent_channels=16, norm_num_groups=8, sample_size=32, shift_factor=shift,
                         scaling_factor=scale, use_quant_conv=False, use_post_quant_conv=False)  # fmt: skip


def make_tiny_flux(folder: str | Path, seed: int = 0) -> Path:
    """A FluxPipeline: one double and one single block, 16 latent channels packed 2×2 (64 in), CLIP and T5."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    folder = Path(folder)
    torch.manual_seed(seed)
    tokenizer = _tokenizer(folder / "_tok")
    t5_tok = t5_tokenizer()
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=64, num_layers=1, num_single_layers=1,
                                         attention_head_dim=16, num_attention_heads=2, pooled_projection_dim=32,
                                         joint_attention_dim=T5_WIDTH, guidance_embeds=True,
                                         axes_dims_rope=(4, 4, 8))  # fmt: skip
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096)  # fmt: skip
    pipe = FluxPipeline(scheduler=scheduler, vae=flow_vae(), text_encoder=tiny_text_encoder(tokenizer),
                        tokenizer=tokenizer, text_encoder_2=t5_encoder(len(t5_tok)), tokenizer_2=t5_tok,
                        transformer=transformer)  # fmt: skip
    pipe.save_pretrained(folder)
    return folder


def _clip_with_projection(tokenizer):
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    config = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                            num_attention_heads=4, max_position_embeddings=16, bos_token_id=0, eos_token_id=1,
                            pad_token_id=1, projection_dim=32)  # fmt: skip
    return CLIPTextModelWithProjection(config)


def make_tiny_sd3(folder: str | Path, seed: int = 0, layers: int = 1) -> Path:
    """A StableDiffusion3Pipeline: `layers` MMDiT blocks over 16 channels, two CLIPs (32 wide each) and T5 (64 wide).

    (`layers` 2 for ControlNet tests: SD3's last block takes no ControlNet residual.)
    """
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    folder = Path(folder)
    torch.manual_seed(seed)
    tokenizer = _tokenizer(folder / "_tok")
    t5_tok = t5_tokenizer()
    transformer = SD3Transformer2DModel(sample_size=16, patch_size=1, in_channels=16, num_layers=layers,
                                        attention_head_dim=8, num_attention_heads=4, joint_attention_dim=64,
                                        caption_projection_dim=32, pooled_projection_dim=64, out_channels=16,
                                        pos_embed_max_size=64)  # fmt: skip
    pipe = StableDiffusion3Pipeline(scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), vae=flow_vae(0.0609, 1.5035),
                                    text_encoder=_clip_with_projection(tokenizer), tokenizer=tokenizer,
                                    text_encoder_2=_clip_with_projection(tokenizer), tokenizer_2=tokenizer,
                                    text_encoder_3=t5_encoder(len(t5_tok), 64), tokenizer_3=t5_tok,
                                    transformer=transformer)  # fmt: skip
    pipe.save_pretrained(folder)
    return folder


KOHYA_FLUX_LAYERS = {
    "double_blocks_0_img_attn_qkv": (32, 96),  # q, k and v of the picture stream, fused as BFL stores them
    "double_blocks_0_img_attn_proj": (32, 32),
    "double_blocks_0_txt_mlp_0": (32, 128),
    "single_blocks_0_linear2": (160, 32),
}
"""The tiny Flux's layers in kohya's names (BFL's layout: ``lora_unet_`` + the block path) → (in, out) features."""


def kohya_flux_lora(path: str | Path, seed: int = 0, rank: int = 4, alpha: float = 2.0) -> Path:
    """Write a LoRA for `make_tiny_flux`'s transformer the way kohya's sd-scripts save Flux LoRA."""
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(seed)
    weights = {}
    for name, (features_in, features_out) in KOHYA_FLUX_LAYERS.items():
        key = f"lora_unet_{name}"
        weights[f"{key}.lora_down.weight"] = torch.randn(rank, features_in, generator=generator) * 0.5
        weights[f"{key}.lora_up.weight"] = torch.randn(features_out, rank, generator=generator) * 0.5
        weights[f"{key}.alpha"] = torch.tensor(alpha)
    save_file(weights, str(path), metadata={"ss_network_module": "networks.lora_flux"})
    return Path(path)


def diffusers_lora(transformer, path: str | Path, seed: int = 0, rank: int = 4) -> Path:
    """Write a LoRA in diffusers' own (peft) layout for a transformer's first block's attention projections."""
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(seed)
    weights = {}
    for name, module in transformer.named_modules():
        if name.startswith("transformer_blocks.0.attn.") and isinstance(module, torch.nn.Linear):
            key = f"transformer.{name}"
            weights[f"{key}.lora_A.weight"] = torch.randn(rank, module.in_features, generator=generator) * 0.5
            weights[f"{key}.lora_B.weight"] = torch.randn(module.out_features, rank, generator=generator) * 0.5
    save_file(weights, str(path))
    return Path(path)
