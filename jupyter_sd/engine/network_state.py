"""What the extra networks put on one pipeline, and the file helpers LoRA, embeddings and VAE share.

The state lives on the pipeline object (a new model starts clean): which LoRA adapters and embedding tokens are
loaded, which files were refused and why, the model's own VAE. Weights files are read here, safetensors always and
a pickle only when allowed.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import library

Notice = Callable[[str], None]


@dataclass
class LoadedLora:
    """One LoRA file loaded as a peft adapter: its name, file stamp, A1111 short hash and the parts it touches."""

    adapter: str
    stamp: tuple
    short_hash: str
    components: tuple[str, ...]
    last_used: int = 0


@dataclass
class LoadedEmbedding:
    """One embedding file loaded as tokens (``stem``, ``stem_1``, …) on the tokenizer(s)."""

    stamp: tuple
    short_hash: str
    tokens: tuple[str, ...]


@dataclass
class NetworkState:
    """What is loaded on one pipeline (kept on the pipeline object, so a new model starts clean)."""

    loras: dict[str, LoadedLora] = field(default_factory=dict)
    embeddings: dict[str, LoadedEmbedding] = field(default_factory=dict)
    refused: dict[str, tuple] = field(default_factory=dict)
    """Files that could not be used: path → (size, mtime, allow_pickle) and the line that said why."""
    active: tuple | None = None
    own_vae: Any = None
    vae: tuple | None = None
    cells: int = 0
    loads: int = 0
    """Files loaded onto this pipeline so far (LoRA, embeddings, VAEs): a cell that only changes weights adds none."""


def state_of(pipe: Any) -> NetworkState:
    """The networks state of a pipeline (created on first use)."""
    state = getattr(pipe, "_jupyter_sd_networks", None)
    if state is None:
        state = NetworkState()
        pipe._jupyter_sd_networks = state
    return state


def file_stamp(path: Path) -> tuple:
    """``(size, mtime)``: a file changed on disk is loaded again."""
    stat = path.stat()
    return (stat.st_size, stat.st_mtime)


def hash_with_notice(kind: str, path: Path, notice: Notice) -> str:
    """The A1111 short hash of a file, saying so first when a big file is hashed for the first time."""
    if path.stat().st_size > library.BIG_FILE and not library.has_cached_hash(kind, path):
        notice(f"hashing {path.name} once for its A1111 hash ({library.format_size(path.stat().st_size)})…")
    return library.short_hash(kind, path)


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Diffusers and peft log and warn while loading adapters; what matters reaches the user as our one line."""
    loggers = [logging.getLogger(name) for name in ("diffusers", "peft", "transformers")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def read_weights(path: Path, allow_pickle: bool, kind: str) -> dict[str, Any]:
    """Read a weights file: safetensors always; a pickle only when allowed (``torch.load(weights_only=True)``).

    Raises
    ------
    ValueError
        One line naming the file: a pickle without ``allow_pickle``, or a file that does not read (truncated, …).
    """
    is_pickle = path.suffix.lower() != ".safetensors"
    if is_pickle and not allow_pickle:
        msg = (
            f"{kind}: {path.name} is a pickle file, which can run code when loaded "
            "(pass --allow-pickle if you trust it); painting without it"
        )
        raise ValueError(msg)
    try:
        if not is_pickle:
            from safetensors.torch import load_file

            return load_file(str(path))
        import torch

        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:  # safetensors and pickle raise their own kinds for a damaged file
        msg = f"{kind}: could not read {path.name} ({first_line(error)}); painting without it"
        raise ValueError(msg) from error


def first_line(error: BaseException) -> str:
    """An error's first line, short enough for a one-line notice."""
    lines = str(error).strip().splitlines()
    return (lines[0][:160] if lines else type(error).__name__).rstrip(".: ")
