"""`PaintRequest`: every generation option, declared once.

Each option is one dataclass field whose metadata carries its help text, range or choices, command-line flag and
A1111 infotext key. The magic's parser, the CLI, the widget panel and the metadata writer are all generated from
these fields (STYLE P3), so an option cannot drift between front ends.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from dataclasses import dataclass, field, fields
from typing import Any

from . import library
from .infotext import format_infotext, order_params, parse_infotext
from .presets import PRESET_CHOICES
from .samplers import SAMPLERS, SCHEDULES

PREVIEW_MODES = ("auto", "latent2rgb", "taesd", "full", "none")
DTYPES = ("auto", "float16", "bfloat16", "float32")
_DTYPE_ALIASES = {"fp16": "float16", "half": "float16", "bf16": "bfloat16", "fp32": "float32", "float": "float32"}
_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?|xpu(:\d+)?)$")
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
) -> dict[str, Any]:
    """Field metadata: the one place an option's help, flags, range and infotext key are declared."""
    return {
        "help": help,
        "flags": flags,
        "infotext": infotext,
        "choices": choices,
        "range": range,
        "step": step,
        "kernel": kernel,
    }


@dataclass
class PaintRequest:
    """One picture's recipe: what to paint and how, validated before any model work starts."""

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

    # -- img2img and inpainting (engine/modes.py) ---------------------------------------------------------------
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

    # -- hires fix --------------------------------------------------------------------------------------------------
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
            "How the first pass is enlarged: a latent mode, or an image mode (decode, resize, encode).",
            flags=("--hires-upscaler",),
            infotext="Hires upscaler",
            choices=(*LATENT_UPSCALERS, *IMAGE_UPSCALERS),
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
    hires_prompt: str = field(
        default="",
        metadata=_option("Prompt of the hires pass (default: the prompt).", flags=("--hires-prompt",), infotext="Hires prompt"),
    )

    # -- variation seeds (engine/seeds.py) ---------------------------------------------------------------------------
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

    # -- SDXL refiner, few-step presets, memory and speed (engine/memory.py, presets.py) -----------------------------
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
    fast: bool = field(
        default=False,
        metadata=_option(
            "Fast mode for big GPUs: channels_last, fused QKV projections and torch.compile of the UNet's repeated "
            "blocks (the first picture at each size compiles).",
            flags=("--fast",),
            kernel=True,
        ),
    )

    # -- derived values ---------------------------------------------------------------------------------------

    @property
    def size(self) -> str:
        """The size as A1111 writes it (``WxH``), or empty when the model's native size applies."""
        return f"{self.width}x{self.height}" if self.width and self.height else ""

    def replace(self, **changes: Any) -> PaintRequest:
        """Return a copy with some options changed (values are coerced, not validated)."""
        return dataclasses.replace(self, **coerce_options(changes))

    def to_dict(self) -> dict[str, Any]:
        """Return every option as a plain JSON-able dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PaintRequest:
        """Build a request from a dict such as `to_dict()` wrote, ignoring keys it does not know."""
        known = {f.name for f in fields(cls)} | {"size"}
        return cls(**coerce_options({k: v for k, v in data.items() if k in known}))

    # -- validation -------------------------------------------------------------------------------------------

    def validate(self) -> PaintRequest:
        """Check every option; raise `ValueError` with one line naming the option, the rule and the value.

        Returns
        -------
        PaintRequest
            ``self``, so calls can be chained.

        Raises
        ------
        ValueError
            On the first invalid option.
        """
        for f in fields(self):
            _check_field(f, getattr(self, f.name))
        if (self.width is None) != (self.height is None):
            msg = f"size: give both width and height (got width={self.width}, height={self.height})"
            raise ValueError(msg)
        if self.width is not None and (self.width % 8 or self.height % 8):
            nearest = f"{_round8(self.width)}x{_round8(self.height)}"
            msg = f"size: width and height must be multiples of 8 (nearest: {nearest}) (got {self.width}x{self.height})"
            raise ValueError(msg)
        if not _DEVICE_RE.match(self.device):
            msg = f"device: must be auto, cpu, mps, cuda or cuda:N (got '{self.device}')"
            raise ValueError(msg)
        self._validate_modes()
        return self

    def _validate_modes(self) -> None:
        """The img2img, inpaint, hires and variation options: what goes with what."""
        if self.mask and not self.init:
            msg = f"mask: needs --init, the picture to repaint (got --mask '{self.mask}' without --init)"
            raise ValueError(msg)
        if self.init and int(self.steps * self.strength) < 1:
            least = math.ceil(100 / self.steps) / 100
            msg = (
                f"strength: with --steps {self.steps} it must be at least {least:g} to paint one step "
                f"(got {_format_number(self.strength)})"
            )
            raise ValueError(msg)
        hires = self.hires > 0 or bool(self.hires_size)
        if getattr(self, "refiner", "") and (hires or self.init or self.variation_strength > 0):
            msg = "refiner: works with plain text-to-image only (not with --init, --hires or a variation seed)"
            raise ValueError(msg)
        if hires and self.init:
            msg = "hires: the hires fix is for text-to-image; with --init, paint at the size you want (--size)"
            raise ValueError(msg)
        if self.hires_size:
            _check_side_pair("hires_size", self.hires_size)
        if hires and self.hires_denoise <= 0:
            msg = "hires_denoise: must be above 0 for a hires pass (got 0)"
            raise ValueError(msg)
        if hires and self.width is not None:
            self.hires_target()
        if self.seed_resize_from:
            _check_side_pair("seed_resize_from", self.seed_resize_from)

    @property
    def mode(self) -> str:
        """Which passes paint this request: ``txt2img``, ``img2img`` or ``inpaint``, then maybe ``hires``."""
        return "inpaint" if self.mask else "img2img" if self.init else "txt2img"

    @property
    def hires_enabled(self) -> bool:
        """Whether a hires pass follows the first pass."""
        return not self.init and (self.hires > 0 or bool(self.hires_size))

    def hires_target(self) -> tuple[int, int, int, int]:
        """A1111's hires size: (width, height) upscaled to, and the pixels cropped off (x, y) to reach `hires_size`.

        With ``--hires-size`` of another aspect the picture is upscaled to cover it, keeping its aspect, and the
        excess is cropped from the latents (half each side, as A1111's ``truncate_x``/``truncate_y``).

        Raises
        ------
        ValueError
            When the hires size passes 4096 pixels a side.
        """
        width, height = self.width or 0, self.height or 0
        truncate_x = truncate_y = 0
        if not self.hires_size:
            to_x, to_y = int(width * self.hires), int(height * self.hires)
        else:
            resize_x, resize_y = parse_size(self.hires_size)
            if width / height < resize_x / resize_y:
                to_x, to_y = resize_x, resize_x * height // width
            else:
                to_x, to_y = resize_y * width // height, resize_y
            truncate_x, truncate_y = to_x - resize_x, to_y - resize_y
        if max(to_x, to_y) > MAX_SIDE:
            msg = f"hires: the hires size must be at most {MAX_SIDE} a side (got {to_x}x{to_y})"
            raise ValueError(msg)
        return to_x, to_y, truncate_x, truncate_y

    # -- A1111 infotext ---------------------------------------------------------------------------------------

    def infotext_params(self, seed: int | None = None, model_name: str | None = None) -> dict[str, Any]:
        """Return the A1111 ``Key: value`` parameters of this request in A1111's order."""
        params: dict[str, Any] = {
            "Steps": self.steps,
            "Sampler": self.sampler,
            "Schedule type": self.schedule,
            "CFG scale": _format_number(self.guidance),
            "Seed": self.seed if seed is None else seed,
        }
        if self.size:
            params["Size"] = self.size
        name = model_name if model_name is not None else self.model
        if name:
            params["Model"] = name
        if self.variation_strength > 0:
            params["Variation seed"] = self.variation_seed
            params["Variation seed strength"] = _format_number(self.variation_strength)
        if self.seed_resize_from:
            params["Seed resize from"] = self.seed_resize_from
        if self.init:
            params["Denoising strength"] = _format_number(self.strength)
        elif self.hires_enabled:
            params["Denoising strength"] = _format_number(self.hires_denoise)
        if self.clip_skip != 1:
            params["Clip skip"] = self.clip_skip
        if self.emphasis != "Original":
            params["Emphasis"] = self.emphasis
        if self.pad_conds:
            params["Pad conds"] = True
        params.update(self._mode_params())
        if self.refiner:
            params["Refiner"] = self.refiner
            params["Refiner switch at"] = _format_number(self.refiner_switch)
        return params

    def _mode_params(self) -> dict[str, Any]:
        """The inpaint and hires keys, written when A1111 writes them and in its order (its processing.py)."""
        params: dict[str, Any] = {}
        if self.mode == "inpaint":
            if self.invert_mask:
                params["Mask mode"] = "Inpaint not masked"
            if self.mask_blur > 0:
                params["Mask blur"] = self.mask_blur
            if self.inpaint_area == "masked":
                params["Inpaint area"] = "Only masked"
                params["Masked area padding"] = self.padding
            if self.masked_content != "original":
                params["Masked content"] = self.masked_content
        if self.hires_enabled:
            if self.hires_prompt and self.hires_prompt != self.prompt:
                params["Hires prompt"] = self.hires_prompt
            if self.hires_size:
                params["Hires resize"] = self.hires_size
            else:
                params["Hires upscale"] = _format_number(self.hires)
            if self.hires_steps:
                params["Hires steps"] = self.hires_steps
            params["Hires upscaler"] = self.hires_upscaler
            if self.hires_sampler not in (SAME_SAMPLER, self.sampler):
                params["Hires sampler"] = self.hires_sampler
        return params

    def to_infotext(
        self, seed: int | None = None, model_name: str | None = None, extra: dict[str, Any] | None = None
    ) -> str:
        """Write this request in AUTOMATIC1111's exact "generation data" format.

        Parameters
        ----------
        seed
            The seed actually used for this image (the request's own seed may be -1 or a batch's first).
        model_name
            The model's short name to record (default: the request's model string).
        extra
            More ``Key: value`` pairs to append (e.g. ``{"Interrupted": "at step 7/20"}``).
        """
        params = self.infotext_params(seed, model_name)
        params.update(extra or {})
        return format_infotext(self.prompt, self.negative_prompt, order_params(params))

    @classmethod
    def from_infotext(cls, text: str, **overrides: Any) -> PaintRequest:
        """Re-create a request from A1111 generation data (as pasted, or read from a PNG)."""
        prompt, negative, params = parse_infotext(text)
        prompt = relink_loras(prompt, params)[0]
        options = {"prompt": prompt, "negative_prompt": negative, **options_from_params(params), **overrides}
        return cls(**coerce_options(options))


# -- option coercion and validation helpers ---------------------------------------------------------------------

_FIELDS = {f.name: f for f in fields(PaintRequest)}
INFOTEXT_KEYS = {f.metadata["infotext"]: f.name for f in fields(PaintRequest) if f.metadata.get("infotext")}


def option_fields() -> tuple[dataclasses.Field, ...]:
    """Return the request's fields: the one declaration every front end is generated from."""
    return fields(PaintRequest)


def field_kind(f: dataclasses.Field) -> str:
    """The option's value type as a name: ``int``, ``float``, ``bool`` or ``str`` (``int | None`` is ``int``)."""
    return str(f.type).replace(" | None", "").replace("Optional[", "").rstrip("]")


def coerce_value(name: str, value: Any) -> Any:
    """Turn a value typed as text (magic line, config, infotext) into the option's type.

    Raises
    ------
    ValueError
        If the text is not a value of that type, naming the option.
    """
    f = _FIELDS.get(name)
    if f is None:
        allowed = ", ".join(_FIELDS)
        hint = difflib.get_close_matches(name, _FIELDS, n=1)
        msg = f"unknown option '{name}' (allowed: {allowed})" + (f". Did you mean '{hint[0]}'?" if hint else "")
        raise ValueError(msg)
    kind = field_kind(f)
    if value is None or not isinstance(value, str):
        if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value
    text = value.strip()
    try:
        if kind == "int":
            if text.lower() in ("", "none", "auto") and f.default is None:
                return None
            return int(float(text)) if re.fullmatch(r"-?\d+(\.0*)?", text) else int(text)
        if kind == "float":
            return float(text)
        if kind == "bool":
            lowered = text.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError
    except ValueError:
        expected = {"int": "a whole number", "float": "a number"}.get(kind, "true or false")
        msg = f"{name}: expected {expected} (got '{text}')"
        raise ValueError(msg) from None
    if name == "dtype":
        return _DTYPE_ALIASES.get(text.lower(), text.lower())
    return text


def coerce_options(options: dict[str, Any]) -> dict[str, Any]:
    """Coerce every value of an options dict (see `coerce_value`).

    ``size`` (``"512x768"``, as ``--size`` and A1111 write it) is accepted wherever options are, and becomes
    ``width`` and ``height``; this is the one place that happens.
    """
    options = dict(options)
    if "size" in options:
        size = options.pop("size")
        if size not in (None, ""):
            options["width"], options["height"] = parse_size(str(size))
    return {name: coerce_value(name, value) for name, value in options.items()}


def _check_field(f: dataclasses.Field, value: Any) -> None:
    meta = f.metadata
    kind = field_kind(f)
    if value is None and f.default is None:
        return
    expected = {"int": int, "float": (int, float), "bool": bool, "str": str}[kind]
    if not isinstance(value, expected) or (kind in ("int", "float") and isinstance(value, bool)):
        msg = f"{f.name}: expected {kind} (got {value!r})"
        raise ValueError(msg)
    if meta["range"] is not None:
        low, high = meta["range"]
        if not low <= value <= high:
            msg = f"{f.name}: must be {_format_number(low)}–{_format_number(high)} (got {_format_number(value)})"
            raise ValueError(msg)
    if meta["choices"] is not None and value not in meta["choices"]:
        allowed = ", ".join(meta["choices"])
        msg = f"{f.name}: unknown '{value}' (allowed: {allowed})"
        hint = difflib.get_close_matches(value, meta["choices"], n=1, cutoff=0.5)
        if not hint:
            hint = [c for c in meta["choices"] if c.lower() == value.lower()]
        raise ValueError(msg + (f". Did you mean '{hint[0]}'?" if hint else ""))


def _check_side_pair(name: str, text: str) -> None:
    """A ``WxH`` option: two multiples of 8, each 8–4096."""
    try:
        width, height = parse_size(text)
    except ValueError:
        msg = f"{name}: expected WIDTHxHEIGHT such as 1024x1024 (got '{text}')"
        raise ValueError(msg) from None
    if not (8 <= width <= MAX_SIDE and 8 <= height <= MAX_SIDE):
        msg = f"{name}: width and height must be 8–{MAX_SIDE} (got {text})"
        raise ValueError(msg)
    if width % 8 or height % 8:
        msg = f"{name}: width and height must be multiples of 8 (got {text})"
        raise ValueError(msg)


def _round8(value: int) -> int:
    return max(8, int(value / 8.0 + 0.5) * 8)


def _format_number(value: float) -> str:
    """Write numbers the way A1111 does: 7 not 7.0, 6.5 stays 6.5."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``WxH`` (e.g. ``512x768``) into width and height.

    Raises
    ------
    ValueError
        If the text is not two whole numbers joined by ``x``.
    """
    match = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if not match:
        msg = f"size: expected WIDTHxHEIGHT such as 512x512 (got '{text}')"
        raise ValueError(msg)
    return int(match.group(1)), int(match.group(2))


_HUB_ID_RE = re.compile(r"^[\w.-]+/[\w.-]+$")


def options_from_params(params: dict[str, str]) -> dict[str, Any]:
    """Map A1111 parameters onto request options, keeping only those we can honour.

    ``Size`` becomes width and height. ``Model`` / ``Model hash`` are looked up in the models folder's
    ``Stable-diffusion/`` (by file stem, then by hash); otherwise ``Model`` is applied only when it names something
    loadable here (the bundled ``tiny`` model or a hub id), and the kernel's model paints (`pasted_notes` says so).
    """
    options: dict[str, Any] = {}
    for key, value in params.items():
        if key == "Size":
            options["width"], options["height"] = parse_size(value)
        elif key in _INFOTEXT_VALUES:
            name, values = _INFOTEXT_VALUES[key]
            if value in values:
                options[name] = values[value]
        elif key in INFOTEXT_KEYS and INFOTEXT_KEYS[key] not in ("model", "refiner"):
            options[INFOTEXT_KEYS[key]] = value
    refiner = _pasted_refiner(params.get("Refiner", ""))
    if refiner:
        options["refiner"] = refiner
    model = _pasted_model(params)
    if model:
        options["model"] = model
    if ("Hires upscale" in params or "Hires resize" in params) and "strength" in options:
        options["hires_denoise"] = options.pop("strength")  # a txt2img picture's strength is its hires pass's
    return options


_INFOTEXT_VALUES = {
    "Inpaint area": ("inpaint_area", {"Only masked": "masked", "Whole picture": "whole"}),
    "Mask mode": ("invert_mask", {"Inpaint not masked": True, "Inpaint masked": False}),
}
"""Infotext keys whose A1111 values are spelled differently from the option's."""


def _pasted_model(params: dict[str, str]) -> str | None:
    """The model a pasted ``Model`` / ``Model hash`` names, if we can load it here."""
    name, model_hash = params.get("Model", "").strip(), params.get("Model hash", "").strip()
    if name == "tiny" or _HUB_ID_RE.match(name):
        return name
    for wanted in (name, model_hash):
        found = library.find_model("checkpoint", wanted, hash_big_files=False) if wanted else None
        if found is not None:
            return str(found.path)
    return None


def _pasted_refiner(value: str) -> str | None:
    """A pasted ``Refiner`` (A1111 writes ``name [hash]``) if it is loadable here: a hub id or in the models folder."""
    name = re.sub(r"\s*\[[0-9a-fA-F]+\]$", "", value.strip())
    if _HUB_ID_RE.match(name):
        return name
    found = library.find_model("checkpoint", name) if name else None
    return str(found.path) if found is not None else None


_KNOWN_KEYS = {"Size", "Model", "Model hash", "Lora hashes", "TI hashes", "VAE hash", "Hashes", "Version", "User"}
"""Keys applied without a field of their own (Size, Model), or ours to recompute (hashes) or say nothing (Version)."""
_HONOURED_VALUES = {"RNG": ("CPU",), "Emphasis": ("Original",)}
"""Keys with no option whose value is what we do anyway (noise from torch's CPU generator; A1111's default emphasis)."""


def ignored_infotext_keys(params: dict[str, str]) -> list[str]:
    """The pasted keys that are neither applied nor known, in the order pasted.

    Applied means an option's field declares the key (``infotext=`` metadata), so a new option stops being listed
    here as soon as its field exists.
    """
    known = set(INFOTEXT_KEYS) | _KNOWN_KEYS
    return [
        key
        for key, value in params.items()
        if key not in known and str(value).strip() not in _HONOURED_VALUES.get(key, ())
    ]


_LORA_TAG = re.compile(r"<(lora|lyco):([^:>]+)([:>])")


def relink_loras(prompt: str, params: dict[str, str]) -> tuple[str, list[str]]:
    """A1111's paste rule: a ``<lora:NAME>`` not in ``Lora/`` is looked up by its pasted ``Lora hashes`` entry.

    Returns
    -------
    tuple
        The prompt with such tags renamed to the local file's name, and one line per renamed tag.
    """
    hashes = {}
    for item in params.get("Lora hashes", "").split(","):
        name, _, value = item.strip().rpartition(":")
        if name.strip() and value.strip():
            hashes[name.strip()] = value.strip()
    notes: list[str] = []
    if not hashes:
        return prompt, notes

    def relink(match: re.Match[str]) -> str:
        name = match.group(2).strip()
        if name not in hashes or library.find_model("lora", name) is not None:
            return match.group(0)
        found = library.find_model("lora", hashes[name], hash_big_files=False)
        if found is None:
            return match.group(0)
        notes.append(f"lora: '{name}' is not in {library.subfolder('lora')}; using {found.name}, which has its hash")
        return f"<{match.group(1)}:{found.name}{match.group(3)}"

    return _LORA_TAG.sub(relink, prompt), notes


def pasted_notes(
    params: dict[str, str], painted_model: str, model_given: bool = False, prompt: str = ""
) -> list[str]:
    """Lines to show after painting from pasted generation data: a model we could not find, keys we ignored.

    Parameters
    ----------
    params
        The pasted ``Key: value`` parameters.
    painted_model
        The short name of the model that painted.
    model_given
        Whether ``--model`` was given too (then the pasted model was overridden on purpose, not missed).
    prompt
        The pasted prompt (for the LoRA found by hash rather than by name, see `relink_loras`).
    """
    notes = relink_loras(prompt, params)[1]
    name, model_hash = params.get("Model", "").strip(), params.get("Model hash", "").strip()
    if (name or model_hash) and not model_given and name != painted_model and _pasted_model(params) is None:
        parts = (f"'{name}'" if name else "", f"(hash {model_hash})" if model_hash else "")
        what = " ".join(part for part in parts if part)
        hints = library.close_matches("checkpoint", name) if name else []
        closest = f" (closest: {', '.join(hints)})" if hints else ""
        if model_hash and not hints:
            closest = " (%paint models hashes the folder once, so big files are found by hash too)"
        notes.append(
            f"model: {what} is not in {library.subfolder('checkpoint')}{closest}; painted with {painted_model} instead"
        )
    refiner = params.get("Refiner", "").strip()
    if refiner and _pasted_refiner(refiner) is None:
        notes.append(f"refiner: '{refiner}' is not in {library.subfolder('checkpoint')}; painted without a refiner")
    ignored = ignored_infotext_keys(params)
    if ignored:
        notes.append(f"ignored from the generation data: {', '.join(ignored)}")
    return notes


# -- a %%paint cell body ------------------------------------------------------------------------------------------


def parse_body(body: str) -> dict[str, Any]:
    """Read a ``%%paint`` cell body: prompt, optional ``Negative prompt:`` part and optional parameters line.

    Returns
    -------
    dict
        Options (``prompt``, ``negative_prompt`` and whatever a trailing A1111 parameters line sets), as text.
    """
    prompt, negative, params = parse_infotext(body)
    options: dict[str, Any] = {"prompt": relink_loras(prompt, params)[0]}
    if negative:
        options["negative_prompt"] = negative
    options.update(options_from_params(params))
    return options
