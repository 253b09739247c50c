"""How the noise is made (variation seeds, seed resize, ENSD) and how the picture runs on the machine."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..presets import PRESET_CHOICES
from ..step_cache import CACHE_CHOICES, check_cache
from .base import ATTENTION_MODES, OFFLOAD_MODES, QUANT_MODES, RNG_SOURCES, SEED_LIMIT, VAE_TILING_MODES, option
from .upscale import SdUpscaleOptions


@dataclass
class SeedOptions(SdUpscaleOptions):
    """Variation seeds and seed resizing, as A1111 (engine/seeds.py)."""

    variation_seed: int = field(
        default=-1,
        metadata=option(
            "Seed of the noise mixed in by --variation-strength; -1 picks one. Image k of a batch uses it+k.",
            flags=("--variation-seed",),
            infotext="Variation seed",
            range=(-1, SEED_LIMIT),
        ),
    )
    variation_strength: float = field(
        default=0.0,
        metadata=option(
            "How much of the variation seed's noise to mix in (slerp), as A1111; the seed stays fixed over a batch.",
            flags=("--variation-strength",),
            infotext="Variation seed strength",
            range=(0.0, 1.0),
            step=0.01,
        ),
    )
    seed_resize_from: str = field(
        default="",
        metadata=option(
            "Make the noise as for this size (WxH) and centre it, so a seed keeps its picture at another size.",
            flags=("--seed-resize-from",),
            infotext="Seed resize from",
        ),
    )
    eta_noise_seed_delta: int = field(
        default=0,
        metadata=option(
            "A1111's Eta noise seed delta (ENSD; 31337 in NovelAI-style recipes): ancestral samplers (Euler a, "
            "DPM2 a) draw their step noise from seed + this after the starting noise. 0 = off.",
            flags=("--ensd",),
            infotext="ENSD",
            range=(0, SEED_LIMIT),
        ),
    )
    ngms: float = field(
        default=0.0,
        metadata=option(
            "A1111's Negative Guidance minimum sigma: below this noise level, every other model call skips the "
            "negative prompt's half (about half a UNet call saved per skip; 0 = off).",
            flags=("--ngms",),
            infotext="NGMS",
            range=(0.0, 15.0),
            step=0.01,
        ),
    )
    ngms_all: bool = field(
        default=False,
        metadata=option(
            "With --ngms, skip on every call below that noise level, not every other one (A1111's 'all steps').",
            flags=("--ngms-all",),
            infotext="NGMS all steps",
        ),
    )
    skip_early_cfg: float = field(
        default=0.0,
        metadata=option(
            "A1111's and Forge's Skip Early CFG: the first model calls, up to this fraction of the run, ignore the "
            "negative prompt (its half of each UNet call saved; can add variety; 0 = off, 1 = every call).",
            flags=("--skip-early-cfg",),
            infotext="Skip Early CFG",
            range=(0.0, 1.0),
            step=0.05,
        ),
    )
    rng: str = field(
        default="gpu",
        metadata=option(
            "Where the noise comes from, as A1111's RNG setting: gpu (its default: CUDA's generator on NVIDIA and the "
            "same numbers computed elsewhere, so a seed paints alike on a T4, a Mac and a CPU), nv (those numbers on "
            "every device), cpu (torch's CPU generator, as diffusers' examples draw).",
            flags=("--rng",),
            infotext="RNG",
            choices=RNG_SOURCES,
        ),
    )


@dataclass
class MachineOptions(SeedOptions):
    """SDXL refiner, few-step presets, memory and speed (engine/memory.py, presets.py)."""

    preset: str = field(
        default="auto",
        metadata=option(
            "Few-step model defaults (steps, CFG, sampler): auto detects SD-Turbo, SDXL-Turbo, LCM, Lightning and "
            "Hyper-SD; none never applies one; or name one to force it. Options you set win.",
            flags=("--preset",),
            choices=PRESET_CHOICES,
        ),
    )
    refiner: str = field(
        default="",
        metadata=option(
            "SDXL refiner model (hub id, folder or .safetensors) that paints the last steps; empty for none.",
            flags=("--refiner",),
            infotext="Refiner",
            kernel=True,
        ),
    )
    refiner_switch: float = field(
        default=0.8,
        metadata=option(
            "Fraction of the steps after which the refiner takes over.",
            flags=("--refiner-switch",),
            infotext="Refiner switch at",
            range=(0.01, 1.0),
            step=0.01,
        ),
    )
    offload: str = field(
        default="auto",
        metadata=option(
            "GPU memory: none (all on the GPU), model (one model at a time on the GPU), sequential (layer by "
            "layer: least memory, slowest), auto (from the free VRAM, the host RAM and the model; with little host "
            "RAM the text encoders encode on the CPU).",
            flags=("--offload",),
            choices=OFFLOAD_MODES,
            kernel=True,
        ),
    )
    vae_tiling: str = field(
        default="auto",
        metadata=option(
            "Decode the picture in tiles to save memory: auto (over about 1536x1536, and to retry after an "
            "out-of-memory in the VAE), on, off.",
            flags=("--vae-tiling",),
            choices=VAE_TILING_MODES,
        ),
    )
    attention: str = field(
        default="sdpa",
        metadata=option(
            "Attention: sdpa (PyTorch's fused kernel, fast) or slicing (less memory, slower).",
            flags=("--attention",),
            choices=ATTENTION_MODES,
            kernel=True,
        ),
    )
    token_merging: float = field(
        default=0.0,
        metadata=option(
            "Token merging ratio (ToMe, as A1111's optimisation setting): merge this share of the attention tokens "
            "in the UNet's high-res blocks; faster on big pictures, a little less detail. 0 = off.",
            flags=("--tome",),
            infotext="Token merging ratio",
            range=(0.0, 0.9),
            step=0.05,
        ),
    )
    token_merging_hr: float = field(
        default=0.0,
        metadata=option(
            "Token merging ratio of the hires pass; 0 = the one above.",
            flags=("--tome-hr",),
            infotext="Token merging ratio hr",
            range=(0.0, 0.9),
            step=0.05,
        ),
    )
    cache: str = field(
        default="off",
        metadata=option(
            "Step caching: deepcache[:N] (N 2–10, default 3) runs the whole UNet on every N-th step after the first "
            "fifth and reuses its deep blocks between (faster, a little less detail); auto = the model family's "
            "measured default (deepcache 3 on SD 1.x/2.x/SDXL, taylorseer 3 on Flux); on Flux fbcache[:T], "
            "taylorseer[:N], magcache[:T] (diffusers' caches); off = every step in full. See docs/speed.md.",
            flags=("--cache",),
            infotext="Cache",
            choices=CACHE_CHOICES,
            check=check_cache,
        ),
    )
    fast: bool = field(
        default=False,
        metadata=option(
            "Fast mode for big GPUs: channels_last, fused QKV projections and torch.compile of the UNet's repeated "
            "blocks (the first picture at each size compiles).",
            flags=("--fast",),
            kernel=True,
        ),
    )
    quant: str = field(
        default="none",
        metadata=option(
            "Store the UNet/transformer in fewer bits: fp8 (float8 weights cast up layer by layer: half of bf16, any "
            "device), nf4 or int8 (bitsandbytes, CUDA only); none. GGUF files come quantized already.",
            flags=("--quant",),
            infotext="Quant",
            choices=QUANT_MODES,
            kernel=True,
        ),
    )
    text_encoder: str = field(
        default="",
        metadata=option(
            "Text encoder files for a transformer file, as Forge picks them: names in the models folder's "
            "text_encoder/ (or paths), comma-separated, e.g. clip_l,t5xxl_fp16 or a GGUF T5/Qwen "
            "(t5-v1_1-xxl-encoder-Q8_0); written as Forge's Module keys.",
            flags=("--text-encoder",),
            kernel=True,
        ),
    )
