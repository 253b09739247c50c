"""A1111's Extras tab upscale: one picture enlarged by an upscaler, optionally blended with a second one.

The arithmetic is A1111's (``scripts/postprocessing_upscale.py`` and ``modules/upscaler.py``), so a picture
upscaled here has the size and the ``Postprocess …`` keys the Extras tab gives it:

- the target is the scaled size rounded down to a multiple of 8; "scale to" ``W×H`` scales by the larger ratio and
  then crops the centre to ``W×H`` ("Crop to fit");
- a model runs until the picture covers the target (three times at most; once even at scale 1), then Lanczos
  brings it to the target; ``Lanczos`` and ``Nearest`` resize once to the scaled size first;
- a second upscaler runs on the original picture, and its result is blended over the first with
  ``Image.blend(first, second, visibility)``.

Models are the hires fix's (`upscalers.Upscaler`: ESRGAN, Real-ESRGAN RRDB and compact networks, tiled), kept
loaded between calls: at most two, the two of one blend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from PIL import Image

from .upscalers import OVERLAP, TILE, Upscaler

RESAMPLERS = {"Lanczos": Image.LANCZOS, "Nearest": Image.NEAREST}
"""The upscalers that need no model file, as A1111 names them."""
NONE = "None"
"""A1111's name for no second upscaler."""
MAX_SCALE = 8.0
"""The Extras tab's largest "Resize" (its slider stops at 8)."""
_held: dict[str, Upscaler] = {}


@dataclass(frozen=True)
class UpscaleSettings:
    """What the Extras tab asks: upscaler 1 and 2, visibility, and "scale by" or "scale to" (with crop)."""

    upscaler: str = "R-ESRGAN 4x+"
    scale: float = 2.0
    size: tuple[int, int] | None = None
    crop: bool = True
    upscaler_2: str = NONE
    visibility: float = 0.0
    allow_pickle: bool = False
    tile: int = TILE

    def check(self) -> UpscaleSettings:
        """The settings, if every value is in range (the models are found later, when they load).

        Raises
        ------
        ValueError
            One line naming the value and what is allowed.
        """
        if self.upscaler == NONE:
            raise ValueError("upscaler: 'None' upscales nothing; name a model, Lanczos or Nearest")
        if self.size is None and not 0.05 <= self.scale <= MAX_SCALE:
            raise ValueError(f"scale: {self.scale:g} is outside 0.05–{MAX_SCALE:g} (the Extras tab's range)")
        if self.size is not None and not all(8 <= side <= 8192 and side % 8 == 0 for side in self.size):
            width, height = self.size
            raise ValueError(f"size: {width}x{height}: each side 8–8192 and a multiple of 8 (as the Extras tab's)")
        if not 0.0 <= self.visibility <= 1.0:
            raise ValueError(f"visibility: {self.visibility:g} is outside 0–1")
        if self.visibility > 0 and self.upscaler_2 == NONE:
            raise ValueError("visibility: it is how much of --upscaler-2 shows, and no second upscaler is named")
        if self.tile < 32:
            raise ValueError(f"tile: {self.tile} is too small (at least 32 input pixels)")
        return self


def scale_and_target(width: int, height: int, settings: UpscaleSettings) -> tuple[float, int, int]:
    """The factor and the size A1111 upscales a ``width`` × ``height`` picture to (before any crop)."""
    scale = settings.scale
    if settings.size is not None:
        scale = max(settings.size[0] / width, settings.size[1] / height)
    # rounded to 1e-6 first, so 20 × (48/20) is 48 and not 47.999…, which A1111 would round down to 40
    return scale, int(round(width * scale, 6)) // 8 * 8, int(round(height * scale, 6)) // 8 * 8


