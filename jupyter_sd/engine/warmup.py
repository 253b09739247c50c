"""Import torch, diffusers and CLIP in the background while the user types the first prompt.

Importing them takes several seconds (torch, diffusers with ``torch._dynamo``, transformers) and the first
picture used to pay for it. `start` (called when ``%load_ext jupyter_sd`` returns) runs the imports on a daemon
thread; the engine calls `wait` before its own first heavy import, so nothing is imported twice and the two
threads never race inside one module's import. Whatever the thread prints or warns goes to the ``jupyter_sd``
logger (`quiet`), never into whichever cell happens to be running.
"""

from __future__ import annotations

import builtins
import importlib
import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from .quiet import quiet, refresh

MODULES = (
    "transformers.utils.logging",  # first, so its stderr handler exists and `quiet` can filter it
    "torch",
    "diffusers.utils",
    "safetensors.torch",
    "transformers.models.clip.modeling_clip",
    "transformers.models.clip.tokenization_clip",
    "diffusers.models.autoencoders.autoencoder_kl",
    "diffusers.models.unets.unet_2d_condition",
    "diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion",
    "diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl",
    "diffusers.schedulers",
    "jupyter_sd.engine.schedulers",
)
"""What the first picture imports, in the order the engine itself would import it (dependencies first)."""

_LOG = logging.getLogger("jupyter_sd.warmup")
_thread: threading.Thread | None = None
_start_lock = threading.Lock()
_depth = threading.local()
_original_import: Any = None
GUARD_TIMEOUT = 120.0
"""At most this long an import statement of another thread waits for the background imports (then it goes on)."""
seconds: float | None = None
"""How long the background imports took (None until they are done)."""


def _top_down(name: str) -> list[str]:
    """``a.b.c`` → ``a``, ``a.b``, ``a.b.c``.

    Importing parents first, the thread never holds a child's import lock while waiting for a parent another
    thread is importing (the way two imports can deadlock).
    """
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def _import_all() -> None:
    global seconds
    started = time.perf_counter()
    try:
        with quiet():
            for name in MODULES:
                for module in _top_down(name):
                    try:
                        importlib.import_module(module)
                    except Exception as error:  # a missing optional piece: the engine reports it when needed
                        _LOG.debug("warm import of %s failed: %s", module, error)
                        break
                    refresh()
    finally:
        seconds = time.perf_counter() - started
        _LOG.debug("warm imports done in %.2f s", seconds)


def _ready(name: str, fromlist: Any) -> bool:
    """Whether ``from name import fromlist`` needs no import at all (lazy attributes are not in ``__dict__`` yet)."""
    module = sys.modules.get(name)
    if module is None or getattr(getattr(module, "__spec__", None), "_initializing", False):
        return False
    return all(item == "*" or item in vars(module) for item in fromlist or ())


def _from_jupyter_sd(namespace: Any) -> bool:
    return isinstance(namespace, dict) and str(namespace.get("__name__", "")).startswith("jupyter_sd")


def _guarded_import(name: str, *args: Any, **kwargs: Any) -> Any:
    """``builtins.__import__`` while the thread runs.

    Another thread's outermost import of a module not loaded yet waits for the background imports first, so the
    two never import one package at once (no half-initialised module, no deadlock: at its outermost import a
    thread holds no import lock the background thread could need).
    """
    depth = getattr(_depth, "value", 0)
    thread = _thread
    if (
        depth == 0
        and thread is not None
        and thread.is_alive()
        and thread is not threading.current_thread()
        and not kwargs.get("level", args[3] if len(args) > 3 else 0)  # relative: inside a package's own import
        and not _from_jupyter_sd(args[0] if args else kwargs.get("globals"))  # ours wait where they must (`wait`)
        and not _ready(name, kwargs.get("fromlist", args[2] if len(args) > 2 else ()))
    ):
        thread.join(GUARD_TIMEOUT)
    _depth.value = depth + 1
    try:
        return _original_import(name, *args, **kwargs)
    finally:
        _depth.value = depth


def _run(then: Callable[[], Any] | None) -> None:
    try:
        _import_all()
    finally:
        if builtins.__import__ is _guarded_import:
            builtins.__import__ = _original_import
    if then is not None:
        try:
            with quiet():
                then()
        except Exception as error:  # the first cell loads it again and says what went wrong
            _LOG.debug("warm load failed: %s", error)


def start(then: Callable[[], Any] | None = None) -> bool:
    """Start the background imports once per process; returns whether this call started them.

    `then` runs in the same thread once the imports are done (the kernel loads its default model there, so the
    first picture does not wait for it).
    """
    global _thread, _original_import
    with _start_lock:
        if _thread is not None:
            return False
        _thread = threading.Thread(target=_run, args=(then,), name="jupyter_sd-warm-imports", daemon=True)
        if builtins.__import__ is not _guarded_import:
            _original_import = builtins.__import__
            builtins.__import__ = _guarded_import
        _thread.start()
        return True


def running() -> bool:
    """Whether the background imports are still going."""
    return _thread is not None and _thread.is_alive()


def wait(timeout: float | None = None) -> None:
    """Block until the background imports are done (at once if they never started, or from the thread itself)."""
    thread = _thread
    if thread is not None and thread is not threading.current_thread():
        thread.join(timeout)
