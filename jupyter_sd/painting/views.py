"""Views of progress: inline in a notebook cell, or lines and a bar in a terminal.

Every inline view (a picture's here, a plot's in ``plots/views.py``, a batch's in ``batches/views.py``) is made of a
`Board` (named outputs of the running cell, updated in place through display handles: no widgets, no lab
extension, so JupyterLab, Notebook, Colab and VS Code behave alike) and the one progress line `status_bundle`.
Every console view is made of a `Console` (lines and one tqdm bar on stderr). A picture's events are the engine's
`Progress` protocol; plots and batches show each picture through an `InlineView` or `ConsoleView` they hold.
"""

from __future__ import annotations

import base64
import html
import sys
import time
from typing import Any

from PIL import Image

from ..engine import Progress
from ..recipe.request import PaintRequest
from ..recipe.result import PaintResult, image_grid, png_bytes

STATUS_INTERVAL = 0.1
"""Seconds between progress-line updates (the last step is always shown)."""
THUMBNAIL = 160
"""The largest side, in pixels, of a detected map shown beside the preview."""


class StepRate:
    """Steps per second and time left, measured from the first finished step of a batch."""

    def __init__(self) -> None:
        self.first: float | None = None
        self.first_step = 0
        self.started = time.perf_counter()

    def update(self, step: int, total: int) -> tuple[float, float]:
        """Record that `step` of `total` is done; return (steps per second, seconds left)."""
        now = time.perf_counter()
        if self.first is None:
            self.first, self.first_step = now, step
            rate = step / max(now - self.started, 1e-9)
        else:
            rate = (step - self.first_step) / max(now - self.first, 1e-9) if step > self.first_step else 0.0
        eta = (total - step) / rate if rate > 0 else 0.0
        return rate, eta


def status_text(
    step: int, total: int, rate: float, eta: float, batch: int = 0, batches: int = 1, phase: str = ""
) -> str:
    """The progress line: ``step 5/20 · 3.1 it/s · ETA 5 s``, with the batch and pass when there are several.

    For example ``batch 1/2 · hires 2/2 · step 5/10 · 3.1 it/s · ETA 2 s``.
    """
    prefix = f"batch {batch + 1}/{batches} · " if batches > 1 else ""
    prefix += f"{phase} · " if phase else ""
    return f"{prefix}step {step}/{total} · {rate:.1f} it/s · ETA {eta:.0f} s"


def phase_text(label: str, index: int, count: int) -> str:
    """The pass part of the progress line: ``hires 2/2`` (empty for a single-pass request)."""
    return f"{label} {index + 1}/{count}" if count > 1 else ""


def summary_text(result: PaintResult) -> str:
    """One line saying how the run ended and where the pictures went."""
    count = len(result.images)
    if result.interrupted:
        head = f"interrupted at step {result.interrupted_at}/{result.steps_total}"
        if result.stopped_by == "stop":
            head = f"stopped at step {result.interrupted_at}/{result.steps_total}"
    else:
        rate = result.steps_total * result.request.repeat / max(result.elapsed, 1e-9)
        head = f"{count} image{'s' if count != 1 else ''} in {result.elapsed:.1f} s ({rate:.1f} it/s)"
    seeds = ", ".join(str(seed) for seed in result.seeds[:8])
    where = ""
    if result.paths:
        folder = result.paths[0].parent
        where = (
            f" · saved {', '.join(p.name for p in result.paths[:4])}{'…' if len(result.paths) > 4 else ''} in {folder}"
        )
    elif result.interrupted and result.images:
        where = " · not saved (--save-incomplete keeps interrupted pictures)"
    return f"{head} · seed {seeds}{where}" if seeds else head


def image_bundle(image: Image.Image, alt: str, jpeg: bytes | None = None) -> dict[str, Any]:
    """A picture as a display bundle: PNG, or the `jpeg` bytes given (live frames of big grids encode faster)."""
    if jpeg is not None:
        return {"image/jpeg": base64.b64encode(jpeg).decode("ascii"), "text/plain": alt}
    return {"image/png": base64.b64encode(png_bytes(image)).decode("ascii"), "text/plain": alt}


def thumbnail(image: Image.Image, side: int = THUMBNAIL) -> Image.Image:
    """`image` shrunk to fit `side`×`side` (a smaller one as it is)."""
    small = image.copy()
    small.thumbnail((side, side))
    return small


