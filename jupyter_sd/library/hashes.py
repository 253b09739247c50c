"""A1111's hashes of model files (``Model hash``, ``Lora hashes``, ``TI hashes``, ``VAE hash``), computed once.

Hashing a checkpoint reads gigabytes, so every hash is kept in ``jupyter_sd-hashes.json`` in the models folder
(a Drive folder keeps them across sessions), keyed by path and checked against size and mtime. No torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

_CACHE_FILE = "jupyter_sd-hashes.json"
_cache_lock = threading.Lock()
_memory_cache: dict[str, tuple[int | None, dict[str, dict]]] = {}


def hash_cache_path() -> Path:
    """The JSON file hashes are kept in: in the models folder (so a Drive folder keeps them across sessions)."""
    from .folder import models_dir

    return models_dir() / _CACHE_FILE


def sha256(path: str | os.PathLike[str]) -> str:
    """The file's full sha256 in hex (A1111's ``Model hash`` is its first 10, ``TI hashes`` its first 12)."""
    return _cached(Path(path), "sha256", file_sha256)


def addnet_hash(path: str | os.PathLike[str]) -> str:
    """sha256 of a safetensors file's payload after its JSON header (kohya's "addnet" hash, used for LoRA)."""
    return _cached(Path(path), "addnet", _addnet_of_file)


def old_model_hash(path: str | os.PathLike[str]) -> str:
    """A1111's old 8-hex checkpoint hash: sha256 of the 64 KiB at offset 1 MiB (still seen in old recipes)."""
    with open(path, "rb") as file:
        file.seek(0x100000)
        return hashlib.sha256(file.read(0x10000)).hexdigest()[:8]


def short_hash(kind: str, path: str | os.PathLike[str]) -> str:
    """The hash A1111 writes for this kind of file.

    ``Model hash``/``VAE hash``: 10 hex of sha256; ``TI hashes``: 12 hex of sha256; ``Lora hashes``: 12 hex of the
    addnet hash (sha256 for a non-safetensors LoRA); sd-webui-controlnet's ``Model: NAME [hash]``: the old 8-hex hash.
    """
    path = Path(path)
    if kind == "controlnet":
        return old_model_hash(path)
    if kind == "lora" and path.suffix.lower() == ".safetensors":
        return addnet_hash(path)[:12]
    return sha256(path)[: 12 if kind in ("lora", "embedding") else 10]


def has_cached_hash(kind: str, path: str | os.PathLike[str]) -> bool:
    """Whether `short_hash` of this file is in the cache already (else it reads the whole file, GBs for a model)."""
    path = Path(path)
    which = "addnet" if kind == "lora" and path.suffix.lower() == ".safetensors" else "sha256"
    stat = path.stat()
    with _cache_lock:
        entry = _load_cache(hash_cache_path()).get(str(path.resolve()))
    return bool(entry) and entry.get("size") == stat.st_size and entry.get("mtime") == stat.st_mtime and which in entry


def file_digest(path: str | os.PathLike[str], skip: int = 0) -> Any:
    """A sha256 object fed with the file's bytes from offset `skip`, read in 1 MiB blocks (never whole in memory).

    The one file hasher: model hashes, downloads (resumed from a partial file) and input pictures all use it.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        file.seek(skip)
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 of a file's bytes as lowercase hex, uncached (`sha256` caches it for model files)."""
    return file_digest(path).hexdigest()


def _addnet_of_file(path: Path) -> str:
    with open(path, "rb") as file:
        header = int.from_bytes(file.read(8), "little")
    return file_digest(path, skip=header + 8).hexdigest()


def _cached(path: Path, which: str, compute: Callable[[Path], str]) -> str:
    """One hash of one file, from the cache when the file's size and mtime are unchanged."""
    stat = path.stat()
    key = str(path.resolve())
    cache_file = hash_cache_path()
    with _cache_lock:
        entries = _load_cache(cache_file)
        entry = entries.get(key)
        if entry and entry.get("size") == stat.st_size and entry.get("mtime") == stat.st_mtime and which in entry:
            return entry[which]
    value = compute(path)
    with _cache_lock:
        entries = _load_cache(cache_file)
        entry = entries.get(key)
        if not entry or entry.get("size") != stat.st_size or entry.get("mtime") != stat.st_mtime:
            entry = {"size": stat.st_size, "mtime": stat.st_mtime}
        entry[which] = value
        entries[key] = entry
        _save_cache(cache_file, entries)
    return value


def _load_cache(cache_file: Path) -> dict[str, dict]:
    """The cache's entries, read again whenever the file changed (another kernel may share a Drive folder)."""
    key = str(cache_file)
    try:
        stamp = cache_file.stat().st_mtime_ns
    except OSError:
        stamp = None
    seen = _memory_cache.get(key)
    if seen is None or (stamp is not None and seen[0] != stamp):
        try:
            entries = json.loads(cache_file.read_text()) if stamp is not None else {}
        except (OSError, ValueError):
            entries = {}
        seen = _memory_cache[key] = (stamp, entries if isinstance(entries, dict) else {})
    return seen[1]


def _save_cache(cache_file: Path, entries: dict[str, dict]) -> None:
    """Write the cache atomically; a folder we cannot write to keeps the hashes in memory only."""
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        partial = cache_file.with_name(f".{cache_file.name}.{os.getpid()}.tmp")
        partial.write_text(json.dumps(entries, indent=0, sort_keys=True))
        os.replace(partial, cache_file)
        _memory_cache[str(cache_file)] = (cache_file.stat().st_mtime_ns, entries)
    except OSError:
        pass
