"""Random-weight pipelines with Stable Diffusion 1.5's architecture (optionally narrower), built from config.

Nothing is downloaded: the benchmarks measure our overhead around the real UNet/VAE shapes, not picture quality.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from helpers.tiny_pipeline import _tokenizer, save_sd_pipeline  # noqa: E402


def make_sd15_shaped(
    folder: str | Path, width: int = 320, text_width: int = 768, text_layers: int = 12, seed: int = 0
) -> Path:
    """Save an SD-1.5-shaped pipeline: UNet channels (w, 2w, 4w, 4w), cross-attention, an 8× VAE.

    ``width=320, text_width=768, text_layers=12`` is SD 1.5's full size (860 M UNet parameters).
    """
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    folder = Path(folder)
    torch.manual_seed(seed)
    tokenizer = _tokenizer(folder / "_tok")
    heads = max(1, width // 40)
    unet = UNet2DConditionModel(
        sample_size=64,
        block_out_channels=(width, 2 * width, 4 * width, 4 * width),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        layers_per_block=2,
        cross_attention_dim=text_width,
        attention_head_dim=8 if width == 320 else heads,
        norm_num_groups=32,
    )
    vae_width = 128 if width == 320 else max(32, width // 2)
    vae = AutoencoderKL(
        block_out_channels=(vae_width, 2 * vae_width, 4 * vae_width, 4 * vae_width),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=2,
        sample_size=512,
        norm_num_groups=32,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=text_width,
            intermediate_size=4 * text_width,
            num_hidden_layers=text_layers,
            num_attention_heads=max(1, text_width // 64),
            max_position_embeddings=77,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )
    tokenizer.model_max_length = 77
    return save_sd_pipeline(folder, unet, vae, text_encoder, tokenizer)


def plain_call(pipe, request, base_config: dict):
    """The baseline: a plain diffusers call with the request's sampler, seed, size, steps and guidance."""
    import torch

    from jupyter_sd.engine.schedulers import make_scheduler

    pipe.scheduler = make_scheduler(request.sampler, request.schedule, base_config)
    return pipe(
        request.prompt,
        num_inference_steps=request.steps,
        guidance_scale=request.guidance,
        width=request.width,
        height=request.height,
        generator=[torch.Generator("cpu").manual_seed(request.seed)],
    ).images[0]


def make_sdxl_shaped(folder: str | Path, seed: int = 0) -> Path:
    """Save an SDXL-base-shaped pipeline with random weights in fp16 (2.6 B UNet parameters, both text encoders).

    SDXL 1.0's configs: UNet (320, 640, 1280) with 1/2/10 transformer layers, text_time conditioning over the pooled
    bigG output and six size numbers; CLIP-L (768, 12 layers) and bigG (1280, 32 layers) text encoders; the SD VAE
    with SDXL's scaling factor.
    """
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    folder = Path(folder)
    torch.manual_seed(seed)
    tokenizer = _tokenizer(folder / "_tok")
    tokenizer.model_max_length = 77

    def text_config(width: int, layers: int, **extra):
        return CLIPTextConfig(
            vocab_size=len(tokenizer), hidden_size=width, intermediate_size=4 * width, num_hidden_layers=layers,
            num_attention_heads=width // 64, max_position_embeddings=77, bos_token_id=0, eos_token_id=1,
            pad_token_id=1, hidden_act="gelu", **extra,
        )  # fmt: skip

    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):  # random init is much faster on the GPU
        unet = UNet2DConditionModel(
            sample_size=128,
            block_out_channels=(320, 640, 1280),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            layers_per_block=2,
            transformer_layers_per_block=(1, 2, 10),
            attention_head_dim=(5, 10, 20),
            use_linear_projection=True,
            cross_attention_dim=2048,
            addition_embed_type="text_time",
            addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=2816,
            norm_num_groups=32,
        ).half()
        vae = AutoencoderKL(
            block_out_channels=(128, 256, 512, 512),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            latent_channels=4,
            layers_per_block=2,
            sample_size=1024,
            scaling_factor=0.13025,
            force_upcast=True,
            norm_num_groups=32,
        ).half()
        text_encoder = CLIPTextModel(text_config(768, 12)).half()
        text_encoder_2 = CLIPTextModelWithProjection(text_config(1280, 32, projection_dim=1280)).half()
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1, timestep_spacing="leading"
    )
    pipe = StableDiffusionXLPipeline(
        vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer,
        tokenizer_2=tokenizer, unet=unet, scheduler=scheduler,
    )  # fmt: skip
    pipe.to("cpu").save_pretrained(folder)
    return folder


def make_taesd_shaped(folder: str | Path, seed: int = 0) -> Path:
    """Save a TAESD-shaped tiny autoencoder with random weights (for preview decode timings)."""
    import torch
    from diffusers import AutoencoderTiny

    torch.manual_seed(seed)
    AutoencoderTiny().save_pretrained(folder)
    return Path(folder)


def make_flux_shaped(folder: str | Path, width: int = 256, double: int = 4, single: int = 8, seed: int = 0) -> Path:
    """Save a Flux.1-shaped pipeline at reduced width and depth: double then single blocks over packed 16-channel
    latents, an 8× VAE, CLIP and T5 (small random ones). Flux.1 itself is width 3072, 19 double and 38 single blocks.
    """
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from helpers.tiny_flow import T5_WIDTH, t5_encoder, t5_tokenizer
    from helpers.tiny_pipeline import tiny_text_encoder

    folder = Path(folder)
    torch.manual_seed(seed)
    tokenizer = _tokenizer(folder / "_tok")
    t5_tok = t5_tokenizer()
    heads = max(1, width // 64)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=double, num_single_layers=single, attention_head_dim=width // heads,
        num_attention_heads=heads, pooled_projection_dim=32, joint_attention_dim=T5_WIDTH, guidance_embeds=True,
        axes_dims_rope=(width // heads // 4, width // heads * 3 // 8, width // heads * 3 // 8),
    )  # fmt: skip
    vae = AutoencoderKL(
        block_out_channels=(32, 64, 64, 64), down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=16, layers_per_block=1, norm_num_groups=32,
        sample_size=256, shift_factor=0.1159, scaling_factor=0.3611, use_quant_conv=False, use_post_quant_conv=False,
    )  # fmt: skip
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
        max_image_seq_len=4096,
    )  # fmt: skip
    pipe = FluxPipeline(
        scheduler=scheduler, vae=vae, text_encoder=tiny_text_encoder(tokenizer), tokenizer=tokenizer,
        text_encoder_2=t5_encoder(len(t5_tok)), tokenizer_2=t5_tok, transformer=transformer,
    )  # fmt: skip
    pipe.save_pretrained(folder)
    return folder
