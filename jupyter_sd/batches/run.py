"""Batches: a file of prompts or recipes painted in order on the kernel's engine, or unchanged on a Ray cluster.

``batch()`` reads and validates every request before anything runs (`plan`), skips requests already saved
(`saved`: each PNG's JSON chunk carries its request's key, a hash of the resolved request), then paints the rest
through `painting.session.render` here (`local`) or through Ray Data actors (`on_ray`) running that same code.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from ..painting.session import in_notebook, user_namespace
from .local import run_local
from .plan import plan
from .result import BatchResult
from .saved import skip_saved
from .views import BatchTracker, BatchView


def batch(
    source: Any,
    cluster: str | None = None,
    *,
    skip_bad: bool = False,
    workers: int | None = None,
    cpus_per_worker: float = 1.0,
    gpus_per_worker: float = 1.0,
    shared_outdir: bool = False,
    view: BatchView | None = None,
    stop: threading.Event | None = None,
    **options: Any,
) -> BatchResult:
    """Paint every request of a file, folder or list, here or on a Ray cluster, skipping those already saved.

    Parameters
    ----------
    source
        A text file (a prompt per line, ``#`` comments; or blocks of A1111 generation data separated by blank
        lines), a CSV/TSV/JSONL file with a column per option, a folder of PNGs (their recipes), or a list of
        `PaintRequest`s, option dicts or prompts.
    cluster
        None paints on the kernel's engine, in order. ``"auto"`` (``ray.init(address="auto")``), a
        ``"ray://host:10001"`` address or ``"local"`` (a Ray on this machine) paints on Ray actors, one pipeline
        each; an already initialised Ray is used as it is. Needs ``pip install "jupyter_sd[ray]"``.
    skip_bad
        Paint the valid requests when some are invalid (else nothing runs and all bad ones are listed).
    workers, cpus_per_worker, gpus_per_worker
        Ray only: how many actors (default one per GPU, or per `cpus_per_worker` CPUs on a CPU-only cluster).
    shared_outdir
        Ray only: workers write straight into ``outdir``, a folder every node sees (else the driver saves).
    **options
        Options for every request, winning over the file's (``steps=25``, ``model="..."``, ``size="512x512"``).

    Returns
    -------
    BatchResult
        Counts, files, failures and a table of every request.

    Raises
    ------
    ValueError
        For a bad option or input (listing every invalid line), before anything is loaded or painted.
    """
    user_ns = user_namespace()
    items = plan(source, options, skip_bad)
    if shared_outdir and (cluster is None or any(item.request and not item.request.outdir for item in items)):
        raise ValueError("shared_outdir: needs a Ray cluster and --outdir, a folder every Ray node sees")
    if cluster is not None and any(item.request and not item.request.save for item in items):
        raise ValueError("save: a batch on Ray always saves its pictures (--no-save works for a local batch only)")
    skip_saved(items, user_ns)
    view = view if view is not None else _default_view()
    stop = stop or threading.Event()
    todo = [item for item in items if item.status == "pending"]
    skipped = sum(item.status == "skipped" for item in items)
    for item in items:
        if item.status == "invalid":
            view.notice(f"skipped invalid {item.where}: {item.reason}")
    tracker = BatchTracker(sum(item.images for item in todo), len(todo), skipped)
    started = time.perf_counter()
    if todo:
        view.update(tracker)  # the bar from the start: a Ray cluster takes a while to start its actors
    save_seconds = 0.0
    if cluster is None:
        stopped_by = run_local(items, view, tracker, stop, user_ns) if todo else None
        where = "local"
    else:
        from .on_ray import run_ray

        stopped_by, where, save_seconds = run_ray(
            items, cluster, view, tracker, stop, user_ns, workers, cpus_per_worker, gpus_per_worker, shared_outdir
        )
    if todo:
        view.update(tracker, final=True)
    return BatchResult(items, time.perf_counter() - started, tracker.first_image, stopped_by, where, save_seconds)


def _default_view() -> BatchView:
    from .views import ConsoleBatchView, InlineBatchView

    return InlineBatchView() if in_notebook() else ConsoleBatchView()
