"""X/Y/Z plots: a grid of plain requests, painted through `painter.render`, that fills in live as cells finish.

``plan`` reads the axes and checks every cell's request before anything is loaded (one line for a bad value);
``run_plot`` paints the cells with the costliest axis outermost (checkpoint, then VAE, then the rest, so each model
loads once), pastes each finished cell into a labelled placeholder grid shown through a view, and saves the grid
as ``NNNNN-xyz.png`` with A1111's grid infotext. Stop keeps the finished cells.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from PIL import Image

from ..engine import Progress
from ..painting import session as painter
from ..painting.store import png_info, save_image
from ..recipe.infotext import quote_value
from ..recipe.plot_options import SCRIPT_TITLE
from ..recipe.request import PaintRequest
from ..recipe.result import PaintResult, image_grid
from .grid import GridLayout
from .plan import Plan, plan
from .result import PlotResult
from .views import PlotView, default_plot_view

__all__ = ["PlotResult", "run_plot"]

last_plot: PlotResult | None = None
"""The last plot this kernel ran (kept when an interrupt re-raises ``KeyboardInterrupt``)."""


# -- running -------------------------------------------------------------------------------------------------------


class _PlotProgress(Progress):
    """Turns one cell's events into the plot's one progress line (``cell 5/24 · step 12/20 · ETA 40 s``).

    Its previews and detected ControlNet maps go to the view as they come.
    """

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

    def detected(self, maps: list[Image.Image], labels: list[str]) -> None:  # noqa: D102
        self.view.detected(maps, labels)

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
