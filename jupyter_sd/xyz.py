"""X/Y/Z plots: a grid of plain requests, painted through `painter.render`, that fills in live as cells finish.

``plan`` reads the axes and checks every cell's request before anything is loaded (one line for a bad value);
``run_plot`` paints the cells with the costliest axis outermost (checkpoint, then VAE, then the rest, so each model
loads once), pastes each finished cell into a labelled placeholder grid shown through a view, and saves the grid
as ``NNNNN-xyz.png`` with A1111's grid infotext. Stop keeps the finished cells.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from PIL import Image

from . import painter
from .engine import Progress
from .infotext import quote_value
from .request import MAX_SEED, PaintRequest
from .result import PaintResult, image_grid
from .store import png_info, save_image
from .xyz_axes import PLOT_OPTIONS, SCRIPT_TITLE, AxisValues, parse_axis
from .xyz_grid import GridLayout
from .xyz_result import Index, PlotResult
from .xyz_views import PlotView, default_plot_view

__all__ = ["Plan", "PlotResult", "plan", "run_plot", "xyz"]

last_plot: PlotResult | None = None
"""The last plot this kernel ran (kept when an interrupt re-raises ``KeyboardInterrupt``)."""


@dataclass
class Plan:
    """A checked plot: its axes and one validated request per cell, in the order they will be painted."""

    base: PaintRequest
    axes: list[AxisValues]
    requests: dict[Index, PaintRequest]
    order: list[Index]
    shape: tuple[int, int, int]

    def labels(self, which: str) -> list[str]:
        """The grid labels of axis `which` (one empty label when that axis is not used)."""
        for axis in self.axes:
            if axis.which == which:
                return axis.labels
        return [""]


def plan(base: PaintRequest, specs: Mapping[str, str]) -> Plan:
    """Read the axes and build every cell's request, refusing a bad axis or value before anything runs.

    A base seed of -1 is fixed once for the whole plot (A1111 does so), and ``-1`` on a seed axis becomes a random
    seed, so every cell can be repainted alone from its file.

    Raises
    ------
    ValueError
        One line naming the axis, the value and what is allowed.
    """
    unknown = sorted(set(specs) - set(PLOT_OPTIONS))
    if unknown:
        msg = f"plot: unknown axis option '{unknown[0]}' (allowed: {', '.join(PLOT_OPTIONS)})"
        raise ValueError(msg)
    base.validate()
    axes = [parse_axis(specs[which], which) for which in PLOT_OPTIONS if specs.get(which)]
    if not axes:
        msg = "plot: give at least one axis, e.g. x='Steps: 10, 20'"
        raise ValueError(msg)
    if base.seed == -1:
        base = base.replace(seed=secrets.randbelow(MAX_SEED - base.n * base.repeat))
    for axis in axes:
        _fix_seeds(axis)
        _confirm(axis, base)
    counts = {axis.which: len(axis) for axis in axes}
    shape = (counts.get("x", 1), counts.get("y", 1), counts.get("z", 1))
    requests: dict[Index, PaintRequest] = {}
    for iz in range(shape[2]):
        for iy in range(shape[1]):
            for ix in range(shape[0]):
                requests[(ix, iy, iz)] = _cell_request(base, axes, (ix, iy, iz))
    return Plan(base, axes, requests, _run_order(axes, shape), shape)


def _fix_seeds(axis: AxisValues) -> None:
    if not axis.axis.random_minus_one:
        return
    for i, value in enumerate(axis.values):
        if value == -1:
            axis.values[i] = secrets.randbelow(MAX_SEED)
            axis.texts[i] = str(axis.values[i])


def _confirm(axis: AxisValues, base: PaintRequest) -> None:
    """Checks an axis needs beyond each request's own validation (A1111's ``confirm``)."""
    label = axis.axis.label
    if label == "Prompt S/R":
        search = axis.values[0]
        if search not in base.prompt and search not in base.negative_prompt:
            msg = f"{axis.which}: Prompt S/R did not find '{search}' in the prompt or negative prompt"
            raise ValueError(msg)
    elif label == "Lora weight":
        from .prompts import extract_networks

        if not extract_networks(base.prompt)[1]:
            msg = f"{axis.which}: Lora weight varies the first <lora:name:weight> tag, and the prompt has none"
            raise ValueError(msg)
    elif label == "VAE":
        _confirm_files(axis, "vae", skip=("", "none", "automatic", "auto"))
    elif label == "Checkpoint name":
        from .engine.models import resolve_model

        for value in axis.values:
            try:
                resolve_model(value, base.allow_pickle)
            except ValueError as error:
                msg = f"{axis.which}: Checkpoint name value '{value}': {error}"
                raise ValueError(msg) from None


def _confirm_files(axis: AxisValues, kind: str, skip: tuple[str, ...]) -> None:
    """Every value names a file or folder, or a model in the models folder (``library``)."""
    from pathlib import Path

    from . import library

    for value in axis.values:
        if value.lower() in skip or Path(value).expanduser().exists() or library.find_model(kind, value):
            continue
        msg = f"{axis.which}: {axis.axis.label} value '{value}': {library.not_found_message(kind, value)}"
        raise ValueError(msg)


def _cell_request(base: PaintRequest, axes: list[AxisValues], index: Index) -> PaintRequest:
    request = base
    for axis in axes:
        i = index["xyz".index(axis.which)]
        try:
            request = request.replace(**axis.axis.changes(request, axis.values[i], axis.values)).validate()
        except (ValueError, TypeError) as error:
            msg = f"{axis.which}: {axis.axis.label} value '{axis.texts[i]}': {error}"
            raise ValueError(msg) from None
    return request


def _run_order(axes: list[AxisValues], shape: tuple[int, int, int]) -> list[Index]:
    """Cells in painting order: loops nested by axis cost, costliest outermost (ties: z, then y, then x, as A1111)."""
    cost = {axis.which: axis.axis.cost for axis in axes}
    loops = sorted("zyx", key=lambda which: -cost.get(which, 0.0))
    order: list[Index] = []

    def walk(depth: int, index: dict[str, int]) -> None:
        if depth == 3:
            order.append((index["x"], index["y"], index["z"]))
            return
        which = loops[depth]
        for i in range(shape["xyz".index(which)]):
            walk(depth + 1, {**index, which: i})

    walk(0, {})
    return order


# -- running -------------------------------------------------------------------------------------------------------


class _PlotProgress(Progress):
    """Turns one cell's events into the plot's one progress line (``cell 5/24 · step 12/20 · ETA 40 s``)."""

    def __init__(self, view: PlotView, steps_total: int) -> None:
        self.view = view
        self.steps_total = steps_total
        self.steps_done = 0
        self.cell, self.cells = 0, 0
        self.busy_seconds = 0.0
        self._batch_started = 0.0
        self._batch_steps = 0

    def notice(self, text: str) -> None:  # noqa: D102
        self.view.notice(text)

    def start(self, request: PaintRequest, batch: int, batches: int) -> None:  # noqa: D102
        self._batch_started, self._batch_steps = time.perf_counter(), 0

    def step(self, step: int, total: int, previews: list[Image.Image] | None) -> None:  # noqa: D102
        self.steps_done += step - self._batch_steps
        self._batch_steps = step
        now = time.perf_counter()
        seconds = self.busy_seconds + now - self._batch_started
        if step == total:
            self.busy_seconds, self._batch_started = seconds, now
        eta = (self.steps_total - self.steps_done) * seconds / max(self.steps_done, 1)
        text = f"cell {self.cell}/{self.cells} · step {step}/{total} · ETA {eta:.0f} s"
        self.view.status(text, self.steps_done, self.steps_total, final=step == total)
        if previews:
            self.view.preview(image_grid(previews))


def run_plot(
    request: PaintRequest,
    specs: Mapping[str, str],
    view: PlotView | None = None,
    *,
    stop: threading.Event | None = None,
    user_ns: Mapping[str, Any] | None = None,
    reraise_interrupt: bool = True,
) -> PlotResult:
    """Paint an X/Y/Z plot: every cell a plain request through `painter.render`, the grid filled in as they finish.

    Parameters
    ----------
    request
        The base request every cell starts from.
    specs
        The axes: ``{"x": "Steps: 10, 20", "y": "CFG scale: 5, 7"}``.
    view
        Where the live grid and the progress line go (default: inline in a notebook, else the terminal).
    stop
        Set it (or call ``get_engine().stop()``) to stop at the next step; finished cells are kept.
    reraise_interrupt
        After a kernel interrupt, re-raise ``KeyboardInterrupt`` once the partial plot is shown and kept in
        `last_plot` (the magic passes False and returns the partial plot).

    Raises
    ------
    ValueError
        For a bad axis, value or option, before anything is loaded or painted.
    """
    global last_plot
    checked = plan(request, specs)
    view = view if view is not None else default_plot_view()
    stop = stop or threading.Event()
    cells = [checked.requests[index] for index in checked.order]
    progress = _PlotProgress(view, sum(r.steps * r.repeat for r in cells))
    progress.cells = len(cells)
    result = PlotResult(axes=checked.axes, total=len(cells))
    layout = _layout(checked, None)
    started = time.perf_counter()
    view.start(checked, layout.canvas if layout else None)
    try:
        for number, index in enumerate(checked.order, 1):
            if stop.is_set():
                result.stopped_by = "stop"
                break
            progress.cell = number
            cell = painter.render(
                checked.requests[index], progress, stop=stop, user_ns=user_ns, reraise_interrupt=False
            )
            if cell.interrupted:
                result.stopped_by = cell.stopped_by
                break
            result.cells[index] = cell
            layout = _fit(layout, checked, result, cell.images[0].size)
            layout.paste(index, cell.images[0])
            view.cell(index, cell, layout.canvas, number, len(cells))
    except KeyboardInterrupt:
        result.stopped_by = "interrupt"
    except Exception:  # a cell failed (out of memory, say): keep and show what was made, then say why
        result.stopped_by = "error"
        raise
    finally:
        result.elapsed = time.perf_counter() - started
        _finish(result, checked, layout, user_ns)
        last_plot = result
        view.finish(result)
    if reraise_interrupt and result.stopped_by == "interrupt":
        raise KeyboardInterrupt
    return result


def _layout(checked: Plan, seen: tuple[int, int] | None) -> GridLayout | None:
    """The labelled placeholder grid, once the cell size is known: the largest explicit size or picture seen."""
    sizes = [(r.width, r.height) for r in checked.requests.values() if r.width is not None and r.height is not None]
    if seen is not None:
        sizes.append(seen)
    elif len(sizes) < len(checked.requests):
        return None  # a model's native size: known once its first picture is painted
    box = (max(w for w, _ in sizes), max(h for _, h in sizes))
    return GridLayout(box, checked.labels("x"), checked.labels("y"), checked.labels("z"))


def _fit(layout: GridLayout | None, checked: Plan, result: PlotResult, size: tuple[int, int]) -> GridLayout:
    """The layout, laid out again with a bigger box when a picture outgrows it (a Hires upscale axis, say)."""
    if layout is not None and size[0] <= layout.cell[0] and size[1] <= layout.cell[1]:
        return layout
    seen = size if layout is None else (max(size[0], layout.cell[0]), max(size[1], layout.cell[1]))
    grown = _layout(checked, seen)
    for index, cell in result.cells.items():
        grown.paste(index, cell.images[0])
    return grown


def _finish(result: PlotResult, checked: Plan, layout: GridLayout | None, user_ns: Mapping[str, Any] | None) -> None:
    """The final (or partial) grid, its A1111 infotext, and its file."""
    first = result.cells.get(checked.order[0])
    if layout is None or first is None:
        return
    result.grid = layout.canvas.copy()
    result.infotext = grid_infotext(first, checked)
    if first.request.save:
        extra = {"xyz": {a.which: f"{a.axis.label}: {a.text}" for a in checked.axes}, "cells": len(result.cells)}
        info = png_info(result.infotext, checked.base, extra)
        result.path = save_image(result.grid, painter.output_folder(first.request, user_ns), "xyz", info)


def grid_infotext(first: PaintResult, checked: Plan) -> str:
    """A1111's grid text: the first cell's generation data plus ``Script``, ``X Type``, ``X Values`` ….

    Seed axes add ``Fixed X Values``: the seeds that -1 became.
    """
    params: dict[str, Any] = {"Script": SCRIPT_TITLE}
    for axis in checked.axes:
        name = axis.which.upper()
        params[f"{name} Type"] = axis.axis.label
        params[f"{name} Values"] = axis.text
        if axis.axis.random_minus_one:
            params[f"Fixed {name} Values"] = ", ".join(axis.texts)
    tail = ", ".join(f"{key}: {quote_value(value)}" for key, value in params.items())
    return f"{first.infotext(0)}, {tail}"


def xyz(
    prompt: str = "",
    *,
    x: str | None = None,
    y: str | None = None,
    z: str | None = None,
    view: PlotView | None = None,
    stop: threading.Event | None = None,
    **options: Any,
) -> PlotResult:
    """Paint an X/Y/Z plot of `prompt`: ``xyz("a fox", x="Steps: 10, 20", y="CFG scale: 5, 7", seed=1)``.

    Options are those of ``%%paint`` (``steps=``, ``size=`` …); axes use A1111's syntax (see the README).

    Returns
    -------
    PlotResult
        The cells (``plot[20, 7.0]``), the grid (renders in the notebook) and ``plot.table()``.

    Raises
    ------
    ValueError
        For a bad axis, value or option (one line), before anything is painted.
    """
    specs = {which: spec for which, spec in (("x", x), ("y", y), ("z", z)) if spec}
    request = painter.new_request(prompt=prompt, **options)
    return run_plot(request, specs, view, stop=stop, user_ns=_user_ns())


def _user_ns() -> Mapping[str, Any] | None:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return None
    shell = get_ipython()
    return shell.user_ns if shell is not None else None
