"""The models folder, in AUTOMATIC1111's layout, that checkpoints, LoRA, embeddings and VAEs are found in.

Users already keep an A1111 ``models`` folder (often on Google Drive): ``Stable-diffusion/`` for checkpoints,
``Lora/`` for LoRA and LyCORIS, ``embeddings/`` for textual inversion, ``VAE/`` for VAEs. This module knows where
that folder is and what lives in each subfolder; lookup by name or hash, the hash cache and downloads build on it.
Pure Python: no torch, no IPython.
"""

from __future__ import annotations

import os
from pathlib import Path

SUBFOLDERS: dict[str, str] = {
    "checkpoint": "Stable-diffusion",
    "lora": "Lora",
    "embedding": "embeddings",
    "vae": "VAE",
    "upscaler": "ESRGAN",
    "controlnet": "ControlNet",
}
"""Kind of model file → its subfolder of the models folder (A1111's names)."""
WILDCARDS = "wildcards"
"""The models folder's subfolder of wildcard files (text, YAML, JSON), kept apart from `SUBFOLDERS`: they are not
models, so the model listings, lookups and downloads that go over `SUBFOLDERS` never see them."""
A1111_WILDCARDS = Path("extensions", "sd-dynamic-prompts", "wildcards")
"""Where sd-dynamic-prompts keeps them in an A1111 install, whose ``models`` folder is the models folder."""

ENV_VAR = "JUPYTER_SD_MODELS"
DRIVE_MOUNT = Path("/content/drive")
"""Where Colab mounts Google Drive: the one place that knows it (models, pictures and ``%paint drive`` ask here)."""
_LOCAL_MODELS = Path("~/.cache/jupyter_sd/models")
_models_dir: Path | None = None


def drive_root() -> Path:
    """``MyDrive/jupyter_sd``: the folder on Drive that holds ``models/`` and ``outputs/``."""
    return DRIVE_MOUNT / "MyDrive" / "jupyter_sd"


def default_models_dir() -> Path:
    """Where the models folder is when nobody said.

    Drive's ``MyDrive/jupyter_sd/models`` when Drive is mounted in Colab, else ``~/.cache/jupyter_sd/models``;
    ``$JUPYTER_SD_MODELS`` overrides both.
    """
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    if drive_root().parent.is_dir():
        return drive_root() / "models"
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


def wildcards_dir() -> Path:
    """The folder ``__name__`` wildcards are read from: the models folder's ``wildcards/``.

    When that does not exist and the models folder is an A1111 install's ``models``, its sd-dynamic-prompts folder
    (``extensions/sd-dynamic-prompts/wildcards`` beside it) is read as it is. Either may not exist yet.
    """
    own = models_dir() / WILDCARDS
    a1111 = models_dir().parent / A1111_WILDCARDS
    return a1111 if not own.is_dir() and a1111.is_dir() else own
