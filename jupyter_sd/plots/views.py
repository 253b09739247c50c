"""Views of an X/Y/Z plot: the grid filling in inside the cell (display handles), or lines in a terminal.

One progress line for the whole plot (``cell 5/24 · step 12/20 · ETA 40 s``), the running cell's live preview (its
ControlNet units' detected maps beside it), and the labelled grid, updated as each cell finishes. The panel's view
(widgets) lives in ``panel/xyz_section.py``; all of them implement `PlotView`.
"""

from __future__ import annotations

import io
import time
from typing import TYPE_CHECKING, Any

from PIL import Image

from ..painting.session import in_notebook
from ..painting.views import Board, Console, beside_bundle, detected_html, image_bundle
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

    def detected(self, maps: list[Image.Image], labels: list[str]) -> None:
        """The running cell's ControlNet units made their maps (a pass's, before its first step), one per label.

        The labels are the engine's (``ControlNet 0 · canny``: `Progress.detected`).
        """

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


def _frame(image: Image.Image, alt: str) -> dict[str, Any]:
    return image_bundle(image, alt, jpeg=live_jpeg(image))


class InlinePlotView(PlotView):
    """The plot in the running cell: progress line, the grid (placeholders filled in as cells finish), preview.

    The running cell's detected maps stand beside its preview (the thumbnails of a picture's view), replaced by the
    next cell's. When the plot ends the live outputs are cleared and the `PlotResult` (the cell's value) shows the
    grid, as a ``%%paint`` cell shows its `PaintResult`; ``keep_grid=True`` leaves the final grid in place instead.
    """

    def __init__(self, keep_grid: bool = False) -> None:
        self.keep_grid = keep_grid
        self.board = Board()
        self._maps: dict[str, Image.Image] = {}
        self._maps_html = ""  # (encoded once, shown again with every frame)
        self._frame: Image.Image | None = None
        self.grid_updates: list[float] = []
        """`time.perf_counter()` of each grid update sent (the benchmark reads it)."""

    def start(self, plan: Plan, placeholder: Image.Image | None) -> None:  # noqa: D102
        cells = len(plan.order)
        shape = " × ".join(str(len(a)) for a in plan.axes)
        self.board.status(f"X/Y/Z plot: {cells} cells ({shape}) · starting…", final=True)
        self.board.show("grid", _frame(placeholder, "X/Y/Z grid (placeholders)") if placeholder else {"text/plain": ""})
        self.board.clear("preview")

    def notice(self, text: str) -> None:  # noqa: D102
        self.board.status(text, final=True)

    def status(self, text: str, done: int, total: int, final: bool = False) -> None:  # noqa: D102
        self.board.status(text, done, total, final)

    def preview(self, image: Image.Image) -> None:  # noqa: D102
        self._frame = image
        self._show_preview()

    def detected(self, maps: list[Image.Image], labels: list[str]) -> None:  # noqa: D102
        self._maps.update(zip(labels, maps))  # a hires pass's units replace their own first-pass maps
        self._maps_html = detected_html(self._maps)
        self._show_preview()

    def cell(self, index: Index, result: PaintResult, grid: Image.Image, number: int, total: int) -> None:  # noqa: D102
        self.board.show("grid", _frame(grid, f"X/Y/Z grid, {number}/{total} cells"))
        self.grid_updates.append(time.perf_counter())
        self._maps, self._maps_html, self._frame = {}, "", None  # the next cell detects its own, paints its own

    def _show_preview(self) -> None:
        """The running cell's last frame, with its detected maps beside it when its units made some."""
        frame, alt = self._frame, "preview of the running cell"
        if self._maps_html:
            jpeg = live_jpeg(frame) if frame is not None else None
            self.board.show("preview", beside_bundle(frame, alt, self._maps_html, jpeg=jpeg))
        elif frame is not None:
            self.board.show("preview", _frame(frame, alt))

    def finish(self, plot: PlotResult) -> None:  # noqa: D102
        self.board.clear("preview")
        if self.keep_grid and plot.grid is not None:
            self.board.show("grid", plot._repr_mimebundle_())
        else:
            self.board.clear("grid")
        self.board.status(summary(plot), final=True)


class ConsolePlotView(PlotView):
    """A terminal bar over the plot's steps (``jupyter-sd --x …``), with a line per finished cell."""

    def __init__(self, stream: Any = None) -> None:
        self.console = Console(stream)

    def notice(self, text: str) -> None:  # noqa: D102
        self.console.line(text)

    def start(self, plan: Plan, placeholder: Image.Image | None) -> None:  # noqa: D102
        self.console.bar(0, f"X/Y/Z plot of {len(plan.order)} cells", "step")

    def status(self, text: str, done: int, total: int, final: bool = False) -> None:  # noqa: D102
        self.console.advance(done, total=total, label=text.split(" · step")[0])

    def cell(self, index: Index, result: PaintResult, grid: Image.Image, number: int, total: int) -> None:  # noqa: D102
        where = f" → {result.paths[0].name}" if result.paths else ""
        self.console.line(f"cell {number}/{total} done · seed {result.seeds[0]}{where}")

    def finish(self, plot: PlotResult) -> None:  # noqa: D102
        self.console.close()
        self.console.line(summary(plot))


def default_plot_view() -> PlotView:
    """Inline in a notebook kernel, lines in a terminal."""
    return InlinePlotView() if in_notebook() else ConsolePlotView()
