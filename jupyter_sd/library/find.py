"""What is in the models folder: every model file by kind, found by A1111's name or by any of its hashes.

Pure Python: no torch, no IPython. Hashes come from `hashes`, the folder's place from `folder`.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .folder import SUBFOLDERS, models_dir, subfolder
from .hashes import addnet_hash, has_cached_hash, old_model_hash, sha256, short_hash

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl")
"""Suffixes of files loaded with pickle, which can run code: refused unless ``--allow-pickle``."""

SUFFIXES: dict[str, tuple[str, ...]] = {
    "checkpoint": (".safetensors", ".ckpt"),
    "lora": (".safetensors", ".pt", ".ckpt"),
    "embedding": (".safetensors", ".pt", ".bin"),
    "vae": (".safetensors", ".pt", ".ckpt"),
    "upscaler": (".pth", ".safetensors", ".pt"),
    "controlnet": (".safetensors", ".pth", ".ckpt", ".pt", ".bin"),
}
"""The files A1111 lists in each subfolder (a diffusers folder counts too for checkpoints and VAEs)."""

BIG_FILE = 100_000_000
"""Bytes above which hashing a file takes seconds (a checkpoint: half a minute on Drive)."""
_FOLDER_MARKERS = {"checkpoint": "model_index.json", "vae": "config.json", "controlnet": "config.json"}
_NOT_MODELS = {"controlnet": "annotators"}
"""A subfolder of a kind's folder that holds something else: the preprocessors' weights in ``ControlNet/``."""
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
        weights = hashed_file(self.kind, self.path)
        return short_hash(self.kind, weights) if weights is not None else ""


def hashed_file(kind: str, path: Path) -> Path | None:
    """The file a model's hash is of: the file itself, or a diffusers ControlNet folder's weights file."""
    if path.is_file():
        return path
    if kind == "controlnet" and path.is_dir():
        for name in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"):
            if (path / name).is_file():
                return path / name
    return None


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
        dirs[:] = [d for d in dirs if not d.startswith(".") and not (here == root and d == _NOT_MODELS.get(kind))]
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
            weights = hashed_file(kind, model.path)
            if weights is None:
                continue
            cheap = kind == "controlnet" and len(prefix) == 8  # the old hash reads 64 KiB, not the file
            if not hash_big_files and model.size > BIG_FILE and not cheap and not has_cached_hash(kind, weights):
                continue
            if any(h.startswith(prefix) for h in _hashes_of(kind, weights, len(prefix))):
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
    if kind == "controlnet" and length == 8:  # sd-webui-controlnet's bracketed hash
        return [old_model_hash(path)]
    hashes = [sha256(path)]
    if kind == "lora" and path.suffix.lower() == ".safetensors":
        hashes.append(addnet_hash(path))
    if kind in ("checkpoint", "controlnet") and length == 8:
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


UPSCALER_FILES: dict[str, tuple[str, str]] = {
    "ESRGAN_4x": ("ESRGAN_4x", "https://github.com/cszn/KAIR/releases/download/v1.0/ESRGAN.pth"),
    "R-ESRGAN 4x+": (
        "RealESRGAN_x4plus",
        "https://github.com/xinntao/Real-ESRGAN/releases/download/v0.1.0/RealESRGAN_x4plus.pth",
    ),
    "R-ESRGAN 4x+ Anime6B": (
        "RealESRGAN_x4plus_anime_6B",
        "https://github.com/xinntao/Real-ESRGAN/releases/download/v0.2.2.4/RealESRGAN_x4plus_anime_6B.pth",
    ),
    "R-ESRGAN 2x+": (
        "RealESRGAN_x2plus",
        "https://github.com/xinntao/Real-ESRGAN/releases/download/v0.2.1/RealESRGAN_x2plus.pth",
    ),
    "R-ESRGAN General 4xV3": (
        "realesr-general-x4v3",
        "https://github.com/xinntao/Real-ESRGAN/releases/download/v0.2.5.0/realesr-general-x4v3.pth",
    ),
    "R-ESRGAN General WDN 4xV3": (
        "realesr-general-wdn-x4v3",
        "https://github.com/xinntao/Real-ESRGAN/releases/download/v0.2.5.0/realesr-general-wdn-x4v3.pth",
    ),
    "R-ESRGAN AnimeVideo": (
        "realesr-animevideov3",
        "https://github.com/xinntao/Real-ESRGAN/releases/download/v0.2.5.0/realesr-animevideov3.pth",
    ),
}
"""A1111's built-in upscaler names → the file each one is (its stem in ``ESRGAN/``) and where A1111 fetches it."""


def find_upscaler(name: str) -> ModelFile | None:
    """An upscaler model by the name a recipe gives.

    A file stem (``4x-UltraSharp``), or A1111's name of a built-in one (``R-ESRGAN 4x+`` is
    ``RealESRGAN_x4plus.pth``).
    """
    found = find_model("upscaler", name, hash_big_files=False)
    if found is None and name in UPSCALER_FILES:
        found = find_model("upscaler", UPSCALER_FILES[name][0], hash_big_files=False)
    return found


def upscaler_missing_message(name: str, built_in: tuple[str, ...], option: str = "hires_upscaler") -> str:
    """One line for an upscaler that is neither built in nor in ``ESRGAN/``: where to put it, how to get it."""
    folder = subfolder("upscaler")
    if name in UPSCALER_FILES:
        stem, url = UPSCALER_FILES[name]
        return (
            f"{option}: '{name}' is A1111's {stem}.pth, which is not in {folder}: %paint download {url} --kind upscaler"
        )
    there = [model.name for model in list_models("upscaler")]
    close = difflib.get_close_matches(name, there + list(built_in), n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return (
        f"{option}: no upscaler model '{name}' in {folder} (put its .pth or .safetensors there, or "
        f"%paint download URL --kind upscaler); built in: {', '.join(built_in)}"
        + (f"; in the folder: {', '.join(there)}" if there else "")
        + hint
    )


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