def detected_html(maps: dict[str, Image.Image]) -> str:
    """The detected maps as a column of small captioned thumbnails (sd-webui-controlnet's preprocessor preview)."""
    figures = "".join(
        f'<figure style="margin:0 0 4px 0"><img src="data:image/png;base64,'
        f'{base64.b64encode(png_bytes(thumbnail(image))).decode("ascii")}" alt="{html.escape(label)}">'
        f"<figcaption><code>{html.escape(label)}</code></figcaption></figure>"
        for label, image in maps.items()
    )
    return f'<div class="jupyter-sd-detected">{figures}</div>'


def beside_bundle(frame: Image.Image | None, alt: str, maps: str, jpeg: bytes | None = None) -> dict[str, Any]:
    """A preview `frame` (None: none yet) with the `detected_html` `maps` beside it, as one HTML output.

    With `jpeg` the frame is shown as those bytes (a plot's live frames), else as a PNG.
    """
    picture = ""
    if frame is not None:
        kind, data = ("jpeg", jpeg) if jpeg is not None else ("png", png_bytes(frame))
        encoded = base64.b64encode(data).decode("ascii")
        picture = f'<img src="data:image/{kind};base64,{encoded}" alt="{html.escape(alt)}">'
    body = f'<div style="display:flex;gap:8px;align-items:flex-start">{picture}{maps}</div>'
    return {"text/plain": alt, "text/html": body}


def status_bundle(
    text: str, done: int = 0, total: int = 0, below: str = "", css: str = "jupyter-sd-status"
) -> dict[str, Any]:
    """The one progress line of every inline view: a ``<progress>`` bar (when `total`) and the text.

    `below` is extra HTML under the line (a batch's strip of finished thumbnails); `css` names the line's kind
    (``jupyter-sd-status`` for a picture or a plot, ``jupyter-sd-batch`` for a batch's own line).
    """
    bar = f'<progress value="{done}" max="{total}" style="width:14em;vertical-align:middle"></progress> '
    body = f'<div class="{css}">{bar if total else ""}<code>{html.escape(text)}</code>{below}</div>'
    return {"text/plain": text, "text/html": body}


class Board:
    """Named outputs of the running cell, each shown once and then updated in place (IPython display handles).

    The order the names are first shown in is the order they stand in the cell. `status` throttles the progress
    line to one update per `STATUS_INTERVAL` (the final one always goes out).
    """

    def __init__(self) -> None:
        self._ids: dict[str, str] = {}
        self._last_status = 0.0

    def show(self, name: str, bundle: dict[str, Any]) -> None:
        """Show `bundle` in the output `name`: a new output the first time, an update in place after."""
        from uuid import uuid4

        from IPython.display import display

        update = name in self._ids
        display_id = self._ids.setdefault(name, uuid4().hex)
        display(bundle, raw=True, display_id=display_id, update=update)

    def clear(self, name: str) -> None:
        """Blank the output `name` (a transient preview when the run ends)."""
        self.show(name, {"text/plain": ""})

    def status(
        self, text: str, done: int = 0, total: int = 0, final: bool = False, below: str = "", css: str = ""
    ) -> bool:
        """Update the ``status`` output unless it was updated less than `STATUS_INTERVAL` ago; True if it was."""
        now = time.perf_counter()
        if not final and "status" in self._ids and now - self._last_status < STATUS_INTERVAL:
            return False
        self._last_status = now
        self.show("status", status_bundle(text, done, total, below, css or "jupyter-sd-status"))
        return True

    def __contains__(self, name: str) -> bool:
        return name in self._ids