def load_upscaler(name: str, option: str, allow_pickle: bool, notice: Callable[[str], None]) -> Upscaler:
    """The model upscaler ``name`` (a file stem in ``ESRGAN/`` or A1111's name of a built-in one), kept loaded.

    Raises
    ------
    ValueError
        One line: not in the models folder, a pickle without ``allow_pickle``, a network we cannot run.
    """
    import torch

    from .. import library
    from .network_state import file_stamp

    found = library.find_upscaler(name)
    if found is None:
        raise ValueError(library.upscaler_missing_message(name, (*RESAMPLERS, NONE), option))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    held = _held.get(name)
    if held is None or held.stamp != (str(found.path), *file_stamp(found.path)):
        notice(f"loading upscaler {found.name}…")
        dtype = torch.float16 if device.type == "cuda" else torch.float32
        held = Upscaler(found.path, allow_pickle, device, dtype, option)
        _held[name] = held
        for other in list(_held)[:-2]:  # the two of one blend stay; older ones go
            del _held[other]
    return held


def enlarge(
    image: Image.Image, model: Upscaler | str, scale: float, width: int, height: int, tile: int = TILE
) -> Image.Image:
    """One upscaler's result at exactly ``width`` × ``height``, as A1111's ``Upscaler.upscale`` makes it."""
    if isinstance(model, str):
        image = image.resize((int(image.width * scale), int(image.height * scale)), RESAMPLERS[model])
    else:
        for step in range(3):
            if image.width >= width and image.height >= height and (step > 0 or scale != 1):
                break
            before = image.size
            image = model.upscale_once(image, tile=tile, overlap=OVERLAP)
            if image.size == before:
                break
    if image.size != (width, height):
        image = image.resize((width, height), Image.LANCZOS)
    return image


def number(value: float) -> str:
    """A value as A1111's infotext writes a slider's number: ``2``, ``2.5``."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def upscale(
    image: Image.Image, settings: UpscaleSettings, notice: Callable[[str], None] = print
) -> tuple[Image.Image, dict[str, str]]:
    """The picture upscaled as the Extras tab does it, and the ``Postprocess …`` keys it writes.

    Raises
    ------
    ValueError
        One line, before any network runs: a bad value or an upscaler that is not there.
    """
    settings.check()
    models = {}
    for option, name in (("upscaler", settings.upscaler), ("upscaler_2", settings.upscaler_2)):
        if name not in RESAMPLERS and name != NONE and name not in models:
            models[name] = load_upscaler(name, option, settings.allow_pickle, notice)
    source = image.convert("RGB")
    scale, width, height = scale_and_target(source.width, source.height, settings)
    info: dict[str, str] = {}
    if settings.size is not None:
        info["Postprocess upscale to"] = "{}x{}".format(*settings.size)
    else:
        info["Postprocess upscale by"] = number(settings.scale)
    if settings.size is not None and settings.crop:
        info["Postprocess crop to"] = "{}x{}".format(*settings.size)
    out = _one(source, models.get(settings.upscaler, settings.upscaler), scale, width, height, settings)
    info["Postprocess upscaler"] = settings.upscaler
    if settings.upscaler_2 != NONE and settings.visibility > 0:
        second = _one(source, models.get(settings.upscaler_2, settings.upscaler_2), scale, width, height, settings)
        out = Image.blend(out, second, settings.visibility)
        info["Postprocess upscaler 2"] = settings.upscaler_2
        info["Postprocess upscaler 2 visibility"] = number(settings.visibility)
    return out, info


def _one(
    source: Image.Image, model: Any, scale: float, width: int, height: int, settings: UpscaleSettings
) -> Image.Image:
    """One upscaler's picture, cropped to the centre of "scale to"'s size when asked (black where it falls short)."""
    out = enlarge(source, model, scale, width, height, settings.tile)
    if settings.size is not None and settings.crop:
        cropped = Image.new("RGB", settings.size)
        cropped.paste(out, (settings.size[0] // 2 - out.width // 2, settings.size[1] // 2 - out.height // 2))
        out = cropped
    return out
