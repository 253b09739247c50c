"""The models folder, in AUTOMATIC1111's layout, that checkpoints, LoRA, embeddings and VAEs are found in.

Users already keep an A1111 ``models`` folder (often on Google Drive): ``Stable-diffusion/`` for checkpoints,
``Lora/`` for LoRA and LyCORIS, ``embeddings/`` for textual inversion, ``VAE/`` for VAEs. This module knows where
that folder is and what lives in each subfolder; lookup by name or hash, the hash cache and downloads build on it.
Pure Python: no torch, no IPython.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SUBFOLDERS: dict[str, str] = {
    "checkpoint": "Stable-diffusion",
    "lora": "Lora",
    "embedding": "embeddings",
    "vae": "VAE",
}
"""Kind of model file → its subfolder of the models folder (A1111's names)."""

ENV_VAR = "JUPYTER_SD_MODELS"
_COLAB_DRIVE_MODELS = Path("/content/drive/MyDrive/jupyter_sd/models")
_LOCAL_MODELS = Path("~/.cache/jupyter_sd/models")
_models_dir: Path | None = None


def default_models_dir() -> Path:
    """Where the models folder is when nobody said.

    Drive's ``MyDrive/jupyter_sd/models`` when Drive is mounted in Colab, else ``~/.cache/jupyter_sd/models``;
    ``$JUPYTER_SD_MODELS`` overrides both.
    """
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    if _COLAB_DRIVE_MODELS.parent.parent.is_dir():
        return _COLAB_DRIVE_MODELS
    return _LOCAL_MODELS.expanduser()


def models_dir() -> Path:
    """The kernel's models folder (``%paint config models=DIR`` sets it)."""
    return _models_dir if _models_dir is not None else default_models_dir()


def set_models_dir(path: str | os.PathLike[str] | None) -> Path:
    """Point the kernel at another models folder (``None`` or ``""`` goes back to the default)."""
    global _models_dir
    _models_dir = Path(path).expanduser() if path else None
    return models_dir()


def is_models_dir_set() -> bool:
    """Whether ``%paint config models=DIR`` (or `set_models_dir`) chose the folder, rather than the default."""
    return _models_dir is not None


def subfolder(kind: str) -> Path:
    """The folder for one kind of file (``checkpoint``, ``lora``, ``embedding``, ``vae``).

    Raises
    ------
    ValueError
        For a kind that is not one of `SUBFOLDERS`.
    """
    if kind not in SUBFOLDERS:
        msg = f"models: unknown kind '{kind}' (allowed: {', '.join(SUBFOLDERS)})"
        raise ValueError(msg)
    return models_dir() / SUBFOLDERS[kind]


# -- what is in the folder ----------------------------------------------------------------------------------------

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl")
"""Suffixes of files loaded with pickle, which can run code: refused unless ``--allow-pickle``."""

SUFFIXES: dict[str, tuple[str, ...]] = {
    "checkpoint": (".safetensors", ".ckpt"),
    "lora": (".safetensors", ".pt", ".ckpt"),
    "embedding": (".safetensors", ".pt", ".bin"),
    "vae": (".safetensors", ".pt", ".ckpt"),
}
"""The files A1111 lists in each subfolder (a diffusers folder counts too for checkpoints and VAEs)."""

BIG_FILE = 100_000_000
"""Bytes above which hashing a file takes seconds (a checkpoint: half a minute on Drive)."""
_FOLDER_MARKERS = {"checkpoint": "model_index.json", "vae": "config.json"}
_HEX = re.compile(r"^[0-9a-fA-F]{8,64}$")


@dataclass(frozen=True)
class ModelFile:
    """One model in the folder: its kind, A1111's name for it (the file stem), where it is and how big."""

    kind: str
    name: str
    path: Path
    size: int

    @property
    def is_pickle(self) -> bool:
        """Whether loading it runs pickle (``.pt``, ``.ckpt``, ``.bin``)."""
        return self.path.suffix.lower() in PICKLE_SUFFIXES

    @property
    def short_hash(self) -> str:
        """A1111's short hash of this file (see `short_hash`); empty for a diffusers folder."""
        return short_hash(self.kind, self.path) if self.path.is_file() else ""


def list_models(kind: str | None = None) -> list[ModelFile]:
    """Every model in the folder (all kinds, or one), sorted by kind then path; subfolders are searched too.

    Raises
    ------
    ValueError
        For a kind that is not one of `SUBFOLDERS`.
    """
    kinds = list(SUBFOLDERS) if kind is None else [kind]
    found: list[ModelFile] = []
    for each in kinds:
        root = subfolder(each)
        if root.is_dir():
            found += sorted(_walk(each, root), key=lambda item: str(item.path).lower())
    return found


def _walk(kind: str, root: Path) -> list[ModelFile]:
    found = []
    marker = _FOLDER_MARKERS.get(kind)
    for folder, dirs, files in os.walk(root, followlinks=True):
        here = Path(folder)
        if marker and here != root and marker in files:
            size = sum(p.stat().st_size for p in here.rglob("*") if p.is_file())
            found.append(ModelFile(kind, here.name, here, size))
            dirs[:] = []
            continue
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            path = here / name
            if path.suffix.lower() in SUFFIXES[kind] and not name.startswith("."):
                found.append(ModelFile(kind, path.stem, path, path.stat().st_size))
    return found


def find_model(kind: str, name: str, hash_big_files: bool = True) -> ModelFile | None:
    """Find a model by what A1111 calls it: file stem, path inside the subfolder, or hash (a prefix of 8+ hex).

    Hashes are A1111's: a checkpoint's ``Model hash`` (sha256, or the old 8-hex hash), a LoRA's addnet hash, an
    embedding's or VAE's sha256. Files are hashed once (see `sha256`); names are tried before any hashing.
    With ``hash_big_files=False`` (lookups nobody asked for, such as pasted recipes) files over 100 MB are matched
    only when their hash is already cached (``%paint models`` hashes the folder).
    """
    name = name.strip()
    if not name:
        return None
    models = list_models(kind)
    root = subfolder(kind)
    wanted = name.replace("\\", "/")
    for model in models:
        relative = model.path.relative_to(root).as_posix()
        if wanted in (model.name, relative, relative.rsplit(".", 1)[0]):
            return model
    if kind == "lora":  # A1111 also knows a LoRA by the name kohya stored in it (its "alias")
        for model in models:
            if (
                model.path.suffix.lower() == ".safetensors"
                and safetensors_metadata(model.path).get("ss_output_name") == wanted
            ):
                return model
    if _HEX.match(name):
        prefix = name.lower()
        for model in models:
            if not model.path.is_file():
                continue
            if not hash_big_files and model.size > BIG_FILE and not has_cached_hash(kind, model.path):
                continue
            if any(h.startswith(prefix) for h in _hashes_of(kind, model.path, len(prefix))):
                return model
    return None


def safetensors_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file's header (kohya keeps the LoRA's name and training notes there)."""
    try:
        with open(path, "rb") as file:
            size = int.from_bytes(file.read(8), "little")
            if not 0 < size < 100_000_000:
                return {}
            header = json.loads(file.read(size))
    except (OSError, ValueError):
        return {}
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    return metadata if isinstance(metadata, dict) else {}


def _hashes_of(kind: str, path: Path, length: int) -> list[str]:
    hashes = [sha256(path)]
    if kind == "lora" and path.suffix.lower() == ".safetensors":
        hashes.append(addnet_hash(path))
    if kind == "checkpoint" and length == 8:
        hashes.append(old_model_hash(path))
    return hashes


def close_matches(kind: str, name: str, count: int = 3) -> list[str]:
    """The names in the folder closest to `name` (difflib, case-insensitive), best first."""
    names = {model.name.lower(): model.name for model in list_models(kind)}
    return [names[hit] for hit in difflib.get_close_matches(name.lower(), names, n=count, cutoff=0.5)]


def find_models(name: str, kind: str | None = None) -> list[ModelFile]:
    """`find_model` in one subfolder, or in each of them (a LoRA and a checkpoint may share a name)."""
    kinds = list(SUBFOLDERS) if kind is None else [kind]
    return [found for each in kinds if (found := find_model(each, name)) is not None]


def not_found_message(kind: str | None, name: str) -> str:
    """One line for a name that is not in the folder: where we looked and the closest names there."""
    kinds = list(SUBFOLDERS) if kind is None else [kind]
    folder = subfolder(kind) if kind else models_dir()
    hints = [hint for each in kinds for hint in close_matches(each, name)]
    if hints:
        tail = f" (closest: {', '.join(dict.fromkeys(hints))})"
    elif not any(list_models(each) for each in kinds):
        tail = " (the folder is empty or missing; %paint config models=DIR points at another)"
    else:
        tail = " (%paint models lists what is there)"
    return f"{kind or 'models'}: no '{name}' in {folder}{tail}"


# -- hashes as A1111 writes them, computed once per file ----------------------------------------------------------

_CACHE_FILE = "jupyter_sd-hashes.json"
_cache_lock = threading.Lock()
_memory_cache: dict[str, tuple[int | None, dict[str, dict]]] = {}


def hash_cache_path() -> Path:
    """The JSON file hashes are kept in: in the models folder (so a Drive folder keeps them across sessions)."""
    return models_dir() / _CACHE_FILE


def sha256(path: str | os.PathLike[str]) -> str:
    """The file's full sha256 in hex (A1111's ``Model hash`` is its first 10, ``TI hashes`` its first 12)."""
    return _cached(Path(path), "sha256", _sha256_of_file)


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
    addnet hash (sha256 for a non-safetensors LoRA).
    """
    path = Path(path)
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


