"""The ``--cache`` option's values as text: which step-cache modes exist, their one number, how they are written.

A mode is a name with an optional ``:NUMBER`` (``deepcache:3``); infotext writes the space form A1111-style keys
use (``Cache: deepcache 3``), and pasting reads either back. The engine (``engine/step_cache.py``) decides which
modes a model family runs and what ``auto`` means there; this module only knows the grammar (no torch).
"""

from __future__ import annotations

import re

CACHE_MODES: dict[str, tuple[type, float, float, float]] = {
    "deepcache": (int, 2, 10, 3),
    "fbcache": (float, 0.01, 1.0, 0.08),
    "taylorseer": (int, 2, 10, 3),
    "magcache": (float, 0.01, 1.0, 0.06),
}
"""Mode → (its number's type, lowest, highest, default): DeepCache's refresh interval on UNets; on transformers the
first-block cache's threshold (diffusers' hook: the later blocks are skipped while the first block's output changes
by less than that, relatively), TaylorSeer's refresh interval (the blocks' outputs between are extrapolated) and
MagCache's error threshold (the blocks are skipped while the accumulated magnitude-ratio error stays below it)."""

CACHE_CHOICES = (
    "off", "auto", "deepcache", "deepcache:2", "deepcache:3", "deepcache:4", "deepcache:5", "fbcache", "fbcache:0.08",
    "taylorseer", "taylorseer:2", "taylorseer:3", "taylorseer:4", "magcache", "magcache:0.06", "magcache:0.12",
)  # fmt: skip
"""The values offered (panel, docs); any mode with a number in its range is accepted too."""

_VALUE_RE = re.compile(r"^\s*([a-z_-]+)\s*(?:[:\s]\s*([0-9.]+))?\s*$", re.IGNORECASE)


def normalise_cache(text: str) -> str:
    """``DeepCache 3`` / ``deepcache:3`` / ``deepcache`` → the option's spelling (``deepcache:3``, ``deepcache``)."""
    match = _VALUE_RE.match(text)
    if not match:
        return text.strip()
    name, number = match.group(1).lower(), match.group(2)
    return f"{name}:{number}" if number else name


def read_cache(value: str) -> tuple[str, float | None]:
    """The mode and its number (None for ``off``/``auto``); the number is the mode's default when not given.

    Raises
    ------
    ValueError
        One line naming the allowed values.
    """
    name, _, number = normalise_cache(value).partition(":")
    if name in ("off", "auto") and not number:
        return name, None
    if name not in CACHE_MODES:
        msg = f"cache: unknown '{value}' (allowed: off, auto, {', '.join(f'{m}[:N]' for m in CACHE_MODES)})"
        raise ValueError(msg)
    kind, low, high, default = CACHE_MODES[name]
    try:
        parsed = kind(number) if number else kind(default)
    except ValueError:
        parsed = None
    if parsed is None or not low <= parsed <= high:
        msg = (
            f"cache: {name}'s number must be {'a whole number ' if kind is int else ''}{low:g}–{high:g} (got {number})"
        )
        raise ValueError(msg)
    return name, parsed


def check_cache(value: str) -> None:
    """Refuse a value `read_cache` cannot read (the field's check)."""
    read_cache(value)


def cache_text(value: str) -> str:
    """The infotext value: ``deepcache:3`` → ``deepcache 3`` (``off`` is written as no key at all)."""
    name, number = read_cache(value)
    return name if number is None else f"{name} {number:g}"