class Console:
    """Lines and one progress bar on a terminal's stderr: what every console view is made of."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self._bar: Any = None

    def line(self, text: str) -> None:
        """Print a line (above the bar, which stays)."""
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream)

    def bar(self, total: int, label: str, unit: str) -> None:
        """Start a new bar of `total` `unit`s (closing the one before)."""
        from tqdm.auto import tqdm

        self.close()
        self._bar = tqdm(total=total, desc=label, unit=unit, file=self.stream, leave=True)

    def advance(self, done: int, total: int | None = None, label: str | None = None, **postfix: Any) -> None:
        """Move the bar to `done` (restarting it at a new `total`, relabelled, with postfix values)."""
        if self._bar is None:
            return
        if total is not None and total != self._bar.total:
            self._bar.reset(total=total)
        if label is not None:
            self._bar.set_description(label, refresh=False)
        if postfix:
            self._bar.set_postfix(**postfix, refresh=False)
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        """Close the bar, leaving its last state on screen."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class InlineView(Progress):
    """Live previews and a progress line in the running cell; ControlNet units' detected maps beside the preview.

    When the run ends the preview is blanked (it was transient), the detected maps stay, and the result shows as
    the cell's own output.
    """

    def __init__(self) -> None:
        self.board = Board()
        self._rate = StepRate()
        self._batch, self._batches = 0, 1
        self._phase = ""
        self.frames = 0
        self._maps: dict[str, Image.Image] = {}
        self._maps_html = ""  # (encoded once, shown again with every frame)
        self._frame: tuple[Image.Image, str] | None = None

    def notice(self, text: str) -> None:  # noqa: D102
        print(text)

    def start(self, request: PaintRequest, batch: int, batches: int) -> None:  # noqa: D102
        self._batch, self._batches = batch, batches
        self._rate = StepRate()
        self._maps, self._maps_html, self._frame = {}, "", None  # each batch detects its maps again
        if "status" not in self.board:
            self.board.clear("preview")  # the preview stands above the progress line
            self.board.status(f"painting {request.prompt[:60]!r}…")

    def phase(self, label: str, index: int, count: int, steps: int) -> None:  # noqa: D102
        self._phase = phase_text(label, index, count)
        self._rate = StepRate()

    def detected(self, maps: list[Image.Image], labels: list[str]) -> None:  # noqa: D102
        self._maps.update(zip(labels, maps))  # a hires pass's units replace their own first-pass maps
        self._maps_html = detected_html(self._maps)
        self._show_preview()

    def step(self, step: int, total: int, previews: list[Image.Image] | None) -> None:  # noqa: D102
        if previews:
            self._frame = image_grid(previews), f"preview at step {step}/{total}"
            self._show_preview()
            self.frames += 1
        rate, eta = self._rate.update(step, total)
        text = status_text(step, total, rate, eta, self._batch, self._batches, self._phase)
        self.board.status(text, step, total, final=step == total)

    def finish(self, result: PaintResult) -> None:  # noqa: D102
        if "status" not in self.board:
            return
        self._frame = None
        if self._maps_html:
            self._show_preview()  # the detected maps stay above the line; the picture is the cell's output
        else:
            self.board.clear("preview")
        self.board.status(summary_text(result), final=True)

    def _show_preview(self) -> None:
        """Show the last frame, with the detected maps beside it when units made some."""
        frame, alt = self._frame or (None, "detected maps")
        if self._maps_html:
            self.board.show("preview", beside_bundle(frame, alt, self._maps_html))
        elif frame is not None:
            self.board.show("preview", image_bundle(frame, alt))


class ConsoleView(Progress):
    """A terminal progress bar (for the ``jupyter-sd`` command)."""

    def __init__(self, stream: Any = None) -> None:
        self.console = Console(stream)

    @property
    def stream(self) -> Any:
        """Where the lines and the bar go (stderr by default)."""
        return self.console.stream

    def notice(self, text: str) -> None:  # noqa: D102
        self.console.line(text)

    def start(self, request: PaintRequest, batch: int, batches: int) -> None:  # noqa: D102
        self.console.bar(request.steps, f"batch {batch + 1}/{batches}" if batches > 1 else "painting", "step")

    def phase(self, label: str, index: int, count: int, steps: int) -> None:  # noqa: D102
        self.console.advance(0, total=steps, label=phase_text(label, index, count) if count > 1 else None)

    def detected(self, maps: list[Image.Image], labels: list[str]) -> None:  # noqa: D102
        sizes = (f"{label} ({image.width}x{image.height})" for label, image in zip(labels, maps))
        self.console.line(f"detected maps: {', '.join(sizes)}")

    def step(self, step: int, total: int, previews: list[Image.Image] | None) -> None:  # noqa: D102
        self.console.advance(step)

    def finish(self, result: PaintResult) -> None:  # noqa: D102
        self.console.close()
        self.console.line(summary_text(result))