def _sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _addnet_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        header = int.from_bytes(file.read(8), "little")
        file.seek(header + 8)
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


# -- the table %paint models prints --------------------------------------------------------------------------------


def format_size(size: int) -> str:
    """Bytes as people read them: ``2.13 GB``, ``144 MB``, ``37 KB``."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size} B"


def model_row(model: ModelFile) -> dict[str, str]:
    """A model as one row of the table: kind, name, size, A1111 hash (files are hashed once, then cached)."""
    return {"kind": model.kind, "name": model.name, "size": format_size(model.size), "hash": model.short_hash}


def models_table(kind: str | None = None) -> list[dict[str, str]]:
    """One row per model (kind, name, size, hash), hashing files not seen before."""
    return [model_row(model) for model in list_models(kind)]


def format_table(rows: list[dict[str, str]]) -> str:
    """Rows as an aligned plain-text table (it reads the same in a notebook, a terminal and a saved .ipynb)."""
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(row[c])) for row in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns).rstrip()]
    lines += ["  ".join(str(row[c]).ljust(widths[c]) for c in columns).rstrip() for row in rows]
    return "\n".join(lines)


def kind_named(text: str) -> str:
    """Accept a kind as we name it or as A1111's folder is named (``Lora``, ``Stable-diffusion``, ``models``).

    Raises
    ------
    ValueError
        For anything else, with the allowed names.
    """
    lowered = text.strip().lower().rstrip("s")
    for kind, folder in SUBFOLDERS.items():
        if lowered in (kind, folder.lower().rstrip("s")) or (kind == "checkpoint" and lowered == "model"):
            return kind
    msg = f"models: unknown kind '{text}' (allowed: {', '.join(SUBFOLDERS)})"
    raise ValueError(msg)
