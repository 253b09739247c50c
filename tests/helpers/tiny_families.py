"""Tiny random Chroma, Z-Image, Qwen-Image and Flux.2 klein pipelines built from config, saved as folders.

Their language-model text encoders (Qwen3, Qwen2.5-VL) are a few layers 16 wide over a byte-level tokenizer made
with `tokenizers` (one token per byte, Qwen's chat markers as special tokens): nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

from helpers.tiny_flow import T5_WIDTH, flow_vae, t5_encoder, t5_tokenizer

QWEN_WIDTH = 16
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def flux_scheduler():
    """The dynamic-shift flow-matching Euler config Flux, Chroma and Qwen-Image ship."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                           base_image_seq_len=256, max_image_seq_len=4096)  # fmt: skip


def qwen_tokenizer():
    """A byte-level Qwen2 tokenizer: one token per byte, ``<|endoftext|>`` (pad), ``<|im_start|>``, ``<|im_end|>``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import Qwen2TokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    backend = Tokenizer(models.BPE(vocab={char: i for i, char in enumerate(alphabet)}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = Qwen2TokenizerFast(tokenizer_object=backend, pad_token="<|endoftext|>", eos_token="<|im_end|>",
                                   unk_token=None, bos_token=None)  # fmt: skip
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>"]})
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def make_tiny_chroma(folder: str | Path, seed: int = 0) -> Path:
    """A ChromaPipeline: one double and one single block over Flux's packed 16 channels, a T5 encoder."""
    import torch
    from diffusers import ChromaPipeline, ChromaTransformer2DModel

    folder = Path(folder)
    torch.manual_seed(seed)
    tokenizer = t5_tokenizer()
    transformer = ChromaTransformer2DModel(patch_size=1, in_channels=64, num_layers=1, num_single_layers=1,
                                           attention_head_dim=16, num_attention_heads=2, joint_attention_dim=T5_WIDTH,
                                           axes_dims_rope=(4, 4, 8), approximator_hidden_dim=32, approximator_layers=1,
                                           approximator_num_channels=16)  # fmt: skip
    pipe = ChromaPipeline(scheduler=flux_scheduler(), vae=flow_vae(), text_encoder=t5_encoder(len(tokenizer)).eval(),
                          tokenizer=tokenizer, transformer=transformer)  # fmt: skip
    pipe.save_pretrained(folder)
    return folder


