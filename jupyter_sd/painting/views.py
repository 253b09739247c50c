"""Views of a generation's progress: inline in a notebook cell, or a progress bar in a terminal.

The inline view works through IPython display handles only (no widgets, no lab extension), so it behaves the
same in JupyterLab, Notebook, Colab and VS Code. Previews and the progress line are updated in place; when the
run ends the preview is blanked (it was transient) and the result itself is shown as an ordinary output.
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


def _image_bundle(image: Image.Image, alt: str) -> dict[str, Any]:
    return {"image/png": base64.b64encode(png_bytes(image)).decode("ascii"), "text/plain": alt}


def _status_bundle(text: str, step: int = 0, total: int = 0) -> dict[str, Any]:
    bar = (
        f'<progress value="{step}" max="{total}" style="width:14em;vertical-align:middle"></progress> ' if total else ""
    )
    return {
        "text/plain": text,
        "text/html": f'<div class="jupyter-sd-status">{bar}<code>{html.escape(text)}</code></div>',
    }


class InlineView(Progress):
    """Live previews and a progress line in the running cell, through display handles."""

    def __init__(self) -> None:
        self._preview_id: str | None = None
        self._status_id: str | None = None
        self._rate = StepRate()
        self._last_status = 0.0
        self._batch, self._batches = 0, 1
        self._phase = ""
        self.frames = 0

    def _publish(self, bundle: dict[str, Any], display_id: str | None, update: bool) -> None:
        from IPython.display import display

        display(bundle, raw=True, display_id=display_id, update=update)

    def notice(self, text: str) -> None:  # noqa: D102
        print(text)

    def start(self, request: PaintRequest, batch: int, batches: int) -> None:  # noqa: D102
        from uuid import uuid4

        self._batch, self._batches = batch, batches
        self._rate = StepRate()
        if self._status_id is None:
            self._preview_id, self._status_id = uuid4().hex, uuid4().hex
            self._publish({"text/plain": ""}, self._preview_id, update=False)
            self._publish(_status_bundle(f"painting {request.prompt[:60]!r}…"), self._status_id, update=False)

    def phase(self, label: str, index: int, count: int, steps: int) -> None:  # noqa: D102
        self._phase = phase_text(label, index, count)
        self._rate = StepRate()

    def step(self, step: int, total: int, previews: list[Image.Image] | None) -> None:  # noqa: D102
        if previews:
            self._publish(
                _image_bundle(image_grid(previews), f"preview at step {step}/{total}"), self._preview_id, True
            )
            self.frames += 1
        rate, eta = self._rate.update(step, total)
        now = time.perf_counter()
        if step == total or now - self._last_status >= STATUS_INTERVAL:
            self._last_status = now
            text = status_text(step, total, rate, eta, self._batch, self._batches, self._phase)
            self._publish(_status_bundle(text, step, total), self._status_id, True)

    def finish(self, result: PaintResult) -> None:  # noqa: D102
        if self._status_id is None:
            return
        self._publish({"text/plain": ""}, self._preview_id, True)
        self._publish(_status_bundle(summary_text(result)), self._status_id, True)


class ConsoleView(Progress):
    """A terminal progress bar (for the ``jupyter-sd`` command)."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self._bar: Any = None

    def notice(self, text: str) -> None:  # noqa: D102
        print(text, file=self.stream)

    def start(self, request: PaintRequest, batch: int, batches: int) -> None:  # noqa: D102
        from tqdm.auto import tqdm

        if self._bar is not None:
            self._bar.close()
        label = f"batch {batch + 1}/{batches}" if batches > 1 else "painting"
        self._bar = tqdm(total=request.steps, desc=label, unit="step", file=self.stream, leave=True)

    def phase(self, label: str, index: int, count: int, steps: int) -> None:  # noqa: D102
        if self._bar is not None:
            self._bar.reset(total=steps)
            if count > 1:
                self._bar.set_description(phase_text(label, index, count))

    def step(self, step: int, total: int, previews: list[Image.Image] | None) -> None:  # noqa: D102
        if self._bar is not None:
            self._bar.update(step - self._bar.n)

    def finish(self, result: PaintResult) -> None:  # noqa: D102
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        print(summary_text(result), file=self.stream)
