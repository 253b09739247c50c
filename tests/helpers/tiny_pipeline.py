"""Tiny random Stable Diffusion pipelines built from config, saved as ordinary diffusers folders.

Tests load them through the same `from_pretrained` path users take, so nothing here needs the hub.
"""

from __future__ import annotations

import json
from pathlib import Path

WORDS = ["a", "red", "green", "blue", "circle", "square", "on", "background", "cat", "dog", "fox", "snow"]


def _tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "!": 2}
    for ch in "abcdefghijklmnopqrstuvwxyz":
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(ch + "</w>", len(vocab))
    for word in WORDS:
        vocab.setdefault(word + "</w>", len(vocab))
    merges = ["#version: 0.2"]
    seen = set()
    for word in WORDS:
        # merge left to right so each whole word becomes one token
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        while len(pieces) > 1:
            pair = f"{pieces[0]} {pieces[1]}"
            merged = pieces[0] + pieces[1]
            if pair not in seen:
                seen.add(pair)
                merges.append(pair)
                vocab.setdefault(merged, len(vocab))
            pieces = [merged] + pieces[2:]
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("\n".join(merges) + "\n")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=16)
    tokenizer.save_pretrained(folder)
    return tokenizer


def tiny_vae(sample_size: int, **config):
    """A random two-level AutoencoderKL with 4 latent channels (images twice the latent size)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=8,
        sample_size=sample_size,
        **config,
    )


def tiny_unet(sample_size: int = 8, in_channels: int = 4, block_channels=(16, 32)):
    """A random two-level SD-shaped UNet (cross-attention width 32); 9 input channels make an inpainting UNet."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=in_channels,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=block_channels,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=8,
    )


def tiny_text_encoder(tokenizer, layers: int = 2, pad_token_id: int = 1):
    """A random CLIP text encoder of width 32 for `tokenizer`'s vocabulary."""
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=layers,
            num_attention_heads=4,
            max_position_embeddings=16,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=pad_token_id,
        )
    )


def make_tiny_pipeline(folder: str | Path, seed: int = 0, sample_size: int = 8, block_channels=(16, 32)) -> Path:
    """Build a random SD-shaped pipeline (4-channel latents, cross-attention) and save it to `folder`."""
    import torch

    folder = Path(folder)
    torch.manual_seed(seed)
    tokenizer = _tokenizer(folder / "_tok")
    unet = tiny_unet(sample_size, block_channels=block_channels)
    vae = tiny_vae(sample_size * 2)
    text_encoder = tiny_text_encoder(tokenizer)
    return save_sd_pipeline(folder, unet, vae, text_encoder, tokenizer)


def save_sd_pipeline(folder: Path, unet, vae, text_encoder, tokenizer) -> Path:
    """Assemble a StableDiffusionPipeline with SD's training schedule (as PNDM) and no safety checker; save it."""
    from diffusers import PNDMScheduler, StableDiffusionPipeline

    scheduler = PNDMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True, steps_offset=1
    )
    pipe = StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder)
    return Path(folder)
