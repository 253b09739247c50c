"""Batches: a file of prompts or recipes painted in order on the kernel's engine, or unchanged on a Ray cluster.

``batch()`` reads the source (``batch_input.py``), validates every request before anything runs, skips requests
already saved (each PNG's JSON chunk carries its request's key, a hash of the resolved request), then paints the
rest through `painter.render` here or through Ray Data actors (``batch_ray.py``) running that same code.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import painter
from .batch_input import read_entries
from .batch_result import BatchItem, BatchResult
from .batch_view import BatchTracker, BatchView
from .options import one_line
from .request import PaintRequest, parse_size

BATCH_KEY = "batch_key"
"""The JSON-chunk key holding the hash of the request that painted a picture (how a rerun knows what is done)."""
_NOT_PICTURE = {"outdir", "save", "save_incomplete", "preview", "preview_interval", "device"}
"""Options that change where and how a picture is kept or watched, not the picture: left out of its key."""


# -- planning: read, resolve, validate, key ------------------------------------------------------------------------


def request_key(request: PaintRequest, occurrence: int = 0) -> str:
    """A hash of everything in a request that shapes its pictures: the key a rerun finds saved pictures by.

    Options left at their defaults are left out, so a field added to `PaintRequest` later does not change the keys
    of pictures saved before. `occurrence` tells apart identical requests of one batch (a prompt listed twice
    paints twice).
    """
    defaults = PaintRequest()
    shape = {
        name: value
        for name, value in request.to_dict().items()
        if name not in _NOT_PICTURE and value != getattr(defaults, name)
    }
    text = json.dumps([shape, occurrence], sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


class InvalidBatch(ValueError):
    """Some requests of a batch are invalid: `invalid` lists every ``(where, reason)``; the message the first few."""

    SHOWN = 3

    def __init__(self, invalid: list[tuple[str, str]], total: int) -> None:
        self.invalid = [(where, one_line(reason)) for where, reason in invalid]
        listed = "; ".join(f"{where}: {reason}" for where, reason in self.invalid[: self.SHOWN])
        more = f"; and {len(invalid) - self.SHOWN} more" if len(invalid) > self.SHOWN else ""
        super().__init__(
            f"batch: {len(invalid)} of {total} requests are invalid, nothing was painted (--skip-bad paints the "
            f"rest): {listed}{more}"
        )

    def lines(self) -> list[str]:
        """Every invalid request as ``file:line: reason``, one per line."""
        return [f"{where}: {reason}" for where, reason in self.invalid]


def plan(source: Any, options: Mapping[str, Any], skip_bad: bool = False) -> list[BatchItem]:
    """Read `source`, overlay `options` on each entry (over the kernel's defaults) and validate every request.

    Returns
    -------
    list of BatchItem
        Valid requests as ``pending`` with their keys; with `skip_bad`, invalid ones as ``invalid``.

    Raises
    ------
    ValueError
        For a bad batch option; `InvalidBatch` (without `skip_bad`) listing every invalid entry as ``file:line:
        reason``.
    """
    options = dict(options)
    if "size" in options:
        options["width"], options["height"] = parse_size(str(options.pop("size")))
    painter.new_request(**options).validate()  # a bad option for the whole batch is one message, not one per line
    items: list[BatchItem] = []
    seen: dict[str, int] = {}
    for entry in read_entries(source):
        if entry.error is not None:
            items.append(BatchItem(entry.where, None, status="invalid", reason=entry.error))
            continue
        try:
            request = painter.new_request(**{**entry.options, **options}).validate()
            if not request.prompt.strip():
                raise ValueError("prompt: empty; every request needs something to paint")
        except ValueError as error:
            items.append(BatchItem(entry.where, None, status="invalid", reason=str(error)))
            continue
        base = request_key(request)
        occurrence = seen[base] = seen.get(base, -1) + 1
        items.append(BatchItem(entry.where, request, key=request_key(request, occurrence)))
    bad = [(item.where, item.reason) for item in items if item.status == "invalid"]
    if bad and not skip_bad:
        raise InvalidBatch(bad, len(items))
    if not any(item.status == "pending" for item in items):
        raise ValueError("batch: nothing to paint (no valid request in the input)")
    return items


class SavedIndex:
    """Which batch keys a folder's PNGs carry (read from their JSON chunks), refreshed cheaply by new names only.

    Interrupted pictures (saved with ``--save-incomplete``) don't count as done.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self._read: set[str] = set()
        self._keys: dict[str, list[Path]] = {}

    def refresh(self) -> SavedIndex:
        """Read the JSON chunk of every PNG not seen yet."""
        if not self.folder.is_dir():
            return self
        from PIL import Image

        from .store import REQUEST_KEY

        for entry in os.scandir(self.folder):
            if entry.name in self._read or entry.name.startswith(".") or not entry.name.endswith(".png"):
                continue
            self._read.add(entry.name)
            try:
                with Image.open(entry.path) as image:
                    payload = json.loads(image.info.get(REQUEST_KEY, "{}"))
            except (OSError, ValueError):
                continue
            key = payload.get(BATCH_KEY) if isinstance(payload, dict) else None
            if key and payload.get("interrupted_at") is None:
                self._keys.setdefault(key, []).append(Path(entry.path))
        return self

    def saved(self, key: str) -> list[Path]:
        """The files already saved for `key`, in name order."""
        return sorted(self._keys.get(key, []))


def skip_saved(items: list[BatchItem], user_ns: Mapping[str, Any] | None) -> None:
    """Mark ``skipped`` every pending request whose pictures are all in its output folder already."""
    indexes: dict[Path, SavedIndex] = {}
    for item in items:
        if item.status != "pending" or not item.request.save:
            continue
        folder = painter.output_folder(item.request, user_ns)
        index = indexes.get(folder) or indexes.setdefault(folder, SavedIndex(folder).refresh())
        saved = index.saved(item.key)
        if len(saved) >= item.images:
            item.status, item.paths = "skipped", saved


# -- running ------------------------------------------------------------------------------------------------------


def run_local(
    items: list[BatchItem],
    view: BatchView,
    tracker: BatchTracker,
    stop: threading.Event,
    user_ns: Mapping[str, Any] | None,
) -> bool:
    """Paint the pending requests in order on the kernel's engine; returns whether the batch was stopped.

    A request that fails (a model that won't load, out of memory) is recorded with its reason and the rest go on;
    a stop or kernel interrupt ends the batch, keeping every picture already saved.
    """
    try:
        for item in items:
            if item.status != "pending":
                continue
            if stop.is_set():
                return True
            images = _paint_one(item, view, tracker, stop, user_ns)
            if item.status == "stopped":
                return True
            tracker.request_done(failed=item.status == "failed")
            view.update(tracker, images)
    except KeyboardInterrupt:  # between pictures, or while one is saved or shown: what is saved stays saved
        return True
    return False


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
        item.status = "stopped"
        view.update(tracker, result.images[: result.complete])
        return []
    item.status = "painted"
    item.reason = "" if result.paths or not item.request.save else "not saved"
    return result.images


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
    user_ns = _user_namespace()
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
        stopped = run_local(items, view, tracker, stop, user_ns) if todo else False
        where = "local"
    else:
        from .batch_ray import run_ray

        stopped, where, save_seconds = run_ray(
            items, cluster, view, tracker, stop, user_ns, workers, cpus_per_worker, gpus_per_worker, shared_outdir
        )
    if todo:
        view.update(tracker, final=True)
    return BatchResult(items, time.perf_counter() - started, tracker.first_image, stopped, where, save_seconds)


# -- the command line: %paint batch FILE [options] and jupyter-sd batch FILE [options] ---------------------------

COMMAND_HELP = """\
Paint every request of a file or folder, here or on a Ray cluster; a rerun skips what is already saved.

    %paint batch prompts.txt --steps 25 --model my-model    a prompt per line, or blocks of generation data
    %paint batch recipes.csv                                a column per option (steps, cfg, seed, size, ...)
    %paint batch folder/of/pngs/ --model other-model        re-render the recipes of PNGs
    %paint batch prompts.txt --ray auto                     the same on Ray, one pipeline per GPU

Options after FILE apply to every request and win over the file's values. Batch options:
    --skip-bad             paint the valid requests when some lines are invalid (else nothing runs)
    --ray ADDRESS          paint on Ray: auto, ray://host:10001, or local (a Ray on this machine)
    --workers N            Ray actors (default: one per GPU, or one per --cpus-per-worker CPUs)
    --cpus-per-worker N    CPUs per actor on a CPU-only cluster (default 1)
    --gpus-per-worker N    GPUs per actor (default 1)
    --shared-outdir        Ray workers write into --outdir themselves (a folder every node sees)
"""


class _BatchParser(argparse.ArgumentParser):
    """The batch's own flags; the request options go on to the generated parser."""

    def error(self, message: str) -> None:  # argparse would exit the kernel's process
        raise ValueError(f"batch: {message} (see --help)")


def _batch_parser() -> argparse.ArgumentParser:
    parser = _BatchParser(prog="batch", add_help=False, allow_abbrev=False, argument_default=argparse.SUPPRESS)
    parser.add_argument("--skip-bad", action="store_true")
    parser.add_argument("--ray", dest="cluster")
    parser.add_argument("--shared-outdir", action="store_true")
    for flag, kind in (("--workers", int), ("--cpus-per-worker", float), ("--gpus-per-worker", float)):
        parser.add_argument(flag, type=kind)
    return parser


def parse_command(line: str | list[str], prog: str = "%paint batch") -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Split a batch command line into its source, the batch's own options and the request options.

    Returns
    -------
    tuple
        ``(source, batch_kwargs, options)``; source is empty when ``--help`` was asked.

    Raises
    ------
    ValueError
        For a missing FILE, an unknown option or a malformed value.
    """
    import shlex

    from .options import build_parser, parse_options

    words = shlex.split(line) if isinstance(line, str) else list(line)
    if any(word in ("-h", "--help") for word in words):
        return "", {}, {"help": True}
    if not words or words[0].startswith("-"):
        raise ValueError(f"{prog}: give the file or folder first: {prog} FILE [options] (see --help)")
    known, rest = _batch_parser().parse_known_args(words[1:])
    options = parse_options(build_parser(prog, prompt_words=False), rest)
    return words[0], vars(known), options


def _user_namespace() -> Mapping[str, Any] | None:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return None
    shell = get_ipython()
    return shell.user_ns if shell is not None else None


def _default_view() -> BatchView:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return BatchView()
    shell = get_ipython()
    if shell is not None and type(shell).__name__ == "ZMQInteractiveShell":
        from .batch_view import InlineBatchView

        return InlineBatchView()
    from .batch_view import ConsoleBatchView

    return ConsoleBatchView()
