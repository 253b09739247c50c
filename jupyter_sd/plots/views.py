"""Views of an X/Y/Z plot: the grid filling in inside the cell (display handles), or lines in a terminal.

One progress line for the whole plot (``cell 5/24 · step 12/20 · ETA 40 s``), the running cell's live preview,
and the labelled grid, updated as each cell finishes. The panel's view (widgets) lives in
``panel/xyz_section.py``; all of them implement `PlotView`.
"""

from __future__ import annotations

import base64
import io
import sys
import time
from typing import TYPE_CHECKING, Any

from PIL import Image

from ..painting.session import in_notebook
from ..recipe.result import PaintResult

if TYPE_CHECKING:
    from .plan import Plan
    from .result import Index, PlotResult

STATUS_INTERVAL = 0.1
"""Seconds between progress-line updates."""
LIVE_QUALITY = 90
"""JPEG quality of live grid frames: a tenth of a PNG's encoding time; the final grid is an ordinary PNG output."""
LIVE_MAX_SIDE = 2048
"""Live frames of bigger grids are scaled down (by a whole factor) to at most this (a 5×5 grid of 1024 px cells
is 26 MP); the final grid and the saved file keep every pixel."""


class PlotView:
    """Receives a plot's events. All no-ops here; views override what they show."""

    def start(self, plan: Plan, placeholder: Image.Image | None) -> None:
        """The plot is checked and about to run.

        `placeholder` is the empty labelled grid, or None until the model's native size is known.
        """

    def notice(self, text: str) -> None:
        """A one-line message (model loading)."""

    def status(self, text: str, done: int, total: int, final: bool = False) -> None:
        """The plot's progress line; `done`/`total` count steps over the whole plot."""

    def preview(self, image: Image.Image) -> None:
        """A live preview frame of the running cell."""

    def cell(self, index: Index, result: PaintResult, grid: Image.Image, number: int, total: int) -> None:
        """Cell `number` of `total` finished; `grid` is the labelled grid with every finished cell pasted in."""

    def finish(self, plot: PlotResult) -> None:
        """The plot ended (all cells, or stopped); ``plot.grid`` is the final or partial grid."""


def summary(plot: PlotResult) -> str:
    """One line saying how the plot ended and where the grid went."""
    head = f"{len(plot.cells)}/{plot.total} cells in {plot.elapsed:.1f} s"
    if plot.interrupted:
        how = {"stop": "stopped", "interrupt": "interrupted"}.get(plot.stopped_by or "", "failed")
        head = f"{how} after {head} (finished cells kept)"
    where = f" · grid {plot.path.name} in {plot.path.parent}" if plot.path is not None else ""
    return head + where


def live_jpeg(image: Image.Image) -> bytes:
    """Encode a live grid frame quickly: JPEG, at most `LIVE_MAX_SIDE` pixels on a side."""
    factor = -(-max(image.size) // LIVE_MAX_SIDE)
    if factor > 1:
        image = image.reduce(factor)
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=LIVE_QUALITY)
    return buffer.getvalue()


def _image_bundle(image: Image.Image, alt: str) -> dict[str, Any]:
    return {"image/jpeg": base64.b64encode(live_jpeg(image)).decode("ascii"), "text/plain": alt}


class InlinePlotView(PlotView):
    """The plot in the running cell: progress line, the grid (placeholders filled in as cells finish), preview.

    When the plot ends the live outputs are cleared and the `PlotResult` (the cell's value) shows the grid, as a
    ``%%paint`` cell shows its `PaintResult`; ``keep_grid=True`` leaves the final grid in place instead.
    """

    def __init__(self, keep_grid: bool = False) -> None:
        from uuid import uuid4

        self.keep_grid = keep_grid
        self._ids = {name: uuid4().hex for name in ("status", "grid", "preview")}
        self._last_status = 0.0
        self.grid_updates: list[float] = []
        """`time.perf_counter()` of each grid update sent (the benchmark reads it)."""

    def _publish(self, name: str, bundle: dict[str, Any], update: bool = True) -> None:
        from IPython.display import display

        display(bundle, raw=True, display_id=self._ids[name], update=update)

    def start(self, plan: Plan, placeholder: Image.Image | None) -> None:  # noqa: D102
        cells = len(plan.order)
        shape = " × ".join(str(len(a)) for a in plan.axes)
        self._publish("status", _status(f"X/Y/Z plot: {cells} cells ({shape}) · starting…"), update=False)
        grid = _image_bundle(placeholder, "X/Y/Z grid (placeholders)") if placeholder else {"text/plain": ""}
        self._publish("grid", grid, update=False)
        self._publish("preview", {"text/plain": ""}, update=False)

    def notice(self, text: str) -> None:  # noqa: D102
        self._publish("status", _status(text))

    def status(self, text: str, done: int, total: int, final: bool = False) -> None:  # noqa: D102
        now = time.perf_counter()
        if final or now - self._last_status >= STATUS_INTERVAL:
            self._last_status = now
            self._publish("status", _status(text, done, total))

    def preview(self, image: Image.Image) -> None:  # noqa: D102
        self._publish("preview", _image_bundle(image, "preview of the running cell"))

    def cell(self, index: Index, result: PaintResult, grid: Image.Image, number: int, total: int) -> None:  # noqa: D102
        self._publish("grid", _image_bundle(grid, f"X/Y/Z grid, {number}/{total} cells"))
        self.grid_updates.append(time.perf_counter())

    def finish(self, plot: PlotResult) -> None:  # noqa: D102
        self._publish("preview", {"text/plain": ""})
        if self.keep_grid and plot.grid is not None:
            self._publish("grid", plot._repr_mimebundle_())
        else:
            self._publish("grid", {"text/plain": ""})
        self._publish("status", _status(summary(plot)))


def _status(text: str, done: int = 0, total: int = 0) -> dict[str, Any]:
    import html

    bar = (
        f'<progress value="{done}" max="{total}" style="width:14em;vertical-align:middle"></progress> ' if total else ""
    )
    return {
        "text/plain": text,
        "text/html": f'<div class="jupyter-sd-status">{bar}<code>{html.escape(text)}</code></div>',
    }


class ConsolePlotView(PlotView):
    """Lines in a terminal (``jupyter-sd --x …``): one per finished cell, and the progress line in place."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self._last_status = 0.0
        self._open = False

    def _line(self, text: str) -> None:
        if self._open:
            print(file=self.stream)
            self._open = False
        print(text, file=self.stream)

    def notice(self, text: str) -> None:  # noqa: D102
        self._line(text)

    def status(self, text: str, done: int, total: int, final: bool = False) -> None:  # noqa: D102
        now = time.perf_counter()
        if final or now - self._last_status >= STATUS_INTERVAL:
            self._last_status = now
            print(f"\r{text}   ", end="", file=self.stream, flush=True)
            self._open = True

    def cell(self, index: Index, result: PaintResult, grid: Image.Image, number: int, total: int) -> None:  # noqa: D102
        where = f" → {result.paths[0].name}" if result.paths else ""
        self._line(f"cell {number}/{total} done · seed {result.seeds[0]}{where}")

    def finish(self, plot: PlotResult) -> None:  # noqa: D102
        self._line(summary(plot))


def default_plot_view() -> PlotView:
    """Inline in a notebook kernel, lines in a terminal."""
    return InlinePlotView() if in_notebook() else ConsolePlotView()
