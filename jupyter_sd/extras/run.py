"""`upscale()`: A1111's Extras tab upscale on pictures, saved beside the notebook with the Extras text.

Each upscaled picture is written as the next ``NNNNN-upscale.png`` of the output folder (`painting.store`), one
at a time, so an interrupt keeps what is done. As A1111 does, the PNG keeps the text chunks of the picture it came
from (its ``parameters``: the recipe that painted it) and adds ``postprocessing`` and ``extras`` with the Extras
keys (``Postprocess upscale by: 2, Postprocess upscaler: R-ESRGAN 4x+``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

from PIL.PngImagePlugin import PngInfo

from ..painting import session as painter
from ..painting.store import save_image
from ..recipe.infotext import quote_value
from .result import UpscaleResult
from .sources import Source, from_object, from_spec

EXTRAS_KEYS = ("postprocessing", "extras")
"""The PNG text chunks A1111's Extras tab writes its keys into (both hold the same line)."""
TAG = "upscale"


def extras_text(info: Mapping[str, str]) -> str:
    """The Extras keys as A1111 writes them: ``Key: value`` joined by ``, ``, values quoted as in generation data."""
    return ", ".join(f"{key}: {quote_value(value)}" for key, value in info.items())


def png_chunks(source: Source, text: str) -> PngInfo:
    """The source's own text chunks (its recipe), then the Extras text."""
    info = PngInfo()
    for key, value in source.chunks.items():
        if key not in EXTRAS_KEYS:
            info.add_text(key, value)
    for key in EXTRAS_KEYS:
        info.add_text(key, text)
    return info


def parse_size(size: Any) -> tuple[int, int] | None:
    """``"1024x768"`` or ``(1024, 768)`` as a pair (None stays None).

    Raises
    ------
    ValueError
        For text that is not ``WxH``.
    """
    if size is None or isinstance(size, tuple):
        return size
    width, sep, height = str(size).lower().partition("x")
    if not sep or not width.strip().isdigit() or not height.strip().isdigit():
        raise ValueError(f"size: '{size}' is not WIDTHxHEIGHT (e.g. 2048x2048)")
    return int(width), int(height)


def upscale(
    image: Any,
    upscaler: str = "R-ESRGAN 4x+",
    scale: float = 2.0,
    *,
    size: Any = None,
    crop: bool = True,
    upscaler_2: str = "None",
    visibility: float | None = None,
    outdir: str | None = None,
    save: bool = True,
    allow_pickle: bool = False,
    tile: int = 192,
    user_ns: Mapping[str, Any] | None = None,
    notice: Callable[[str], None] = print,
) -> UpscaleResult:
    """Upscale pictures as A1111's Extras tab does: ``upscale("00012-42.png", "4x-UltraSharp", 2)``.

    `image` is a file, a folder (each picture in it), a URL, ``"_"`` (the last result), a notebook variable's name,
    or an object (PIL image, a result, a list). `size` ("scale to" ``WxH``) wins over `scale`, cropping to fit
    unless ``crop=False``. `upscaler_2` is blended over the first with `visibility` (0.5 when a second is named).

    Returns
    -------
    UpscaleResult
        The pictures, their files and the Extras text of each.

    Raises
    ------
    ValueError
        One line, before anything is written: a bad value, an upscaler not there, no such picture.
    """
    from ..engine.extras import NONE, UpscaleSettings
    from ..engine.extras import upscale as run

    if visibility is None:
        visibility = 0.5 if upscaler_2 != NONE else 0.0
    settings = UpscaleSettings(
        upscaler=upscaler,
        scale=float(scale),
        size=parse_size(size),
        crop=crop,
        upscaler_2=upscaler_2 or NONE,
        visibility=float(visibility),
        allow_pickle=allow_pickle,
        tile=int(tile),
    ).check()
    namespace = user_ns if user_ns is not None else painter.user_namespace()
    last = painter.get_engine().last_result
    sources = from_spec(image, namespace, last) if isinstance(image, str) else from_object(image, "image")
    folder = Path(outdir).expanduser() if outdir else painter.output_folder(painter.new_request(), namespace)
    result = UpscaleResult()
    for source in sources:
        picture, info = run(source.image, settings, notice)
        text = extras_text(info)
        result.images.append(picture)
        result.sources.append(source.label)
        result.infotexts.append(text)
        if save:
            result.paths.append(save_image(picture, folder, TAG, png_chunks(source, text)))
    if save and len(sources) > 1:
        notice(f"upscaled {len(sources)} pictures into {folder}")
    return result
