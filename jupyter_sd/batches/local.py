"""A batch painted in order on the kernel's engine, through the same `render` every cell uses."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from ..painting import session as painter
from .result import BatchItem
from .saved import BATCH_KEY
from .views import BatchTracker, BatchView


def run_local(
    items: list[BatchItem],
    view: BatchView,
    tracker: BatchTracker,
    stop: threading.Event,
    user_ns: Mapping[str, Any] | None,
) -> str | None:
    """Paint the pending requests in order on the kernel's engine; returns what stopped it (None: nothing).

    A request that fails (a model that won't load, out of memory) is recorded with its reason and the rest go on;
    a stop or kernel interrupt ends the batch, keeping every picture already saved.
    """
    try:
        for item in items:
            if item.status != "pending":
                continue
            if stop.is_set():
                return "stop"
            images = _paint_one(item, view, tracker, stop, user_ns)
            if item.status == "stopped":
                return item.reason or "stop"
            tracker.request_done(failed=item.status == "failed")
            view.update(tracker, images)
    except KeyboardInterrupt:  # between pictures, or while one is saved or shown: what is saved stays saved
        return "interrupt"
    return None


def _paint_one(
    item: BatchItem, view: BatchView, tracker: BatchTracker, stop: threading.Event, user_ns: Mapping[str, Any] | None
) -> list[Any]:
    """Paint one request through `painter.render`, recording its fate on `item`; returns its finished pictures."""
    started = time.perf_counter()
    try:
        result = painter.render(
            item.request,
            view.picture_view(),
            stop=stop,
            user_ns=user_ns,
            reraise_interrupt=False,
            metadata={BATCH_KEY: item.key},
        )
    except (ValueError, MemoryError) as error:
        item.status, item.reason = "failed", str(error)
        return []
    except Exception as error:  # one broken request must not lose the rest of a long batch
        item.status, item.reason = "failed", f"{type(error).__name__}: {error}"
        return []
    item.paths, item.seeds = list(result.paths), list(result.seeds)
    item.seconds = time.perf_counter() - started
    tracker.image_done(len(result.paths))
    if result.interrupted:
        item.status, item.reason = "stopped", result.stopped_by or "stop"
        view.update(tracker, result.images[: result.complete])
        return []
    item.status = "painted"
    item.reason = "" if result.paths or not item.request.save else "not saved"
    return result.images
