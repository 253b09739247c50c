"""Turn a request's ``init`` / ``mask`` text into pictures: a file, a URL, ``_`` or ``{name}`` of a notebook variable.

This is front-end work (it reads the notebook's namespace), so it sits beside `painter`, never in the engine: the
engine is handed PIL images. Each picture comes with a record of where it came from (path and sha256) for the
PNG's JSON chunk, so `load_request` can paint an img2img picture again.
"""

from __future__ import annotations

import io
import os
import re
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from ..engine.pictures import Pictures, alpha_mask
from ..library.hashes import file_sha256
from ..recipe.control_units import with_images
from ..recipe.result import PaintResult

OBJECT = "<object>"
"""The ``init`` / ``mask`` text of a picture handed in as a Python object (``paint(init=image)``)."""
ALPHA = "alpha"
"""``--mask alpha``: repaint where the init picture is transparent."""
URL_TIMEOUT = 30
_VARIABLE = re.compile(r"^\{(\w+)\}$")
_ALLOWED = "a file, a URL, _ (the last result) or {name} of a variable holding a PIL image, PaintResult or numpy array"


def _record(path: str | os.PathLike | None) -> dict | None:
    if path is None or not Path(path).is_file():
        return None
    return {"path": str(Path(path).resolve()), "sha256": file_sha256(path)}


def _from_object(option: str, value: Any, label: str) -> tuple[Image.Image, dict | None]:
    """A picture from a Python object: PIL image, PaintResult (its first picture) or numpy array."""
    if isinstance(value, Image.Image):
        value.load()
        return value, _record(getattr(value, "filename", None) or None)
    if isinstance(value, PaintResult):
        if not value.images:
            msg = f"{option}: {label} is a PaintResult without pictures"
            raise ValueError(msg)
        return value.images[0], _record(value.paths[0]) if value.paths else None
    if type(value).__module__ == "numpy" and hasattr(value, "shape"):
        return _from_array(option, value, label), None
    msg = f"{option}: {label} holds a {type(value).__name__}, not a picture (allowed: {_ALLOWED})"
    raise ValueError(msg)


def _from_array(option: str, array: Any, label: str) -> Image.Image:
    import numpy as np

    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        msg = f"{option}: {label} has shape {tuple(array.shape)} (allowed: H×W, H×W×3 or H×W×4)"
        raise ValueError(msg)
    if array.dtype.kind == "f":
        array = np.clip(np.round(array * 255), 0, 255)
    array = np.ascontiguousarray(array.astype(np.uint8))
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    return Image.fromarray(array)


def _open(option: str, data: bytes | str, label: str) -> Image.Image:
    try:
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as image:
            image.load()
            return image.copy()
    except (UnidentifiedImageError, OSError) as error:
        msg = f"{option}: could not read {label} as a picture ({str(error).splitlines()[0][:120]})"
        raise ValueError(msg) from None


def load_picture(
    option: str, spec: Any, namespace: Mapping[str, Any] | None = None, last: PaintResult | None = None
) -> tuple[Image.Image, dict | None]:
    """Load one picture named by `spec`; return it with its record (``{"path", "sha256"}`` or None).

    Raises
    ------
    ValueError
        One line naming the option, what went wrong and the value: a missing or unreadable file, a URL that
        fails, an unknown variable, a variable that holds no picture.
    """
    namespace = namespace or {}
    if not isinstance(spec, str):
        return _from_object(option, spec, "the value given")
    text = spec.strip()
    if text == "_":
        shown = namespace.get("_")
        if isinstance(shown, (Image.Image, PaintResult)) or type(shown).__module__ == "numpy":
            return _from_object(option, shown, "_")
        if last is not None and last.images:
            return _from_object(option, last, "_ (the last result)")
        msg = f"{option}: _ is the last result, but nothing has been painted in this kernel yet"
        raise ValueError(msg)
    variable = _VARIABLE.match(text)
    if variable:
        name = variable.group(1)
        if name not in namespace:
            msg = f"{option}: {{{name}}} is not a notebook variable"
            raise ValueError(msg)
        value = namespace[name]
        if isinstance(value, (str, os.PathLike)) and str(value).strip() not in ("_", f"{{{name}}}"):
            return load_picture(option, str(value), namespace, last)  # a variable holding a path or URL
        return _from_object(option, value, f"{{{name}}}")
    if text.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(text, timeout=URL_TIMEOUT) as response:  # noqa: S310 (http(s) only)
                data = response.read()
        except (urllib.error.URLError, OSError, ValueError) as error:
            http = isinstance(error, urllib.error.HTTPError)
            reason = error if http else getattr(error, "reason", None) or error
            msg = f"{option}: could not download '{text}' ({str(reason).splitlines()[0][:120]})"
            raise ValueError(msg) from None
        return _open(option, data, f"'{text}'"), None
    path = Path(text).expanduser()
    if not path.is_file():
        msg = f"{option}: no such file '{text}' (allowed: {_ALLOWED})"
        raise ValueError(msg)
    return _open(option, str(path), f"'{text}'"), _record(path)


