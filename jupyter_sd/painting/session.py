"""`render()`: request → engine → store, the path every picture takes, from a cell, a plot or a batch.

Also holds the kernel's defaults (what ``%paint config`` sets) and the one engine of the kernel.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..engine import Engine, Fanout, Progress
from ..engine.control.pose_json import POSE_INFO
from ..engine.pictures import Pictures
from ..recipe.request import PaintRequest
from ..recipe.result import PaintResult
from ..recipe.values import coerce_options
from .inputs import load_pictures
from .store import companion_path, default_output_dir, png_info, save_image, save_input
from .templates import is_template, render_template

_engine: Engine | None = None
settings: dict[str, Any] = {}
"""This kernel's defaults for request options (``%paint config steps=30``), layered under each request's own."""


def get_engine() -> Engine:
    """Return the kernel's engine, creating it on first use."""
    global _engine
    if _engine is None:
        _engine = Engine()
    return _engine


def new_request(**options: Any) -> PaintRequest:
    """Build a request from the kernel's defaults overlaid with `options` (values may be text)."""
    return PaintRequest(**coerce_options({**settings, **options}))


class ImageSaver(Progress):
    """Save each finished batch as soon as it is done, so a later interrupt cannot lose it."""

    def __init__(self, folder: Path, pictures: Pictures | None = None, metadata: dict[str, Any] | None = None) -> None:
        self.folder = folder
        self.pictures = pictures
        self.metadata = metadata or {}  # more keys for the JSON chunk (a batch's request key)

    def batch(self, images: list[Any], seeds: list[int], result: PaintResult) -> None:  # noqa: D102
        request = result.request
        if not request.save or (result.interrupted and not request.save_incomplete):
            return
        inputs = self._input_records()
        if inputs:  # in-memory inputs now have files: the result's recipe names them
            result.request = result.request.replace(**{name: record["path"] for name, record in inputs.items()})
        units = self._unit_records()
        masks = self._unit_records("control_masks", "control_mask_records", "control-mask")
        if any(units) or any(masks):  # each unit's picture (and mask) by its file: load_request() paints it again
            result.request = result.request.replace(controlnet=_named_units(request.controlnet, units, masks))
            inputs = {**inputs, "controlnet_images": units} if any(units) else inputs
            inputs = {**inputs, "controlnet_masks": masks} if any(masks) else inputs
        first = len(result.images) - len(images)
        for offset, (image, seed) in enumerate(zip(images, seeds)):
            index = first + offset
            recipe = result.recipe(index)
            if inputs:
                paths = {name: record["path"] for name, record in inputs.items() if name in ("init", "mask")}
                recipe = recipe.replace(**paths)
            extra = {"seed": seed, "interrupted_at": result.interrupted_at if index >= result.complete else None}
            info = png_info(result.infotext(index), recipe, {**self.metadata, **extra, **inputs})
            result.paths.append(save_image(image, self.folder, seed, info))
            if request.save_detected:  # sd-webui-controlnet's "save detected map", beside the picture
                for unit, detected in enumerate(result.detected_maps):
                    detected.save(companion_path(result.paths[-1], f"control{unit}"))
                for unit, pose in enumerate(result.detected_poses):  # the extension's pose JSON, beside its map
                    if pose is not None:
                        json_path = companion_path(result.paths[-1], f"control{unit}").with_suffix(".json")
                        json_path.write_text(json.dumps(pose, indent=4), encoding="utf-8")

    def _unit_records(
        self, name: str = "control", records_name: str = "control_records", kind: str = "control"
    ) -> list[dict | None]:
        """Each ControlNet unit's picture (or mask: `name`) as a file (path, sha256); in-memory ones saved once."""
        pictures = self.pictures
        images = getattr(pictures, name, None) or ()
        if not images:
            return []
        records = list(getattr(pictures, records_name))
        records += [None] * (len(images) - len(records))
        for i, image in enumerate(images):
            if image is not None and records[i] is None:  # (a pose JSON's map: its JSON, so a re-run skips detection)
                records[i] = save_input(image.info.get(POSE_INFO, image), self.folder, f"{kind}{i}")
        setattr(pictures, records_name, tuple(records))
        return records

    def _input_records(self) -> dict[str, dict]:
        """Where the init and mask are on disk (path, sha256); in-memory ones are saved beside the pictures once."""
        records: dict[str, dict] = {}
        pictures = self.pictures
        if pictures is None:
            return records
        for name in ("init", "mask"):
            image, record = getattr(pictures, name), getattr(pictures, f"{name}_record")
            if image is None:
                continue
            if record is None:
                record = save_input(image, self.folder, name)
                setattr(pictures, f"{name}_record", record)
            records[name] = record
        return records


