"""A batch on Ray: the requests as a Ray Data dataset, `map_batches` over a pool of `PaintActor`s.

Each actor holds one engine (the pipeline loads once per actor) and paints through the same `painter.render` as
the kernel. Results come back as PNG bytes with their infotext and the driver saves them with ``store.py``'s
numbering, or, with ``shared_outdir``, the workers save into a folder every node sees. The driver reads results as
they stream in, so its progress line moves while Ray runs (Ray's own bars are switched off). A request that fails
comes back as its reason; an actor that dies is restarted by Ray and its requests retried, and the driver saves
each picture once whatever Ray retried. Ray is imported only here, only for a batch on Ray.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..painting.templates import picture_count
from ..recipe.request import PaintRequest
from .result import BatchItem
from .saved import BATCH_KEY, SavedIndex
from .views import BatchTracker, BatchView

_COLUMNS = ("order", "index", "count", "seed", "png", "infotext", "path", "error", "worker", "seconds", "start", "end")


class PaintActor:
    """A Ray Data actor: one resident engine that paints one request per row, with the kernel's own code path."""

    def __init__(self, warm: dict[str, Any] | None = None, threads: int | None = None) -> None:
        if threads:
            import torch

            torch.set_num_threads(threads)
        from ..painting import session as painter

        self._scratch = Path(tempfile.mkdtemp(prefix="jupyter-sd-ray-"))
        self._indexes: dict[str, SavedIndex] = {}
        self._painter = painter
        self.worker = _actor_id()
        if warm is not None:
            try:  # load the pipeline now, once for this actor; a failure is reported by the requests themselves
                painter.get_engine().pipeline(PaintRequest.from_dict(warm))
            except Exception:  # noqa: BLE001
                pass

    def __call__(self, rows: dict[str, Any]) -> Any:
        """Paint every request of a block of rows (``order``, ``key``, ``request`` JSON, ``shared``)."""
        import json

        import pyarrow

        out: dict[str, list[Any]] = {name: [] for name in _COLUMNS}
        for order, key, text, shared in zip(rows["order"], rows["key"], rows["request"], rows["shared"]):
            request = PaintRequest.from_dict(json.loads(text))
            for record in self._paint(int(order), str(key), request, bool(shared)):
                for name in _COLUMNS:
                    out[name].append(record.get(name))
        floats = {name: pyarrow.float64() for name in ("seconds", "start", "end")}
        types = {"png": pyarrow.binary(), "seed": pyarrow.int64(), **floats}
        return pyarrow.table({name: pyarrow.array(out[name], types.get(name)) for name in _COLUMNS})

    def _paint(self, order: int, key: str, request: PaintRequest, shared: bool) -> list[dict[str, Any]]:
        base = {"order": order, "worker": self.worker, "start": time.time()}
        started = time.perf_counter()
        if shared:  # a retried request may already be on the shared disk: never paint (and save) it twice
            index = self._indexes.setdefault(request.outdir, SavedIndex(request.outdir)).refresh()
            done = index.saved(key)
            if len(done) >= picture_count(request):
                return [{**base, "index": i, "count": len(done), "path": str(p)} for i, p in enumerate(done)]
        folder = Path(request.outdir) if shared else self._scratch
        try:
            result = self._painter.render(
                request, None, folder=folder, metadata={BATCH_KEY: key}, reraise_interrupt=False
            )
        except (ValueError, MemoryError) as error:
            return [{**base, "error": str(error)}]
        except Exception as error:  # noqa: BLE001 - reported as that request's failure; the batch goes on
            return [{**base, "error": f"{type(error).__name__}: {error}"}]
        seconds = time.perf_counter() - started
        records = []
        for index, (path, seed) in enumerate(zip(result.paths, result.seeds)):
            record = {**base, "index": index, "count": len(result.paths), "seed": seed, "seconds": seconds}
            record["infotext"] = result.infotext(index)
            if shared:
                record["path"] = str(path)
            else:
                record["png"] = path.read_bytes()
                path.unlink()
            record["end"] = time.time()
            records.append(record)
        return records or [{**base, "error": "painted nothing (saving is off?)"}]


def _actor_id() -> str:
    try:
        import ray

        return ray.get_runtime_context().get_actor_id() or ""
    except Exception:  # noqa: BLE001 - only a label for the table
        return ""