def load_pictures(
    request: Any,
    namespace: Mapping[str, Any] | None = None,
    last: PaintResult | None = None,
    objects: Mapping[str, Any] | None = None,
) -> Pictures | None:
    """Load a request's init and mask (None for text-to-image).

    `objects` holds pictures handed in as Python objects (``init=`` / ``mask=`` of `paint`, the panel's upload and
    mask painter), used in place of the request's text for those options.

    Raises
    ------
    ValueError
        As `load_picture`, before anything is loaded onto the device.
    """
    objects = objects or {}
    units = with_images(tuple(getattr(request, "controlnet", ()) or ()), getattr(request, "controlnet_image", ""))
    if not request.init and "init" not in objects:
        return _unit_pictures(Pictures(), units, namespace, last) if units else None
    init, init_record = load_picture("init", objects.get("init", request.init), namespace, last)
    pictures = _unit_pictures(Pictures(init=init, init_record=init_record), units, namespace, last)
    mask_spec = objects.get("mask", request.mask)
    if isinstance(mask_spec, str) and mask_spec.strip() == ALPHA:
        pictures.mask = alpha_mask(init)
        if pictures.mask is None:
            msg = "mask: 'alpha' repaints where the init is transparent, but the init has no transparent pixels"
            raise ValueError(msg)
    elif mask_spec is not None and mask_spec != "":
        pictures.mask, pictures.mask_record = load_picture("mask", mask_spec, namespace, last)
    return pictures


def _unit_pictures(
    pictures: Pictures, units: tuple, namespace: Mapping[str, Any] | None, last: PaintResult | None
) -> Pictures:
    """Each ControlNet unit's picture (file, URL, ``_``, variable or object) and its record; None where it has none."""
    loaded = [
        (None, None) if unit.image is None else _unit_picture(i, unit, namespace, last) for i, unit in enumerate(units)
    ]
    pictures.control = tuple(image for image, _ in loaded)
    pictures.control_records = tuple(record for _, record in loaded)
    masks = [
        (None, None)
        if unit.effective_region_mask is None
        else load_picture(f"controlnet unit {i} mask", unit.effective_region_mask, namespace, last)
        for i, unit in enumerate(units)
    ]
    if any(mask is not None for mask, _ in masks):  # effective region masks (IP-Adapter units)
        pictures.control_masks = tuple(mask for mask, _ in masks)
        pictures.control_mask_records = tuple(record for _, record in masks)
    return pictures


def _is_pose_json(spec: Any) -> bool:
    return isinstance(spec, dict) or (isinstance(spec, str) and spec.strip().lower().endswith(".json"))


def _unit_picture(
    i: int, unit: Any, namespace: Mapping[str, Any] | None, last: PaintResult | None
) -> tuple[Image.Image, dict | None]:
    """A unit's picture; a pose JSON (a ``.json`` file or a dict, sd-webui-controlnet's) drawn as its pose map."""
    label = f"controlnet unit {i} image"
    if not _is_pose_json(unit.image):
        return load_picture(label, unit.image, namespace, last)
    from ..engine.control.modules import find_module
    from ..engine.control.pose_json import POSE_MODULES, read_pose_json
    from ..engine.control.pose_render import pose_picture

    module = find_module(unit.module).name
    if module != "none" and module not in POSE_MODULES:
        msg = f"{label}: a pose JSON is a pose map; its module is none or an openpose one (got {module})"
        raise ValueError(msg)
    if isinstance(unit.image, dict):
        return pose_picture(unit.image, label), None
    path = Path(unit.image.strip()).expanduser()
    if not path.is_file():
        msg = f"{label}: no such file '{unit.image.strip()}'"
        raise ValueError(msg)
    return pose_picture(read_pose_json(path, label), label), _record(path)
