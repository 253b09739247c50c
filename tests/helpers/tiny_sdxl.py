"""A tiny random Stable Diffusion XL pipeline built from config and saved as an ordinary diffusers folder.

Shaped like diffusers' own SDXL fast tests (``get_dummy_components``), only smaller: two text encoders (CLIP-L
style ``CLIPTextModel`` and bigG style ``CLIPTextModelWithProjection``) whose hidden sizes add up to the UNet's
cross-attention width, a UNet with SDXL's ``text_time`` added conditioning, and a VAE with SDXL's scaling factor.
"""

from __future__ import annotations

from pathlib import Path

from helpers.tiny_pipeline import _tokenizer, tiny_vae

TEXT_WIDTH = 32
"""Hidden size of the first (CLIP-L style) text encoder."""
TEXT_2_WIDTH = 48
"""Hidden size of the second (bigG style) encoder. The UNet attends to both, concatenated (32 + 48); the widths
differ, as in SDXL (768, 1280), because that is how diffusers' single-file loader tells the two apart."""
POOLED_WIDTH = 32
"""``projection_dim`` of the second encoder: its pooled output joins the six size/crop numbers in ``add_embedding``."""
TIME_WIDTH = 8
"""``addition_time_embed_dim``: each of SDXL's six micro-conditioning numbers is embedded this wide."""
SDXL_SCALING = 0.13025


def _text_config(tokenizer, width: int, projection_dim: int | None = None):
    from transformers import CLIPTextConfig

    extra = {"projection_dim": projection_dim} if projection_dim else {}
    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=width,
        intermediate_size=64,
        num_hidden_layers=2,  # SDXL reads the penultimate hidden state
        num_attention_heads=4,
        max_position_embeddings=16,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        **extra,
    )


def make_tiny_sdxl(folder: str | Path, seed: int = 0, sample_size: int = 8) -> Path:
    """Build a random SDXL-shaped pipeline (16×16 images by default) and save it to `folder`."""
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    folder = Path(folder)
    torch.manual_seed(seed)
    tokenizer = _tokenizer(folder / "_tok")
    unet = UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        transformer_layers_per_block=(1, 2),
        cross_attention_dim=TEXT_WIDTH + TEXT_2_WIDTH,
        addition_embed_type="text_time",
        addition_time_embed_dim=TIME_WIDTH,
        projection_class_embeddings_input_dim=6 * TIME_WIDTH + POOLED_WIDTH,
        norm_num_groups=8,
    )
    vae = tiny_vae(
        sample_size * 2,
        scaling_factor=SDXL_SCALING,
        force_upcast=True,  # SDXL's VAE overflows in float16: pipelines decode it in float32
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="leading",
    )
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=CLIPTextModel(_text_config(tokenizer, TEXT_WIDTH)),
        text_encoder_2=CLIPTextModelWithProjection(_text_config(tokenizer, TEXT_2_WIDTH, POOLED_WIDTH)),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=scheduler,
    )
    pipe.save_pretrained(folder)
    return folder
