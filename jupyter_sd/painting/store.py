"""Where pictures go and what they carry.

Images are written beside the notebook as ``NNNNN-SEED.png``, numbered after the highest number already there,
created atomically (exclusive create + rename) so nothing is ever overwritten, even by two kernels writing into
one folder at once. Each PNG carries A1111's ``parameters`` text chunk and a ``jupyter_sd`` JSON chunk with the
whole request.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from ..library.folder import drive_root
from ..library.hashes import file_sha256
from ..recipe.paste import request_from_infotext
from ..recipe.request import PaintRequest

PARAMETERS_KEY = "parameters"
REQUEST_KEY = "jupyter_sd"
FOLDER_SUFFIX = "-paint"
NO_NOTEBOOK_FOLDER = "paint-outputs"
_NUMBERED = re.compile(r"^(\d{5,})-")


def notebook_path(user_ns: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> Path | None:
    """Find the running notebook's path, from what each front end leaves in the kernel.

    VS Code sets ``__vsc_ipynb_file__``; Jupyter Server sets ``__session__`` (and ``JPY_SESSION_NAME``).
    """
    user_ns = user_ns or {}
    environ = os.environ if environ is None else environ
    for candidate in (user_ns.get("__vsc_ipynb_file__"), user_ns.get("__session__"), environ.get("JPY_SESSION_NAME")):
        if isinstance(candidate, str) and candidate.endswith(".ipynb"):
            path = Path(candidate)
            if not path.is_absolute():
                path = Path.cwd() / path
            return path
    return None


def default_output_dir(user_ns: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """Return the folder beside the notebook where its images go.

    The rule: for a notebook ``DIR/NAME.ipynb`` the folder is ``DIR/NAME-paint``. Without a known notebook it is
    ``paint-outputs`` in the kernel's working directory; in Colab (which tells no notebook name) it is
    ``MyDrive/jupyter_sd/outputs/colab`` when Drive is mounted, else ``/content/jupyter_sd/outputs/colab``;
    ``%paint drive`` names the folder after the notebook instead.
    """
    environ = os.environ if environ is None else environ
    notebook = notebook_path(user_ns, environ)
    if notebook is not None:
        return notebook.parent / f"{notebook.stem}{FOLDER_SUFFIX}"
    if "COLAB_RELEASE_TAG" in environ or "COLAB_GPU" in environ:
        base = drive_root() if drive_root().parent.is_dir() else Path("/content/jupyter_sd")
        return base / "outputs" / "colab"
    return Path.cwd() / NO_NOTEBOOK_FOLDER


def png_info(infotext: str, request: PaintRequest | None = None, extra: dict[str, Any] | None = None) -> PngInfo:
    """Build the PNG text chunks: A1111's ``parameters`` and our JSON recipe."""
    info = PngInfo()
    info.add_text(PARAMETERS_KEY, infotext)
    if request is not None:
        payload = {"request": request.to_dict(), **(extra or {})}
        info.add_text(REQUEST_KEY, json.dumps(payload, ensure_ascii=False))
    return info


def next_number(folder: Path) -> int:
    """Return the number after the highest ``NNNNN-`` file in `folder` (1 for an empty folder)."""
    highest = 0
    if folder.is_dir():
        for entry in os.scandir(folder):
            match = _NUMBERED.match(entry.name)
            if match:
                highest = max(highest, int(match.group(1)))
    return highest + 1


