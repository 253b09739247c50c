"""The pictures an upscale is asked for: a file, a folder, a URL, ``_``, a notebook variable, or objects.

Each comes with the text chunks it already carries (A1111's ``parameters``, our JSON recipe): the Extras tab keeps
them in the upscaled PNG and adds its own. A picture painted in this kernel and not saved gets its infotext.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from ..painting.inputs import load_picture
from ..recipe.result import Outcome, PaintResult

PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
_NAME = re.compile(r"^\{?([A-Za-z_]\w*)\}?$")
_ALLOWED = "a file, a folder, a URL, _ (the last result) or a notebook variable holding a picture or a result"


@dataclass
class Source:
    """One picture to upscale, its label (file name, ``_``, the variable) and the text chunks it carries."""

    label: str
    image: Image.Image
    chunks: dict[str, str] = field(default_factory=dict)


def _chunks(image: Image.Image) -> dict[str, str]:
    """The text chunks PIL read from a file (``parameters``, ``jupyter_sd``, …): the text values of its info."""
    return {key: value for key, value in getattr(image, "info", {}).items() if isinstance(value, str)}


def _open(path: Path, label: str) -> Source:
    image, _ = load_picture("upscale", str(path))
    return Source(label, image, _chunks(image))


def from_object(value: Any, label: str) -> list[Source]:
    """Pictures from a Python object: a PIL image, a result (each of its pictures), or a list of those.

    Raises
    ------
    ValueError
        One line, for an object that holds no picture.
    """
    if isinstance(value, Image.Image):
        value.load()
        return [Source(label, value, _chunks(value))]
    if isinstance(value, Outcome):
        sources = []
        for index, image in enumerate(value.images):
            path = value.paths[index] if index < len(value.paths) else None
            if path is not None and Path(path).is_file():
                sources.append(_open(Path(path), str(path)))
            else:
                chunks = {"parameters": value.infotext(index)} if isinstance(value, PaintResult) else {}
                sources.append(Source(f"{label}[{index}]", image, chunks))
        if not sources:
            raise ValueError(f"upscale: {label} holds no pictures")
        return sources
    if isinstance(value, (list, tuple)) and value:
        return [source for index, item in enumerate(value) for source in from_object(item, f"{label}[{index}]")]
    if isinstance(value, (str, Path)):
        return from_spec(str(value))
    raise ValueError(f"upscale: {label} holds a {type(value).__name__}, not a picture (allowed: {_ALLOWED})")


def from_spec(spec: str, namespace: Mapping[str, Any] | None = None, last: Outcome | None = None) -> list[Source]:
    """The pictures a command line names.

    Raises
    ------
    ValueError
        One line: nothing there, a folder without pictures, an unknown variable, nothing painted yet for ``_``.
    """
    namespace = namespace or {}
    text = spec.strip()
    if text == "_":
        shown = namespace.get("_")
        if isinstance(shown, (Image.Image, Outcome)):
            return from_object(shown, "_")
        if last is not None and last.images:
            return from_object(last, "_")
        raise ValueError("upscale: _ is the last result, but nothing has been painted in this kernel yet")
    path = Path(text).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in PICTURE_SUFFIXES and p.is_file())
        if not files:
            raise ValueError(f"upscale: the folder {text} holds no pictures ({', '.join(PICTURE_SUFFIXES)})")
        return [_open(file, str(file)) for file in files]
    if path.is_file() or text.startswith(("http://", "https://")):
        return [_open(path, text)] if path.is_file() else [_url(text)]
    name = _NAME.match(text)
    if name and name.group(1) in namespace:
        return from_object(namespace[name.group(1)], name.group(1))
    if name and text.startswith("{"):
        raise ValueError(f"upscale: {{{name.group(1)}}} is not a notebook variable")
    raise ValueError(f"upscale: no such file, folder or variable '{text}' (allowed: {_ALLOWED})")


def _url(url: str) -> Source:
    image, _ = load_picture("upscale", url)
    return Source(url, image, _chunks(image))