def _named_units(units: tuple, images: list, masks: list) -> tuple:
    """`units` naming their pictures' and effective region masks' files (records by unit number)."""
    named = []
    for i, unit in enumerate(units):
        image, mask = (records[i] if i < len(records) else None for records in (images, masks))
        changes = {} if image is None else {"image": image["path"]}
        changes.update({} if mask is None else {"effective_region_mask": mask["path"]})
        named.append(replace(unit, **changes))
    return tuple(named)


def _with_input_paths(request: PaintRequest, pictures: Pictures | None) -> PaintRequest:
    """Name the init and mask by their files where they have one.

    Then the result's recipe (and *again*) repaints from the same pictures rather than from whatever ``_`` or a
    variable holds later.
    """
    if pictures is None:
        return request
    changes = {
        name: record["path"]
        for name in ("init", "mask")
        if (record := getattr(pictures, f"{name}_record")) is not None and getattr(request, name) != ""
    }
    return request.replace(**changes) if changes else request


def output_folder(request: PaintRequest, user_ns: Mapping[str, Any] | None = None) -> Path:
    """Where this request's pictures go: ``--outdir`` if given, else the folder beside the notebook."""
    return Path(request.outdir).expanduser() if request.outdir else default_output_dir(user_ns)


def render(
    request: PaintRequest,
    view: Progress | None = None,
    *,
    stop: threading.Event | None = None,
    user_ns: Mapping[str, Any] | None = None,
    reraise_interrupt: bool = True,
    pictures: Mapping[str, Any] | None = None,
    folder: Path | None = None,
    metadata: dict[str, Any] | None = None,
) -> PaintResult:
    """Paint a request on the kernel's engine, saving as it goes and showing progress in `view`.

    A prompt with sd-dynamic-prompts' syntax (``{a|b}``, ``__wildcard__``) is expanded here, the one place every
    picture passes: each picture gets its own prompt and seed (`templates.render_template`).

    Parameters
    ----------
    reraise_interrupt
        After a kernel interrupt, re-raise ``KeyboardInterrupt`` (so a loop of ``paint()`` calls stops) once the
        interrupted result is kept in ``get_engine().last_result``. The magic passes False and shows the result.
    pictures
        ``{"init": ..., "mask": ...}`` given as objects (PIL image, `PaintResult`, numpy array) rather than as the
        request's text; the panel's upload and mask painter hand theirs in here.
    folder, metadata
        Save into `folder` instead of the request's output folder; add `metadata` to each PNG's JSON chunk (batches
        use both: a Ray worker paints into a scratch folder, and every picture carries its request's key).

    Raises
    ------
    ValueError
        For an invalid request, before anything is loaded or written.
    """
    request.validate()
    engine = get_engine()
    loaded = load_pictures(request, user_ns, engine.last_result, pictures)
    request = _with_input_paths(request, loaded)
    saver = ImageSaver(folder or output_folder(request, user_ns), loaded, metadata)
    if is_template(request):  # {a|b} variants or __wildcards__: one request per picture, gathered into one result
        result = render_template(engine, request, Fanout(saver, view), stop, loaded)
    else:
        result = engine.generate(request, Fanout(saver, view), stop, loaded)
    if reraise_interrupt and result.stopped_by == "interrupt":
        raise KeyboardInterrupt
    return result


def user_namespace() -> Mapping[str, Any] | None:
    """The notebook's variables when running in IPython (where ``{name}`` and ``$init`` are looked up), else None."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return None
    shell = get_ipython()
    return shell.user_ns if shell is not None else None


def in_notebook() -> bool:
    """Whether a notebook front end shows this kernel's output (else a terminal does): the one place that asks."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def default_view() -> Progress:
    """The one progress view of a picture: inline in a notebook kernel, lines in a terminal."""
    from .views import ConsoleView, InlineView

    return InlineView() if in_notebook() else ConsoleView()