def save_image(image: Image.Image, folder: str | os.PathLike, seed: int | str, info: PngInfo) -> Path:
    """Write `image` as the next ``NNNNN-SEED.png`` in `folder`, atomically and without overwriting anything.

    `seed` may be a tag instead (``"xyz"`` names an X/Y/Z grid ``NNNNN-xyz.png``).

    The PNG is written to a temporary file first; then its number is claimed (an exclusively created marker, so
    two writers never share a number whatever their seeds; a lost claim retries with the next number) and the
    temp file renamed into place, so a reader never sees a half-written picture.

    Returns
    -------
    Path
        The saved file.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", suffix=".png", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            image.save(handle, format="PNG", pnginfo=info)
        number = next_number(folder)
        while True:
            claim = _claim(folder, number)
            if claim is None:
                number = max(number + 1, next_number(folder))
                continue
            try:
                target = folder / f"{number:05d}-{seed}.png"
                os.replace(tmp_name, target)
                return target
            finally:
                os.unlink(claim)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise


def _claim(folder: Path, number: int) -> Path | None:
    """Claim a number for this writer, or return None if another writer has it or a file already uses it.

    The claim is an exclusively created marker file (the number alone, whatever the seed), checked against the
    folder after it is made: a writer that finished with this number made its file before dropping its marker.
    """
    marker = folder / f".{number:05d}.claim"
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        return None
    if any(name.startswith(f"{number:05d}-") for name in os.listdir(folder)):
        os.unlink(marker)
        return None
    return marker


def companion_path(picture: str | os.PathLike, role: str) -> Path:
    """The file beside a picture that holds one of its inputs: ``00005-42.png`` → ``00005-42-mask.png``."""
    picture = Path(picture)
    return picture.with_name(f"{picture.stem}-{role}.png")


def file_record(path: str | os.PathLike) -> dict[str, str]:
    """Path (absolute) and sha256 of an input file, as the JSON chunk records it."""
    return {"path": str(Path(path).resolve()), "sha256": file_sha256(path)}


def attach_input(picture: str | os.PathLike, role: str, png: bytes) -> Path:
    """Save one of a picture's inputs (``role`` = ``mask`` or ``init``) beside it and point its recipe at it.

    The input is written as `companion_path` (never overwriting a file), then the picture's JSON chunk is
    rewritten so its request's `role` option names that file and the chunk's `role` key records its path and sha256:
    `load_request` then paints the same picture again. Both files are replaced atomically (temp file + rename),
    so a reader sees the old picture or the new one, never half of one; the pixels are unchanged.

    Returns
    -------
    Path
        The saved input file.

    Raises
    ------
    FileExistsError
        If the companion file already exists (nothing is changed then).
    ValueError
        If the picture carries no JSON recipe.
    """
    picture = Path(picture)
    target = companion_path(picture, role)
    with Image.open(picture) as image:
        image.load()
        text = dict(image.text)
        if REQUEST_KEY not in text:
            msg = f"attach_input: {picture} carries no '{REQUEST_KEY}' recipe"
            raise ValueError(msg)
        fd, tmp_input = tempfile.mkstemp(prefix=".tmp-", suffix=".png", dir=picture.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(png)
            os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))  # claim: never overwrite
            os.replace(tmp_input, target)
        finally:
            if os.path.exists(tmp_input):
                os.unlink(tmp_input)
        payload = json.loads(text[REQUEST_KEY])
        record = file_record(target)
        payload.setdefault("request", {})[role] = record["path"]
        payload[role] = record
        info = PngInfo()
        for key, value in text.items():
            info.add_text(key, json.dumps(payload, ensure_ascii=False) if key == REQUEST_KEY else value)
        fd, tmp_picture = tempfile.mkstemp(prefix=".tmp-", suffix=".png", dir=picture.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                image.save(handle, format="PNG", pnginfo=info)
            os.replace(tmp_picture, picture)
        except BaseException:
            if os.path.exists(tmp_picture):
                os.unlink(tmp_picture)
            raise
    return target


def save_input(image: Image.Image | dict, folder: str | os.PathLike, kind: str) -> dict[str, str]:
    """Save an input that exists only in memory as ``KIND-HASH.png`` in `folder` (once: named by content).

    A dict (a ControlNet unit's pose JSON) is saved as ``KIND-HASH.json``.

    Returns
    -------
    dict
        ``{"path": ..., "sha256": ...}`` of the file, as the JSON chunk records it.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".json" if isinstance(image, dict) else ".png"
    if isinstance(image, dict):
        data = json.dumps(image, indent=4).encode("utf-8")
    else:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    target = folder / f"{kind}-{digest[:12]}{suffix}"
    if not target.is_file():
        fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp_name, target)
    return {"path": str(target.resolve()), "sha256": digest}


def _check_input(payload: dict, name: str) -> None:
    """Refuse to re-run from an init or mask file that is gone or changed since the picture was painted."""
    record = payload.get(name)
    if not isinstance(record, dict) or "path" not in record:
        return
    path = Path(record["path"])
    if not path.is_file():
        msg = f"load_request: the {name} picture {path} is no longer there"
        raise ValueError(msg)
    digest = file_sha256(path)
    if record.get("sha256") and digest != record["sha256"]:
        msg = f"load_request: the {name} picture {path} changed since it was painted from (sha256 differs)"
        raise ValueError(msg)


def read_parameters(path: str | os.PathLike) -> str:
    """Return the A1111 ``parameters`` text of a PNG (empty if it has none)."""
    with Image.open(path) as image:
        return image.text.get(PARAMETERS_KEY, "")


def load_request(path: str | os.PathLike) -> PaintRequest:
    """Re-create the request that painted a PNG, from our JSON chunk or else from its A1111 parameters.

    The seed is the image's own, so painting the returned request gives that same picture.

    Raises
    ------
    ValueError
        If the file carries no generation data.
    """
    with Image.open(path) as image:
        text = dict(image.text)
    if REQUEST_KEY in text:
        payload = json.loads(text[REQUEST_KEY])
        for name in ("init", "mask"):
            _check_input(payload, name)
        request = PaintRequest.from_dict(payload["request"])
        return request.replace(seed=payload.get("seed", request.seed), n=1, repeat=1)
    if PARAMETERS_KEY in text:
        return request_from_infotext(text[PARAMETERS_KEY])
    msg = f"load_request: {os.fspath(path)} carries no generation data (no '{PARAMETERS_KEY}' text chunk)"
    raise ValueError(msg)
