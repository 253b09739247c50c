"""Every option's declaration: one dataclass field each, grouped by the room of the engine that honours it.

Each field's metadata carries its help text, range or choices, command-line flag and A1111 infotext key; the magic's
parser, the CLI, the panel and the metadata writer are generated from them (STYLE P3). The groups are a chain of
dataclasses, so `PaintRequest` (in ``request.py``, which adds validation and the A1111 mapping) keeps one flat list
of fields in this order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .presets import PRESET_CHOICES
from .samplers import SAMPLERS, SCHEDULES

PREVIEW_MODES = ("auto", "latent2rgb", "taesd", "full", "none")
DTYPES = ("auto", "float16", "bfloat16", "float32")
DTYPE_ALIASES = {"fp16": "float16", "half": "float16", "bf16": "bfloat16", "fp32": "float32", "float": "float32"}
DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?|xpu(:\d+)?)$")
MAX_SEED = 2**32 - 1
MAX_SIDE = 4096
RESIZE_MODES = ("Just resize", "Crop and resize", "Resize and fill")
INPAINT_AREAS = ("whole", "masked")
MASKED_CONTENT = ("original", "fill", "latent noise", "latent nothing")
LATENT_UPSCALERS = {
    "Latent": ("bilinear", False),
    "Latent (antialiased)": ("bilinear", True),
    "Latent (bicubic)": ("bicubic", False),
    "Latent (bicubic antialiased)": ("bicubic", True),
    "Latent (nearest)": ("nearest", False),
    "Latent (nearest-exact)": ("nearest-exact", False),
}
"""A1111's latent upscale modes: name → (torch interpolate mode, antialias)."""
IMAGE_UPSCALERS = ("Lanczos", "Nearest")
SAME_SAMPLER = "Use same sampler"
SAME_SCHEDULE = "Use same scheduler"
OFFLOAD_MODES = ("auto", "none", "model", "sequential")
VAE_TILING_MODES = ("auto", "on", "off")
ATTENTION_MODES = ("sdpa", "slicing")


def _option(
    help: str,
    *,
    flags: tuple[str, ...] = (),
    infotext: str | None = None,
    choices: tuple[str, ...] | None = None,
    range: tuple[float, float] | None = None,
    step: float | None = None,
    kernel: bool = False,
    models: str | None = None,
) -> dict[str, Any]:
    """Field metadata: the one place an option's help, flags, range and infotext key are declared.

    `models` names a `library` kind whose files are allowed besides the `choices` (by A1111's name for them).
    """
    return {
        "help": help,
        "flags": flags,
        "infotext": infotext,
        "choices": choices,
        "range": range,
        "step": step,
        "kernel": kernel,
        "models": models,
    }


