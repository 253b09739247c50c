"""Keep third-party chatter out of the cell: library log lines and Python warnings go to the ``jupyter_sd`` logger.

diffusers, transformers and huggingface_hub each print through their own stderr handler (deprecation notices,
"Retrying in 8s", torchvision fallbacks), and Python warnings print beside them. While `quiet` is active those
records are handed to ``logging.getLogger("jupyter_sd")`` at DEBUG level instead: nothing reaches the user's
output, and ``logging.getLogger("jupyter_sd").setLevel("DEBUG")`` (with a handler) shows them when debugging.
Only records of the calling thread are redirected, so a background import never hides the user's own warnings.
"""

from __future__ import annotations

import logging
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

LOGGER = logging.getLogger("jupyter_sd")
LIBRARIES = ("diffusers", "transformers", "huggingface_hub", "accelerate", "peft", "torch")
"""Library root loggers whose output `quiet` redirects."""
_LOGGING_MODULES = ("diffusers.utils.logging", "transformers.utils.logging")
_active: dict[int, int] = {}  # thread id -> nesting depth
_state_lock = threading.RLock()
_original_showwarning: Any = None


class _ThreadFilter(logging.Filter):
    """Drop a library's record from its own handlers when its thread is quiet, logging it to ours instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.thread not in _active or record.name.split(".")[0] not in LIBRARIES:
            return True
        LOGGER.debug("[%s] %s", record.name, record.getMessage())
        return False


_FILTER = _ThreadFilter()


def _configure_loaded_libraries() -> None:
    """Let libraries already imported create their lazy stderr handler now, so the filter can be put on it."""
    for name in _LOGGING_MODULES:
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "get_logger"):
            module.get_logger()


def _filter_handlers() -> None:
    for name in LIBRARIES:
        for handler in logging.getLogger(name).handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)
    for handler in [logging.lastResort, *logging.getLogger().handlers]:  # where a handler-less library's go
        if handler is not None and _FILTER not in handler.filters:
            handler.addFilter(_FILTER)


def _showwarning(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    if threading.get_ident() in _active:
        LOGGER.debug("%s: %s (%s:%s)", category.__name__, message, filename, lineno)
        return
    (_original_showwarning or warnings._showwarning_orig)(message, category, filename, lineno, file, line)  # type: ignore[attr-defined]


@contextmanager
def quiet() -> Iterator[None]:
    """Redirect this thread's library log records and warnings to the ``jupyter_sd`` logger while inside.

    Call `refresh` after importing a library inside the block, so its freshly made handler is filtered too.
    """
    global _original_showwarning
    ident = threading.get_ident()
    with _state_lock:
        _active[ident] = _active.get(ident, 0) + 1
        if warnings.showwarning is not _showwarning:
            _original_showwarning = warnings.showwarning
            warnings.showwarning = _showwarning
        refresh()
    try:
        yield
    finally:
        with _state_lock:
            _active[ident] -= 1
            if not _active[ident]:
                del _active[ident]
            if not _active and warnings.showwarning is _showwarning:
                warnings.showwarning = _original_showwarning
                _original_showwarning = None


def refresh() -> None:
    """Put the filter on handlers that libraries imported since the block began have made."""
    with _state_lock:
        _configure_loaded_libraries()
        _filter_handlers()


def silence_progress_bars() -> None:
    """Loading would print tqdm bars (widgets in a notebook): we show our own progress line instead."""
    for name in ("diffusers.utils.logging", "transformers.utils.logging"):
        module = sys.modules.get(name)
        if module is not None:
            module.disable_progress_bar()
    try:
        from huggingface_hub.utils import disable_progress_bars
    except ImportError:  # pragma: no cover - huggingface_hub comes with diffusers
        return
    disable_progress_bars()


HARMLESS_WARNINGS = (
    # torchsde's Brownian tree (the DPM++ SDE samplers' noise) clamps a query time that float round-off put a hair
    # past its interval ("Should have tb<=t1 but got tb=4.116698265075684 and t1=4.116698"): nothing is wrong
    (r"Should have t[ab](<=t1|>=t0) but got", r"torchsde\."),
)
"""Warnings libraries give while painting that say nothing the user can act on: ``(message regex, module regex)``."""


def ignore_harmless_warnings() -> None:
    """Drop `HARMLESS_WARNINGS` (idempotent: called before every generation, so a reset of the filters is undone)."""
    for message, module in HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=UserWarning, module=module)
