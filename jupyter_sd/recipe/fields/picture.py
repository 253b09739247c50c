"""What to paint, with which model, sampler and conditioning, and where it goes: the options every picture has."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..samplers import SAMPLERS, SCHEDULE_SUBSTITUTES, SCHEDULES, SUBSTITUTES
from .base import DTYPES, MAX_STEPS, PREVIEW_MODES, SEED_LIMIT, option


@dataclass
class PictureOptions:
    """What to paint, with which model, sampler and conditioning, and where it goes."""

    prompt: str = field(default="", metadata=option("What to paint (the cell body in %%paint)."))
    negative_prompt: str = field(
        default="", metadata=option("What to keep out of the picture.", flags=("--negative", "--neg"))
    )
    steps: int = field(
        default=20, metadata=option("Denoising steps.", flags=("--steps",), infotext="Steps", range=(1, MAX_STEPS))
    )
    guidance: float = field(
        default=7.0,
        metadata=option(
            "Classifier-free guidance (CFG) scale: how strictly to follow the prompt.",
            flags=("--guidance", "--cfg"),
            infotext="CFG scale",
            range=(0.0, 30.0),
            step=0.5,
        ),
    )
    distilled_cfg: float = field(
        default=3.5,
        metadata=option(
            "Flux's and Flux.2 [dev]'s distilled guidance scale (Forge's 'Distilled CFG Scale'); CFG stays 1 on Flux "
            "unless set.",
            flags=("--distilled-cfg",),
            infotext="Distilled CFG Scale",
            range=(0.0, 30.0),
            step=0.5,
        ),
    )
    shift: float = field(
        default=0.0,
        metadata=option(
            "Flow models' timestep shift (Forge's 'Shift'), s·σ/(1+(s−1)·σ); on Flux it replaces the size-dependent "
            "shift. 0 = the model's own.",
            flags=("--shift",),
            infotext="Shift",
            range=(0.0, 100.0),
            step=0.05,
        ),
    )
    seed: int = field(
        default=-1,
        metadata=option(
            "Random seed; -1 picks one (the seed used is recorded). Image k of a batch uses seed+k.",
            flags=("--seed",),
            infotext="Seed",
            range=(-1, SEED_LIMIT),
        ),
    )
    width: int | None = field(
        default=None,
        metadata=option(
            "Image width in pixels, a multiple of 8 (default: the model's native size).",
            flags=("--width", "-W"),
            range=(8, 4096),
            step=8,
        ),
    )
    height: int | None = field(
        default=None,
        metadata=option(
            "Image height in pixels, a multiple of 8 (default: the model's native size).",
            flags=("--height", "-H"),
            range=(8, 4096),
            step=8,
        ),
    )
    sampler: str = field(
        default="DPM++ 2M",
        metadata=option(
            "Sampler, by its AUTOMATIC1111 name (old names such as 'DPM++ 2M Karras' set the schedule too; Forge's "
            "and SD.Next's are read, and one with no diffusers equivalent paints with the closest, named).",
            flags=("--sampler",),
            infotext="Sampler",
            choices=tuple(SAMPLERS),
            also=tuple(SUBSTITUTES),
        ),
    )
    schedule: str = field(
        default="Automatic",
        metadata=option(
            "Noise schedule type (Automatic = the sampler's usual one).",
            flags=("--schedule",),
            infotext="Schedule type",
            choices=tuple(SCHEDULES),
            also=tuple(SCHEDULE_SUBSTITUTES),
        ),
    )
    n: int = field(
        default=1, metadata=option("Images per prompt (one batch).", flags=("-n", "--batch-size"), range=(1, 16))
    )
    repeat: int = field(
        default=1, metadata=option("How many batches to paint one after another.", flags=("--repeat",), range=(1, 100))
    )
    combinatorial: bool = field(
        default=False,
        metadata=option(
            "A prompt with {a|b} variants or __wildcards__ paints one picture per combination (sd-dynamic-prompts' "
            "combinatorial mode; --repeat paints the set again) instead of one random pick per picture.",
            flags=("--combinatorial",),
        ),
    )
    max_combinations: int = field(
        default=100,
        metadata=option(
            "With --combinatorial: paint at most this many combinations (the first, in order).",
            flags=("--max-combinations",),
            range=(1, 1000),
        ),
    )
    model: str = field(
        default="",
        metadata=option(
            "Model: a hub id, a local diffusers folder, a .safetensors or .gguf file (default: the kernel's model).",
            flags=("--model", "-m"),
            infotext="Model",
            kernel=True,
        ),
    )
    model_config: str = field(
        default="",
        metadata=option(
            "For a single file (.safetensors, .gguf): a diffusers folder or hub id with its configs, and the weights "
            "of the parts the file lacks (a Flux transformer file: VAE, text encoders).",
            flags=("--model-config",),
            kernel=True,
        ),
    )
    vae: str = field(
        default="",
        metadata=option(
            "External VAE: a name in the models folder's VAE/, or a .safetensors file or diffusers folder "
            "(default: the model's own).",
            flags=("--vae",),
            infotext="VAE",
        ),
    )
    clip_skip: int = field(
        default=1,
        metadata=option(
            "Clip skip, A1111's numbering: use the text encoder's N-th last layer (1 = the last; 2 for most anime "
            "models). SDXL ignores it, as A1111 does.",
            flags=("--clip-skip",),
            infotext="Clip skip",
            range=(1, 12),
        ),
    )
    emphasis: str = field(
        default="Original",
        metadata=option(
            "A1111's emphasis mode: Original (weights, rescaled to the original mean), No norm (weights only), "
            "Ignore (weights ignored) or None (brackets and BREAK are plain text).",
            flags=("--emphasis",),
            infotext="Emphasis",
            choices=("Original", "No norm", "Ignore", "None"),
        ),
    )
    pad_conds: bool = field(
        default=False,
        metadata=option(
            "Pad the shorter of prompt and negative prompt with empty chunks (one UNet batch) instead of running "
            "the two halves separately, as A1111's 'pad prompt/negative prompt to be same length'.",
            flags=("--pad-conds",),
            infotext="Pad conds",
        ),
    )
    preview: str = field(
        default="auto",
        metadata=option(
            "Live preview: auto, latent2rgb, taesd, full or none.", flags=("--preview",), choices=PREVIEW_MODES
        ),
    )
    preview_interval: float = field(
        default=0.2,
        metadata=option(
            "Seconds between live preview frames at least.", flags=("--preview-interval",), range=(0.0, 60.0), step=0.05
        ),
    )
    outdir: str = field(
        default="",
        metadata=option(
            "Folder for the images (default: a folder beside the notebook).", flags=("--outdir", "-o"), kernel=True
        ),
    )
    save: bool = field(
        default=True, metadata=option("Save the images as PNG files with their recipe.", flags=("--save",))
    )
    save_incomplete: bool = field(
        default=False, metadata=option("Also save an interrupted picture.", flags=("--save-incomplete",))
    )
    device: str = field(
        default="auto", metadata=option("Device: auto, cuda, cuda:N, mps or cpu.", flags=("--device",), kernel=True)
    )
    dtype: str = field(
        default="auto",
        metadata=option(
            "Weights dtype: auto, float16, bfloat16 or float32.", flags=("--dtype",), choices=DTYPES, kernel=True
        ),
    )
    allow_pickle: bool = field(
        default=False,
        metadata=option(
            "Allow loading pickle checkpoints (.ckpt/.pt/.bin), which can run arbitrary code.",
            flags=("--allow-pickle",),
            kernel=True,
        ),
    )