@dataclass
class PictureOptions:
    """What to paint, with which model, sampler and conditioning, and where it goes."""

    prompt: str = field(default="", metadata=_option("What to paint (the cell body in %%paint)."))
    negative_prompt: str = field(
        default="", metadata=_option("What to keep out of the picture.", flags=("--negative", "--neg"))
    )
    steps: int = field(
        default=20, metadata=_option("Denoising steps.", flags=("--steps",), infotext="Steps", range=(1, 150))
    )
    guidance: float = field(
        default=7.0,
        metadata=_option(
            "Classifier-free guidance (CFG) scale: how strictly to follow the prompt.",
            flags=("--guidance", "--cfg"),
            infotext="CFG scale",
            range=(0.0, 30.0),
            step=0.5,
        ),
    )
    seed: int = field(
        default=-1,
        metadata=_option(
            "Random seed; -1 picks one (the seed used is recorded). Image k of a batch uses seed+k.",
            flags=("--seed",),
            infotext="Seed",
            range=(-1, MAX_SEED),
        ),
    )
    width: int | None = field(
        default=None,
        metadata=_option(
            "Image width in pixels, a multiple of 8 (default: the model's native size).",
            flags=("--width", "-W"),
            range=(8, 4096),
            step=8,
        ),
    )
    height: int | None = field(
        default=None,
        metadata=_option(
            "Image height in pixels, a multiple of 8 (default: the model's native size).",
            flags=("--height", "-H"),
            range=(8, 4096),
            step=8,
        ),
    )
    sampler: str = field(
        default="DPM++ 2M",
        metadata=_option(
            "Sampler, by its AUTOMATIC1111 name.", flags=("--sampler",), infotext="Sampler", choices=tuple(SAMPLERS)
        ),
    )
    schedule: str = field(
        default="Automatic",
        metadata=_option(
            "Noise schedule type (Automatic = the sampler's usual one).",
            flags=("--schedule",),
            infotext="Schedule type",
            choices=tuple(SCHEDULES),
        ),
    )
    n: int = field(
        default=1, metadata=_option("Images per prompt (one batch).", flags=("-n", "--batch-size"), range=(1, 16))
    )
    repeat: int = field(
        default=1, metadata=_option("How many batches to paint one after another.", flags=("--repeat",), range=(1, 100))
    )
    model: str = field(
        default="",
        metadata=_option(
            "Model: a hub id, a local diffusers folder or a .safetensors file (default: the kernel's model).",
            flags=("--model", "-m"),
            infotext="Model",
            kernel=True,
        ),
    )
    model_config: str = field(
        default="",
        metadata=_option(
            "For a single .safetensors checkpoint: a diffusers folder or hub id with its configs.",
            flags=("--model-config",),
            kernel=True,
        ),
    )
    vae: str = field(
        default="",
        metadata=_option(
            "External VAE: a name in the models folder's VAE/, or a .safetensors file or diffusers folder "
            "(default: the model's own).",
            flags=("--vae",),
            infotext="VAE",
        ),
    )
    clip_skip: int = field(
        default=1,
        metadata=_option(
            "Clip skip, A1111's numbering: use the text encoder's N-th last layer (1 = the last; 2 for most anime "
            "models). SDXL ignores it, as A1111 does.",
            flags=("--clip-skip",),
            infotext="Clip skip",
            range=(1, 12),
        ),
    )
    emphasis: str = field(
        default="Original",
        metadata=_option(
            "A1111's emphasis mode: Original (weights, rescaled to the original mean), No norm (weights only), "
            "Ignore (weights ignored) or None (brackets and BREAK are plain text).",
            flags=("--emphasis",),
            infotext="Emphasis",
            choices=("Original", "No norm", "Ignore", "None"),
        ),
    )
    pad_conds: bool = field(
        default=False,
        metadata=_option(
            "Pad the shorter of prompt and negative prompt with empty chunks (one UNet batch) instead of running "
            "the two halves separately, as A1111's 'pad prompt/negative prompt to be same length'.",
            flags=("--pad-conds",),
            infotext="Pad conds",
        ),
    )
    preview: str = field(
        default="auto",
        metadata=_option(
            "Live preview: auto, latent2rgb, taesd, full or none.", flags=("--preview",), choices=PREVIEW_MODES
        ),
    )
    preview_interval: float = field(
        default=0.2,
        metadata=_option(
            "Seconds between live preview frames at least.", flags=("--preview-interval",), range=(0.0, 60.0), step=0.05
        ),
    )
    outdir: str = field(
        default="",
        metadata=_option(
            "Folder for the images (default: a folder beside the notebook).", flags=("--outdir", "-o"), kernel=True
        ),
    )
    save: bool = field(
        default=True, metadata=_option("Save the images as PNG files with their recipe.", flags=("--save",))
    )
    save_incomplete: bool = field(
        default=False, metadata=_option("Also save an interrupted picture.", flags=("--save-incomplete",))
    )
    device: str = field(
        default="auto", metadata=_option("Device: auto, cuda, cuda:N, mps or cpu.", flags=("--device",), kernel=True)
    )
    dtype: str = field(
        default="auto",
        metadata=_option(
            "Weights dtype: auto, float16, bfloat16 or float32.", flags=("--dtype",), choices=DTYPES, kernel=True
        ),
    )
    allow_pickle: bool = field(
        default=False,
        metadata=_option(
            "Allow loading pickle checkpoints (.ckpt/.pt/.bin), which can run arbitrary code.",
            flags=("--allow-pickle",),
            kernel=True,
        ),
    )


