"""How a batch shows its progress: images done/total, images/s, ETA, failures, and a strip of finished thumbnails.

The count is kept by `BatchTracker` (plain numbers, no display), so the local loop and the Ray driver report the
same way; `InlineBatchView` draws it in the cell through display handles (JupyterLab, Notebook, Colab, VS Code
alike) and `ConsoleBatchView` as a terminal bar.
"""

from __future__ import annotations

import base64
import html
import io
import sys
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from PIL import Image

THUMB_HEIGHT = 64
THUMBS_KEPT = 16
UPDATE_INTERVAL = 0.1
"""Seconds between redraws at least (the last image always redraws)."""


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
        from uuid import uuid4

        self._id = uuid4().hex
        self._shown = False
        self._last = 0.0
        self._thumbs: deque[str] = deque(maxlen=THUMBS_KEPT)
        self._picture: Any = None
        self.previews = previews

    def picture_view(self) -> Any:  # noqa: D102
        if self.previews and self._picture is None:
            from ..painting.views import InlineView

            self._picture = InlineView()  # one for the whole batch: its preview and status lines are reused
        return self._picture

    def notice(self, text: str) -> None:  # noqa: D102
        print(text)

    def update(self, tracker: BatchTracker, images: Sequence[Any] = (), final: bool = False) -> None:  # noqa: D102
        self._thumbs.extend(thumbnail(image) for image in images)
        now = time.perf_counter()
        if (
            not final
            and self._shown
            and now - self._last < UPDATE_INTERVAL
            and tracker.images_done < tracker.images_total
        ):
            return
        self._last = now
        from IPython.display import display

        display(self.bundle(tracker), raw=True, display_id=self._id, update=self._shown)
        self._shown = True

    def bundle(self, tracker: BatchTracker) -> dict[str, Any]:
        """The display bundle: a progress bar, the status line and the newest thumbnails, newest first."""
        text = tracker.text()
        bar = (
            f'<progress value="{tracker.images_done}" max="{max(tracker.images_total, 1)}" '
            'style="width:14em;vertical-align:middle"></progress> '
        )
        strip = "".join(
            f'<img src="data:image/png;base64,{thumb}" style="height:{THUMB_HEIGHT}px;margin:1px" alt="done">'
            for thumb in reversed(self._thumbs)
        )
        body = f'<div class="jupyter-sd-batch">{bar}<code>{html.escape(text)}</code><div>{strip}</div></div>'
        return {"text/plain": text, "text/html": body}


class ConsoleBatchView(BatchView):
    """A terminal bar over the batch's images (the ``jupyter-sd batch`` command)."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self._bar: Any = None

    def notice(self, text: str) -> None:  # noqa: D102
        print(text, file=self.stream)

    def update(self, tracker: BatchTracker, images: Sequence[Any] = (), final: bool = False) -> None:  # noqa: D102
        from tqdm.auto import tqdm

        if self._bar is None:
            self._bar = tqdm(total=tracker.images_total, desc="batch", unit="image", file=self.stream)
        self._bar.update(tracker.images_done - self._bar.n)
        if tracker.failed:
            self._bar.set_postfix(failed=tracker.failed)
        if final:
            self._bar.close()
            self._bar = None
