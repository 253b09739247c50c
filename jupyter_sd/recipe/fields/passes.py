"""The options of the passes after the first: img2img and inpainting (the picture and mask to start from), hires fix."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..samplers import SAMPLERS, SCHEDULE_SUBSTITUTES, SCHEDULES, SUBSTITUTES
from .base import (
    BUILT_IN_UPSCALERS,
    INPAINT_AREAS,
    MASKED_CONTENT,
    MAX_STEPS,
    RESIZE_MODES,
    SAME_SAMPLER,
    SAME_SCHEDULE,
    option,
)
from .picture import PictureOptions


@dataclass
class InputOptions(PictureOptions):
    """img2img and inpainting: the picture to start from and the mask (engine/modes.py)."""

    init: str = field(
        default="",
        metadata=option(
            "Start from this picture (img2img): a file, a URL, _ (the last result) or {name} of a notebook variable.",
            flags=("--init",),
        ),
    )
    strength: float = field(
        default=0.75,
        metadata=option(
            "How much of the init picture to repaint: 0 keeps it, 1 paints anew.",
            flags=("--strength", "--denoise"),
            infotext="Denoising strength",
            range=(0.0, 1.0),
            step=0.01,
        ),
    )
    resize_mode: str = field(
        default="Just resize",
        metadata=option(
            "How an init picture of another size is fitted to the size painted.",
            flags=("--resize-mode",),
            choices=RESIZE_MODES,
        ),
    )
    mask: str = field(
        default="",
        metadata=option(
            "Inpaint: repaint where this mask is white (a file, URL, _ or {name}; an RGBA init's alpha works too).",
            flags=("--mask",),
        ),
    )
    mask_blur: int = field(
        default=4,
        metadata=option(
            "Blur of the mask's edge in pixels.", flags=("--mask-blur",), infotext="Mask blur", range=(0, 64)
        ),
    )
    inpaint_area: str = field(
        default="whole",
        metadata=option(
            "Inpaint the whole picture, or only the masked area at full resolution (A1111's 'Only masked').",
            flags=("--inpaint-area",),
            infotext="Inpaint area",
            choices=INPAINT_AREAS,
        ),
    )
    padding: int = field(
        default=32,
        metadata=option(
            "With --inpaint-area masked: pixels of context around the mask.",
            flags=("--padding",),
            infotext="Masked area padding",
            range=(0, 256),
        ),
    )
    masked_content: str = field(
        default="original",
        metadata=option(
            "What the masked area starts from.",
            flags=("--masked-content",),
            infotext="Masked content",
            choices=MASKED_CONTENT,
        ),
    )
    invert_mask: bool = field(
        default=False,
        metadata=option("Repaint where the mask is black instead.", flags=("--invert-mask",), infotext="Mask mode"),
    )
    outpaint: str = field(
        default="",
        metadata=option(
            "Outpaint: grow the init by these pixels and paint the new border: LEFT,RIGHT,TOP,BOTTOM, or one number "
            "for every side (--outpaint-all 64).",
            flags=("--outpaint", "--outpaint-all"),
            infotext="Outpaint",
        ),
    )
    outpaint_blend: int = field(
        default=16,
        metadata=option(
            "With --outpaint: how far (pixels) the repainted band reaches into the old picture, to join the border.",
            flags=("--outpaint-blend",),
            infotext="Outpaint blend",
            range=(0, 512),
        ),
    )
    outpaint_noise: bool = field(
        default=False,
        metadata=option(
            "With --outpaint: start the new border from noise matched to the picture's colours and texture "
            "(Outpainting mk2's fill) instead of its stretched edges.",
            flags=("--outpaint-noise",),
            infotext="Outpaint noise",
        ),
    )
    controlnet: tuple = field(
        default=(),
        metadata=option(
            "ControlNet units as sd-webui-controlnet writes them: 'Module: canny, Model: NAME, Weight: 0.8, "
            "Image: FILE' (repeat the flag for more units, up to 3 or the controlnet_units setting; from Python "
            "a list of dicts with its API field names). Models from the models folder's ControlNet/, a path or a hub "
            "id; SD1.5, SD2 and SDXL (Union/ProMax too: 'Union Control Type: Depth'), in txt2img, img2img, inpaint, "
            "hires, the refiner and --sd-upscale (a unit without an image takes the init there). A unit's "
            "'Mask: FILE' (API effective_region_mask) limits it to the mask's white area. 'Advanced Weighting: [1, "
            "0.5, …]' (API advanced_weighting) weights each block instead of Weight: a ControlNet's residuals (13 on "
            "SD1.5, 10 on SDXL), an IP-Adapter's cross-attention transformers (16 on SD1.5, 11 on SDXL).",
            flags=("--controlnet",),
        ),
    )
    save_detected: bool = field(
        default=False,
        metadata=option(
            "Save each ControlNet unit's detected map (its preprocessor's output) beside the picture, as "
            "NNNNN-SEED-control0.png, and a pose module's OpenPose JSON as NNNNN-SEED-control0.json (always on "
            "the result as detected_maps and detected_poses).",
            flags=("--save-detected",),
        ),
    )
    controlnet_image: str = field(
        default="",
        metadata=option(
            "Pictures for ControlNet units that have none (a pasted recipe's units): 'N=FILE' for unit N "
            "(several as '0=a.png,1=b.png'), or one FILE for every unit without a picture.",
            flags=("--controlnet-image",),
        ),
    )


@dataclass
class HiresOptions(InputOptions):
    """Hires fix: paint small, upscale, a second denoising pass (engine/modes.py)."""

    hires: float = field(
        default=0.0,
        metadata=option(
            "Hires fix: paint, upscale by this factor and denoise again (0 = off).",
            flags=("--hires",),
            infotext="Hires upscale",
            range=(0.0, 8.0),
            step=0.05,
        ),
    )
    hires_size: str = field(
        default="",
        metadata=option(
            "Hires fix to this size (WxH) instead of a factor.", flags=("--hires-size",), infotext="Hires resize"
        ),
    )
    hires_steps: int = field(
        default=0,
        metadata=option(
            "Steps of the hires pass (0 = same as --steps).",
            flags=("--hires-steps",),
            infotext="Hires steps",
            range=(0, MAX_STEPS),
        ),
    )
    hires_denoise: float = field(
        default=0.7,
        metadata=option(
            "Denoising strength of the hires pass.", flags=("--hires-denoise",), range=(0.0, 1.0), step=0.01
        ),
    )
    hires_upscaler: str = field(
        default="Latent",
        metadata=option(
            "How the first pass is enlarged: a latent mode, an image mode (decode, resize, encode), or an upscaler "
            "model from the models folder's ESRGAN/ by its name (4x-UltraSharp, R-ESRGAN 4x+, …).",
            flags=("--hires-upscaler",),
            infotext="Hires upscaler",
            choices=BUILT_IN_UPSCALERS,
            models="upscaler",
        ),
    )
    hires_sampler: str = field(
        default=SAME_SAMPLER,
        metadata=option(
            "Sampler of the hires pass.",
            flags=("--hires-sampler",),
            infotext="Hires sampler",
            choices=(SAME_SAMPLER, *SAMPLERS),
            also=tuple(SUBSTITUTES),
        ),
    )
    hires_schedule: str = field(
        default=SAME_SCHEDULE,
        metadata=option(
            "Schedule type of the hires pass.",
            flags=("--hires-schedule",),
            infotext="Hires schedule type",
            choices=(SAME_SCHEDULE, *SCHEDULES),
            also=tuple(SCHEDULE_SUBSTITUTES),
        ),
    )
    hires_guidance: float = field(
        default=0.0,
        metadata=option(
            "CFG scale of the hires pass; 0 = the first pass's.",
            flags=("--hires-cfg",),
            infotext="Hires CFG Scale",
            range=(0.0, 30.0),
            step=0.5,
        ),
    )
    hires_prompt: str = field(
        default="",
        metadata=option(
            "Prompt of the hires pass (default: the prompt).", flags=("--hires-prompt",), infotext="Hires prompt"
        ),
    )