@dataclass
class InputOptions(PictureOptions):
    """img2img and inpainting: the picture to start from and the mask (engine/modes.py)."""

    init: str = field(
        default="",
        metadata=_option(
            "Start from this picture (img2img): a file, a URL, _ (the last result) or {name} of a notebook variable.",
            flags=("--init",),
        ),
    )
    strength: float = field(
        default=0.75,
        metadata=_option(
            "How much of the init picture to repaint: 0 keeps it, 1 paints anew.",
            flags=("--strength", "--denoise"),
            infotext="Denoising strength",
            range=(0.0, 1.0),
            step=0.01,
        ),
    )
    resize_mode: str = field(
        default="Just resize",
        metadata=_option(
            "How an init picture of another size is fitted to the size painted.",
            flags=("--resize-mode",),
            choices=RESIZE_MODES,
        ),
    )
    mask: str = field(
        default="",
        metadata=_option(
            "Inpaint: repaint where this mask is white (a file, URL, _ or {name}; an RGBA init's alpha works too).",
            flags=("--mask",),
        ),
    )
    mask_blur: int = field(
        default=4,
        metadata=_option(
            "Blur of the mask's edge in pixels.", flags=("--mask-blur",), infotext="Mask blur", range=(0, 64)
        ),
    )
    inpaint_area: str = field(
        default="whole",
        metadata=_option(
            "Inpaint the whole picture, or only the masked area at full resolution (A1111's 'Only masked').",
            flags=("--inpaint-area",),
            infotext="Inpaint area",
            choices=INPAINT_AREAS,
        ),
    )
    padding: int = field(
        default=32,
        metadata=_option(
            "With --inpaint-area masked: pixels of context around the mask.",
            flags=("--padding",),
            infotext="Masked area padding",
            range=(0, 256),
        ),
    )
    masked_content: str = field(
        default="original",
        metadata=_option(
            "What the masked area starts from.",
            flags=("--masked-content",),
            infotext="Masked content",
            choices=MASKED_CONTENT,
        ),
    )
    invert_mask: bool = field(
        default=False,
        metadata=_option("Repaint where the mask is black instead.", flags=("--invert-mask",), infotext="Mask mode"),
    )


@dataclass
class HiresOptions(InputOptions):
    """Hires fix: paint small, upscale, a second denoising pass (engine/modes.py)."""

    hires: float = field(
        default=0.0,
        metadata=_option(
            "Hires fix: paint, upscale by this factor and denoise again (0 = off).",
            flags=("--hires",),
            infotext="Hires upscale",
            range=(0.0, 8.0),
            step=0.05,
        ),
    )
    hires_size: str = field(
        default="",
        metadata=_option(
            "Hires fix to this size (WxH) instead of a factor.", flags=("--hires-size",), infotext="Hires resize"
        ),
    )
    hires_steps: int = field(
        default=0,
        metadata=_option(
            "Steps of the hires pass (0 = same as --steps).",
            flags=("--hires-steps",),
            infotext="Hires steps",
            range=(0, 150),
        ),
    )
    hires_denoise: float = field(
        default=0.7,
        metadata=_option(
            "Denoising strength of the hires pass.", flags=("--hires-denoise",), range=(0.0, 1.0), step=0.01
        ),
    )
    hires_upscaler: str = field(
        default="Latent",
        metadata=_option(
            "How the first pass is enlarged: a latent mode, an image mode (decode, resize, encode), or an upscaler "
            "model from the models folder's ESRGAN/ by its name (4x-UltraSharp, R-ESRGAN 4x+, …).",
            flags=("--hires-upscaler",),
            infotext="Hires upscaler",
            choices=(*LATENT_UPSCALERS, *IMAGE_UPSCALERS),
            models="upscaler",
        ),
    )
    hires_sampler: str = field(
        default=SAME_SAMPLER,
        metadata=_option(
            "Sampler of the hires pass.",
            flags=("--hires-sampler",),
            infotext="Hires sampler",
            choices=(SAME_SAMPLER, *SAMPLERS),
        ),
    )
    hires_schedule: str = field(
        default=SAME_SCHEDULE,
        metadata=_option(
            "Schedule type of the hires pass.",
            flags=("--hires-schedule",),
            infotext="Hires schedule type",
            choices=(SAME_SCHEDULE, *SCHEDULES),
        ),
    )
    hires_guidance: float = field(
        default=0.0,
        metadata=_option(
            "CFG scale of the hires pass; 0 = the first pass's.",
            flags=("--hires-cfg",),
            infotext="Hires CFG Scale",
            range=(0.0, 30.0),
            step=0.5,
        ),
    )
    hires_prompt: str = field(
        default="",
        metadata=_option(
            "Prompt of the hires pass (default: the prompt).", flags=("--hires-prompt",), infotext="Hires prompt"
        ),
    )


