"""Models and pictures that outlive a Colab session, and pictures taken home.

``%paint drive`` mounts Google Drive and keeps the models folder and the pictures in ``MyDrive/jupyter_sd/``
(``models/`` in A1111's layout, ``outputs/<notebook>/``). Reading a multi-GB checkpoint from Drive's network
mount is slow, so the first load copies it to the VM's local disk and later loads reuse the copy
(`local_copy`, called where the engine resolves a model path). ``%paint zip`` packs a folder of pictures,
byte for byte, and offers the zip for download. Pure Python: ``google.colab`` and IPython only inside calls.
"""

from __future__ import annotations

import os
import threading
import zipfile
from pathlib import Path
from typing import Any

from . import folder as models_folder
from .folder import SUBFOLDERS, drive_root, set_models_dir
from .transfer import check_space, copy_file, human_bytes

"""Where Colab mounts Google Drive."""
LOCAL_COPIES = Path("/content/jupyter_sd-cache")
"""Local-disk copies of checkpoints kept on Drive (the VM's disk: fast, gone with the session)."""
LOCAL_COPY_MIN = 64 * 1024 * 1024
"""Files smaller than this (LoRA, embeddings) are read from Drive directly."""
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
_told: set[str] = set()


def use_drive(notebook: str | None = None) -> tuple[Path, Path]:
    """Mount Google Drive (Colab) and point the models folder at ``MyDrive/jupyter_sd/models``.

    Parameters
    ----------
    notebook
        The notebook's name, for ``outputs/<notebook>``; asked of Colab when not given.

    Returns
    -------
    tuple of Path
        The models folder and the pictures folder (the caller makes the latter the kernel's ``outdir``).

    Raises
    ------
    ValueError
        Outside Colab, with what to do instead.
    """
    try:
        from google.colab import drive
    except ImportError:
        msg = (
            "drive: %paint drive works in Google Colab; elsewhere point the models folder and the pictures at a "
            "folder your Drive or Dropbox client syncs: %paint config models=DIR outdir=DIR"
        )
        raise ValueError(msg) from None
    drive.mount(str(models_folder.DRIVE_MOUNT))
    models = drive_root() / "models"
    for name in SUBFOLDERS.values():
        (models / name).mkdir(parents=True, exist_ok=True)
    set_models_dir(models)
    name = Path(notebook or colab_notebook_name() or "colab").stem
    return models, drive_root() / "outputs" / name


def colab_notebook_name() -> str | None:
    """The running Colab notebook's file name (from the notebook Colab's front end holds), or None."""
    try:
        from google.colab import _message

        answer = _message.blocking_request("get_ipynb", request="", timeout_sec=10)
        return answer["ipynb"]["metadata"]["colab"]["name"]
    except Exception:  # not in Colab, an older front end, or no name yet: the caller picks a default  # noqa: BLE001
        return None


def local_copy(path: Path) -> Path:
    """A checkpoint on Google Drive → its copy on the local disk, made on first use; any other path unchanged.

    The copy is reused while it has the Drive file's size and modification time (the copy keeps both), so a
    file replaced on Drive is copied again. Without room on the local disk the file is read from Drive.
    """
    path = Path(path)
    try:
        relative = path.absolute().relative_to(models_folder.DRIVE_MOUNT.absolute())
        stat = path.stat()
    except (ValueError, OSError):
        return path
    if stat.st_size < LOCAL_COPY_MIN:
        return path
    target = LOCAL_COPIES / relative
    if target.is_file():
        copied = target.stat()
        if copied.st_size == stat.st_size and abs(copied.st_mtime - stat.st_mtime) < 2:
            _say(f"using the local copy of {path.name} (made from Drive this session): {target}", key=str(target))
            return target
    try:
        copy_file(path, target, f"copying {path.name} from Drive to local disk")
    except (ValueError, OSError) as error:
        _say(f"reading {path.name} from Drive (slower): no local copy ({error})")
        return path
    _say(
        f"copied {path.name} from Drive to {target}: loading from local disk is faster; later loads reuse it",
        key=str(target),
    )
    return target


def _say(line: str, key: str | None = None) -> None:
    """One line in the cell, once per `key`; never from a worker thread (it would land in another cell)."""
    if threading.current_thread() is not threading.main_thread() or (key is not None and key in _told):
        return
    if key is not None:
        _told.add(key)
    print(line)


def zip_pictures(folder: str | os.PathLike[str], into: str | os.PathLike[str] | None = None) -> Path:
    """Write ``FOLDER.zip`` with every picture in `folder`, stored byte for byte (metadata intact).

    The zip goes beside the folder (where Jupyter can serve it), or into `into`; for a folder on Google Drive,
    onto the VM's local disk, so it isn't written to Drive and read back. It is written under a temporary name and
    renamed when whole; an older zip of the folder is replaced.

    Raises
    ------
    ValueError
        For a missing folder, a folder without pictures, or too little disk space.
    """
    folder = Path(folder).expanduser().absolute()
    if not folder.is_dir():
        msg = f"zip: no folder {folder}"
        raise ValueError(msg)
    pictures = sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in PICTURE_SUFFIXES and p.name[0] != "."
    )
    if not pictures:
        msg = f"zip: no pictures in {folder} (allowed: {', '.join(PICTURE_SUFFIXES)} files)"
        raise ValueError(msg)
    if into is None:
        into = LOCAL_COPIES.parent if folder.is_relative_to(models_folder.DRIVE_MOUNT.absolute()) else folder.parent
    target = Path(into) / (folder.name + ".zip")
    check_space(target.parent, sum(p.stat().st_size for p in pictures) + 64 * 1024, target.name, option="zip")
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(f".{target.name}.part")
    try:
        with zipfile.ZipFile(part, "w", compression=zipfile.ZIP_STORED) as archive:  # PNGs are compressed already
            for picture in pictures:
                archive.write(picture, arcname=f"{folder.name}/{picture.name}")
        os.replace(part, target)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return target


def offer_download(path: Path) -> Any:
    """Offer a file for download: Colab's browser download, else a link in the cell (``FileLink``).

    Jupyter serves files below its root folder only, so a file elsewhere gets its path and no link.
    """
    path = Path(path)
    with zipfile.ZipFile(path) as archive:
        count = len(archive.namelist())
    line = f"zip: {count} pictures, {human_bytes(path.stat().st_size)}, in {path}"
    try:
        from google.colab import files
    except ImportError:
        files = None
    print(line)
    if files is not None:
        files.download(str(path))
        return None
    relative = os.path.relpath(path, Path.cwd())
    if relative.startswith(".."):
        print("(outside the notebook server's folder, so no download link: copy it from there)")
        return None
    from IPython.display import FileLink, display

    link = FileLink(relative, result_html_prefix="download: ")
    display(link)
    return link