def make_tiny_zimage(folder: str | Path, seed: int = 0, heads: int = 2, layers: int = 2) -> Path:
    """A ZImagePipeline: `layers` single-stream layers 16·`heads` wide over Flux's 16 channels, a two-layer Qwen3 16
    wide."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, ZImagePipeline, ZImageTransformer2DModel
    from transformers import Qwen3Config, Qwen3Model

    folder = Path(folder)
    torch.manual_seed(seed)
    tokenizer = qwen_tokenizer()
    transformer = ZImageTransformer2DModel(all_patch_size=(2,), all_f_patch_size=(1,), in_channels=16,
                                           dim=16 * heads, n_layers=layers, n_refiner_layers=1, n_heads=heads,
                                           n_kv_heads=heads, norm_eps=1e-5, qk_norm=True, cap_feat_dim=QWEN_WIDTH,
                                           rope_theta=256.0, t_scale=1000.0, axes_dims=[8, 4, 4],
                                           axes_lens=[256, 32, 32])  # fmt: skip
    with torch.no_grad():  # (made with torch.empty)
        transformer.x_pad_token.normal_()
        transformer.cap_pad_token.normal_()
    config = Qwen3Config(hidden_size=QWEN_WIDTH, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=2, head_dim=8, vocab_size=len(tokenizer),
                         max_position_embeddings=1024)  # fmt: skip
    encoder = Qwen3Model(config).eval()
    pipe = ZImagePipeline(scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), vae=flow_vae(), text_encoder=encoder,
                          tokenizer=tokenizer, transformer=transformer)  # fmt: skip
    pipe.save_pretrained(folder)
    return folder


def qwen_vae():
    """A random Qwen-Image (Wan 2.1) VAE, 16 latent channels with uneven per-channel mean and std, 4× smaller."""
    from diffusers import AutoencoderKLQwenImage

    return AutoencoderKLQwenImage(base_dim=32, z_dim=16, dim_mult=[1, 2, 4], num_res_blocks=1,
                                  temperal_downsample=[False, True], latents_mean=[0.05 * k - 0.4 for k in range(16)],
                                  latents_std=[0.8 + 0.05 * k for k in range(16)])  # fmt: skip


def make_tiny_qwenimage(folder: str | Path, seed: int = 0) -> Path:
    """A QwenImagePipeline: two MMDiT layers over 16 channels packed 2×2, a two-layer Qwen2.5-VL 16 wide."""
    import torch
    from diffusers import QwenImagePipeline, QwenImageTransformer2DModel
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    folder = Path(folder)
    torch.manual_seed(seed)
    tokenizer = qwen_tokenizer()
    transformer = QwenImageTransformer2DModel(patch_size=2, in_channels=64, out_channels=16, num_layers=2,
                                              attention_head_dim=16, num_attention_heads=3,
                                              joint_attention_dim=QWEN_WIDTH, guidance_embeds=False,
                                              axes_dims_rope=(8, 4, 4))  # fmt: skip
    text = {"hidden_size": QWEN_WIDTH, "intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
            "num_key_value_heads": 2, "rope_theta": 1000000.0,
            "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"}}  # fmt: skip
    vision = {"depth": 1, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2, "out_hidden_size": QWEN_WIDTH}
    config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, hidden_size=QWEN_WIDTH,
                              vocab_size=len(tokenizer), vision_end_token_id=151653, vision_start_token_id=151652,
                              vision_token_id=151654)  # fmt: skip
    encoder = Qwen2_5_VLForConditionalGeneration(config).eval()
    pipe = QwenImagePipeline(scheduler=flux_scheduler(), vae=qwen_vae(), text_encoder=encoder, tokenizer=tokenizer,
                             transformer=transformer)  # fmt: skip
    pipe.save_pretrained(folder)
    return folder


def make_tiny_flux2_klein(folder: str | Path, seed: int = 0, distilled: bool = False, quant_conv: bool = False) -> Path:
    """A Flux2KleinPipeline: one double and one single block over 32 channels patchified to 128, a 27-layer Qwen3
    16 wide (its pipeline reads layers 9, 18 and 27), a VAE with uneven batch-norm statistics (and, with
    `quant_conv`, the quant convolutions the shipped VAE has)."""
    import torch
    from diffusers import AutoencoderKLFlux2, Flux2KleinPipeline, Flux2Transformer2DModel
    from transformers import Qwen3Config, Qwen3ForCausalLM

    folder = Path(folder)
    torch.manual_seed(seed)
    tokenizer = qwen_tokenizer()
    transformer = Flux2Transformer2DModel(patch_size=1, in_channels=128, num_layers=1, num_single_layers=1,
                                          attention_head_dim=16, num_attention_heads=2,
                                          joint_attention_dim=3 * QWEN_WIDTH,
                                          timestep_guidance_channels=256, axes_dims_rope=[4, 4, 4, 4],
                                          guidance_embeds=False)  # fmt: skip
    config = Qwen3Config(hidden_size=QWEN_WIDTH, intermediate_size=16, num_hidden_layers=27, num_attention_heads=2,
                         num_key_value_heads=2, head_dim=8, vocab_size=len(tokenizer),
                         max_position_embeddings=1024)  # fmt: skip
    vae = AutoencoderKLFlux2(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(8, 16),
                             down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                             layers_per_block=1, latent_channels=32, norm_num_groups=8, use_quant_conv=quant_conv,
                             use_post_quant_conv=quant_conv)  # fmt: skip
    with torch.no_grad():
        vae.bn.running_mean.copy_(torch.linspace(-0.5, 0.5, vae.bn.running_mean.numel()))
        vae.bn.running_var.copy_(torch.linspace(0.5, 2.0, vae.bn.running_var.numel()))
    pipe = Flux2KleinPipeline(scheduler=flux_scheduler(), vae=vae.eval(), text_encoder=Qwen3ForCausalLM(config).eval(),
                              tokenizer=tokenizer, transformer=transformer, is_distilled=distilled)  # fmt: skip
    pipe.save_pretrained(folder)
    return folder


MISTRAL_TEMPLATE = (
    "{% for m in messages %}[{{ m['role'] }}]{% for part in m['content'] %}{{ part['text'] }}{% endfor %}"
    "[/{{ m['role'] }}]{% endfor %}"
)
"""Mistral's chat over the content lists Flux.2's pipeline hands (``[{"type": "text", "text": …}]``)."""


def mistral_tokenizer():
    """A byte-level tokenizer for a tiny Mistral 3: one token per byte, ``<pad>`` and ``</s>``, Mistral's chat."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    backend = Tokenizer(models.BPE(vocab={char: i for i, char in enumerate(alphabet)}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>")
    tokenizer.chat_template = MISTRAL_TEMPLATE
    return tokenizer


def make_tiny_flux2_dev(folder: str | Path, seed: int = 0) -> Path:
    """A Flux2Pipeline (FLUX.2 [dev]): klein's tiny transformer with a guidance embedder, a 30-layer Mistral 3
    16 wide (its pipeline reads layers 10, 20 and 30; a one-layer Pixtral tower it never runs), klein's VAE."""
    import torch
    from diffusers import AutoencoderKLFlux2, Flux2Pipeline, Flux2Transformer2DModel
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration

    folder = Path(folder)
    torch.manual_seed(seed)
    tokenizer = mistral_tokenizer()
    transformer = Flux2Transformer2DModel(patch_size=1, in_channels=128, num_layers=1, num_single_layers=1,
                                          attention_head_dim=16, num_attention_heads=2,
                                          joint_attention_dim=3 * QWEN_WIDTH,
                                          timestep_guidance_channels=256, axes_dims_rope=[4, 4, 4, 4],
                                          guidance_embeds=True)  # fmt: skip
    text = {"hidden_size": QWEN_WIDTH, "intermediate_size": 16, "num_hidden_layers": 30, "num_attention_heads": 2,
            "num_key_value_heads": 2, "head_dim": 8, "vocab_size": len(tokenizer),
            "max_position_embeddings": 1024}  # fmt: skip
    vision = {"hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
              "head_dim": 8, "image_size": 32, "patch_size": 16}  # fmt: skip
    config = Mistral3Config(text_config=text, vision_config=vision, image_token_index=len(tokenizer) - 1)
    vae = AutoencoderKLFlux2(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(8, 16),
                             down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                             layers_per_block=1, latent_channels=32, norm_num_groups=8)  # fmt: skip
    with torch.no_grad():
        vae.bn.running_mean.copy_(torch.linspace(-0.5, 0.5, vae.bn.running_mean.numel()))
        vae.bn.running_var.copy_(torch.linspace(0.5, 2.0, vae.bn.running_var.numel()))
    pipe = Flux2Pipeline(scheduler=flux_scheduler(), vae=vae.eval(),
                         text_encoder=Mistral3ForConditionalGeneration(config).eval(), tokenizer=tokenizer,
                         transformer=transformer)  # fmt: skip
    pipe.save_pretrained(folder)
    return folder