@dataclass
class SeedOptions(HiresOptions):
    """Variation seeds and seed resizing, as A1111 (engine/seeds.py)."""

    variation_seed: int = field(
        default=-1,
        metadata=_option(
            "Seed of the noise mixed in by --variation-strength; -1 picks one. Image k of a batch uses it+k.",
            flags=("--variation-seed",),
            infotext="Variation seed",
            range=(-1, MAX_SEED),
        ),
    )
    variation_strength: float = field(
        default=0.0,
        metadata=_option(
            "How much of the variation seed's noise to mix in (slerp), as A1111; the seed stays fixed over a batch.",
            flags=("--variation-strength",),
            infotext="Variation seed strength",
            range=(0.0, 1.0),
            step=0.01,
        ),
    )
    seed_resize_from: str = field(
        default="",
        metadata=_option(
            "Make the noise as for this size (WxH) and centre it, so a seed keeps its picture at another size.",
            flags=("--seed-resize-from",),
            infotext="Seed resize from",
        ),
    )
    eta_noise_seed_delta: int = field(
        default=0,
        metadata=_option(
            "A1111's Eta noise seed delta (ENSD; 31337 in NovelAI-style recipes): ancestral samplers (Euler a, "
            "DPM2 a) draw their step noise from seed + this after the starting noise. 0 = off.",
            flags=("--ensd",),
            infotext="ENSD",
            range=(0, MAX_SEED),
        ),
    )


@dataclass
class MachineOptions(SeedOptions):
    """SDXL refiner, few-step presets, memory and speed (engine/memory.py, presets.py)."""

    preset: str = field(
        default="auto",
        metadata=_option(
            "Few-step model defaults (steps, CFG, sampler): auto detects SD-Turbo, SDXL-Turbo, LCM, Lightning and "
            "Hyper-SD; none never applies one; or name one to force it. Options you set win.",
            flags=("--preset",),
            choices=PRESET_CHOICES,
        ),
    )
    refiner: str = field(
        default="",
        metadata=_option(
            "SDXL refiner model (hub id, folder or .safetensors) that paints the last steps; empty for none.",
            flags=("--refiner",),
            infotext="Refiner",
            kernel=True,
        ),
    )
    refiner_switch: float = field(
        default=0.8,
        metadata=_option(
            "Fraction of the steps after which the refiner takes over.",
            flags=("--refiner-switch",),
            infotext="Refiner switch at",
            range=(0.01, 1.0),
            step=0.01,
        ),
    )
    offload: str = field(
        default="auto",
        metadata=_option(
            "GPU memory: none (all on the GPU), model (one model at a time on the GPU), sequential (layer by "
            "layer: least memory, slowest), auto (from the free VRAM and the model).",
            flags=("--offload",),
            choices=OFFLOAD_MODES,
            kernel=True,
        ),
    )
    vae_tiling: str = field(
        default="auto",
        metadata=_option(
            "Decode the picture in tiles to save memory: auto (over about 1536x1536, and to retry after an "
            "out-of-memory in the VAE), on, off.",
            flags=("--vae-tiling",),
            choices=VAE_TILING_MODES,
        ),
    )
    attention: str = field(
        default="sdpa",
        metadata=_option(
            "Attention: sdpa (PyTorch's fused kernel, fast) or slicing (less memory, slower).",
            flags=("--attention",),
            choices=ATTENTION_MODES,
            kernel=True,
        ),
    )
    token_merging: float = field(
        default=0.0,
        metadata=_option(
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
        metadata=_option(
            "Token merging ratio of the hires pass; 0 = the one above.",
            flags=("--tome-hr",),
            infotext="Token merging ratio hr",
            range=(0.0, 0.9),
            step=0.05,
        ),
    )
    fast: bool = field(
        default=False,
        metadata=_option(
            "Fast mode for big GPUs: channels_last, fused QKV projections and torch.compile of the UNet's repeated "
            "blocks (the first picture at each size compiles).",
            flags=("--fast",),
            kernel=True,
        ),
    )