class _EncodedPNG:
    """A PNG the worker already encoded, chunks and all: `store.save_image` writes its bytes as they are."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def save(self, handle: Any, format: str = "PNG", pnginfo: Any = None) -> None:  # noqa: A002 - PIL's signature
        handle.write(self.data)


def connect(cluster: str) -> str:
    """Start or join Ray for `cluster` (``auto``, ``ray://…``, ``local``); an initialised Ray is kept as it is.

    Returns
    -------
    str
        What to call the cluster in messages.

    Raises
    ------
    ValueError
        If Ray is not installed.
    """
    try:
        import ray
    except ImportError:
        raise ValueError("ray: batches on Ray need 'pip install \"jupyter_sd[ray]\"'") from None
    if not ray.is_initialized():
        os.environ.setdefault("RAY_DISABLE_DOCKER_CPU_WARNING", "1")
        address = None if cluster == "local" else cluster
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    return "ray " + (cluster if cluster != "local" else "local")


def actor_pool(workers: int | None, cpus: float, gpus: float, requests: int) -> tuple[int, dict[str, float]]:
    """How many actors, with what each asks of Ray: one GPU each on a GPU cluster, else `cpus` CPUs each."""
    import ray

    resources = ray.cluster_resources()
    if resources.get("GPU", 0) >= gpus > 0:
        default, ask = int(resources["GPU"] // gpus), {"num_gpus": gpus}
    else:
        default, ask = int(resources.get("CPU", 1) // max(cpus, 1e-9)), {"num_cpus": cpus}
    size = workers if workers is not None else max(1, default)
    if size < 1:
        raise ValueError(f"workers: must be at least 1 (got {size})")
    return min(size, max(requests, 1)), ask


def run_ray(
    items: list[BatchItem],
    cluster: str,
    view: BatchView,
    tracker: BatchTracker,
    stop: threading.Event,
    user_ns: Mapping[str, Any] | None,
    workers: int | None,
    cpus_per_worker: float,
    gpus_per_worker: float,
    shared_outdir: bool,
) -> tuple[str | None, str, float]:
    """Paint the pending requests on Ray Data actors and save what comes back.

    Returns
    -------
    tuple
        What stopped the batch (``"stop"``, ``"interrupt"`` or None), the cluster's name, and the seconds the
        driver spent saving.
    """
    name = connect(cluster)
    todo = [item for item in items if item.status == "pending"]
    if not todo:
        return None, name, 0.0
    from ray.data import ActorPoolStrategy, DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = False  # ours, from the driver, replace them
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # no "execution finished" lines in the cell
    size, ask = actor_pool(workers, cpus_per_worker, gpus_per_worker, len(todo))
    view.notice(f"batch on {name}: {len(todo)} requests, {size} actor{'s' if size != 1 else ''} ({_ask_text(ask)})")
    rows = [
        {"order": order, "key": item.key, "request": item.request.to_json(), "shared": shared_outdir}
        for order, item in enumerate(items)
        if item.status == "pending"
    ]
    dataset = _from_items(rows).map_batches(
        PaintActor,
        batch_size=1,
        compute=ActorPoolStrategy(size=size, max_tasks_in_flight_per_actor=2),
        fn_constructor_kwargs={"warm": todo[0].request.to_dict(), "threads": _threads(ask)},
        **ask,
    )
    saver = _Saver(items, view, tracker, user_ns)
    stream = dataset.iter_rows()
    stopped_by = None
    try:
        for row in stream:
            saver.take(row)
            if stop.is_set():
                stopped_by = "stop"
                break
    except KeyboardInterrupt:
        stopped_by = "interrupt"
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()  # ends the execution: Ray stops the actors
    if stopped_by is None and any(item.status == "pending" for item in items):
        stopped_by = "stop"  # the stream ended early: what is saved stays saved, the rest is not painted
    return stopped_by, name, saver.save_seconds


def _from_items(rows: list[dict[str, Any]]) -> Any:
    """One block per request, so Ray hands requests to whichever actor is free (Ray < 2.10 says `parallelism`)."""
    import inspect

    import ray.data

    blocks = (
        "override_num_blocks"
        if "override_num_blocks" in inspect.signature(ray.data.from_items).parameters
        else "parallelism"
    )
    return ray.data.from_items(rows, **{blocks: len(rows)})


def _threads(ask: dict[str, float]) -> int | None:
    return max(1, int(ask["num_cpus"])) if "num_cpus" in ask else None


def _ask_text(ask: dict[str, float]) -> str:
    return ", ".join(f"{value:g} {key.removeprefix('num_').upper()}" for key, value in ask.items()) + " each"


class _Saver:
    """The driver's side: save each picture once, in the usual folder with the usual names, and keep count."""

    def __init__(
        self, items: list[BatchItem], view: BatchView, tracker: BatchTracker, user_ns: Mapping[str, Any] | None
    ) -> None:
        self.items, self.view, self.tracker, self.user_ns = items, view, tracker, user_ns
        self.saved: set[tuple[int, int]] = set()
        self.save_seconds = 0.0
        """Seconds the driver spent writing pictures (the part shared by every worker)."""

    def take(self, row: dict[str, Any]) -> None:
        """Handle one result row: an error, a picture to save, or a picture a worker saved."""
        from ..painting.store import save_image

        item = self.items[int(row["order"])]
        if item.status != "pending":
            return
        item.worker = row.get("worker") or item.worker
        if row.get("error"):
            item.status, item.reason = "failed", row["error"]
            self.tracker.request_done(failed=True)
            self.view.update(self.tracker)
            return
        mark = (int(row["order"]), int(row["index"]))
        if mark in self.saved:  # a retried request's second copy: never saved twice
            return
        self.saved.add(mark)
        started = time.perf_counter()
        if row.get("png") is not None:
            folder = _output_folder(item.request, self.user_ns)
            path = save_image(_EncodedPNG(row["png"]), folder, int(row["seed"]), None)
        else:
            path = Path(row["path"])
        self.save_seconds += time.perf_counter() - started
        item.paths.append(path)
        item.seconds = float(row.get("seconds") or 0.0)
        item.times = {"start": row.get("start") or 0.0, "end": row.get("end") or 0.0, "saved": time.time()}
        if row.get("seed") is not None:
            item.seeds.append(int(row["seed"]))
        self.tracker.image_done()
        if len(item.paths) >= int(row["count"]):
            item.status = "painted"
            self.tracker.request_done()
        self.view.update(self.tracker, [row["png"]] if row.get("png") is not None else [])


def _output_folder(request: PaintRequest, user_ns: Mapping[str, Any] | None) -> Path:
    from ..painting.session import output_folder

    return output_folder(request, user_ns)
