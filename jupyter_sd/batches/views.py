"""How a batch shows its progress: images done/total, images/s, ETA, failures, and a strip of finished thumbnails.

The count is kept by `BatchTracker` (plain numbers, no display), so the local loop and the Ray driver report the
same way; `InlineBatchView` draws it in the cell through display handles (JupyterLab, Notebook, Colab, VS Code
alike) and `ConsoleBatchView` as a terminal bar.
"""

from __future__ import annotations

import base64
import io
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from PIL import Image

from ..painting.views import Board, Console, InlineView, status_bundle

THUMB_HEIGHT = 64
THUMBS_KEPT = 16


class BatchTracker:
    """Counts of a running batch and its rate, measured from the first finished picture once there are more.

    Measuring from the first picture keeps model loading (and Ray's actor start) out of the rate and the ETA.
    """

    def __init__(self, images: int, requests: int, skipped: int = 0) -> None:
        self.images_total = images
        self.requests_total = requests
        self.skipped = skipped
        self.images_done = 0
        self.requests_done = 0
        self.failed = 0
        self.started = time.perf_counter()
        self.first_image: float | None = None
        """Seconds from the start to the first picture on disk."""
        self._first_count = 0

    def image_done(self, count: int = 1) -> None:
        """Record finished (saved) pictures."""
        if self.first_image is None and count:
            self.first_image = time.perf_counter() - self.started
            self._first_count = count
        self.images_done += count

    def request_done(self, failed: bool = False) -> None:
        """Record a finished or failed request."""
        self.requests_done += 1
        self.failed += bool(failed)

    @property
    def elapsed(self) -> float:
        """Seconds since the batch started."""
        return time.perf_counter() - self.started

    def rate(self) -> float:
        """Images per second: since the first picture once there are more, else from the start (0 before any)."""
        if not self.images_done:
            return 0.0
        since_first = self.elapsed - (self.first_image or 0.0)
        if self.images_done > self._first_count and since_first > 0:
            return (self.images_done - self._first_count) / since_first
        return self.images_done / max(self.elapsed, 1e-9)

    def eta(self) -> float | None:
        """Seconds left at the current rate, or None before the first picture."""
        rate = self.rate()
        return (self.images_total - self.images_done) / rate if rate else None

    def text(self) -> str:
        """One line: ``batch 5/12 images · 1.3 images/s · ETA 5 s · 1 failed · 3 already saved``."""
        parts = [f"batch {self.images_done}/{self.images_total} images", f"{self.rate():.2f} images/s"]
        eta = self.eta()
        parts.append(f"ETA {eta:.0f} s" if eta is not None else "ETA …")
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.skipped:
            parts.append(f"{self.skipped} already saved")
        return " · ".join(parts)


def thumbnail(image: Image.Image | bytes) -> str:
    """A small PNG of a picture (from an image or PNG bytes), base64 for an ``<img>``."""
    if isinstance(image, (bytes, bytearray)):
        image = Image.open(io.BytesIO(image))
    small = image.convert("RGB")
    small.thumbnail((THUMB_HEIGHT * 4, THUMB_HEIGHT))
    buffer = io.BytesIO()
    small.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


class BatchView:
    """Receives a batch's progress. All no-ops here (a view for scripts and benchmarks)."""

    def picture_view(self) -> Any:
        """A `Progress` for the picture being painted locally (live previews), or None."""
        return None

    def update(self, tracker: BatchTracker, images: Sequence[Any] = (), final: bool = False) -> None:
        """Pictures finished (images or PNG bytes), or the batch ended (`final`)."""

    def notice(self, text: str) -> None:
        """A one-line message (bad lines skipped, Ray starting)."""


class InlineBatchView(BatchView):
    """The batch's bar and thumbnail strip in the running cell, under the usual live preview."""

    def __init__(self, previews: bool = True) -> None:
        self.board = Board()
        self._thumbs: deque[str] = deque(maxlen=THUMBS_KEPT)
        self._picture: Any = None
        self.previews = previews

    def picture_view(self) -> Any:  # noqa: D102
        if self.previews and self._picture is None:
            self._picture = InlineView()  # one for the whole batch: its preview and status lines are reused
        return self._picture

    def notice(self, text: str) -> None:  # noqa: D102
        print(text)

    def update(self, tracker: BatchTracker, images: Sequence[Any] = (), final: bool = False) -> None:  # noqa: D102
        self._thumbs.extend(thumbnail(image) for image in images)
        last = final or tracker.images_done >= tracker.images_total
        done, total = tracker.images_done, max(tracker.images_total, 1)
        self.board.status(tracker.text(), done, total, last, self._strip(), css="jupyter-sd-batch")

    def bundle(self, tracker: BatchTracker) -> dict[str, Any]:
        """The display bundle: the progress line and the newest thumbnails, newest first."""
        total = max(tracker.images_total, 1)
        return status_bundle(tracker.text(), tracker.images_done, total, self._strip(), css="jupyter-sd-batch")

    def _strip(self) -> str:
        """The newest thumbnails, newest first."""
        images = "".join(
            f'<img src="data:image/png;base64,{thumb}" style="height:{THUMB_HEIGHT}px;margin:1px" alt="done">'
            for thumb in reversed(self._thumbs)
        )
        return f"<div>{images}</div>"


class ConsoleBatchView(BatchView):
    """A terminal bar over the batch's images (the ``jupyter-sd batch`` command)."""

    def __init__(self, stream: Any = None) -> None:
        self.console = Console(stream)
        self._started = False

    def notice(self, text: str) -> None:  # noqa: D102
        self.console.line(text)

    def update(self, tracker: BatchTracker, images: Sequence[Any] = (), final: bool = False) -> None:  # noqa: D102
        if not self._started:
            self.console.bar(tracker.images_total, "batch", "image")
            self._started = True
        self.console.advance(tracker.images_done, **({"failed": tracker.failed} if tracker.failed else {}))
        if final:
            self.console.close()
            self._started = False
