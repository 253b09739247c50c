"""Fetch one model file over plain HTTP(S) into the models folder: ``.part`` files, Range resume, sha256.

The bytes go to ``NAME.part`` in the subfolder the file's kind asks for; a later try resumes it with an HTTP Range
request, and the file takes its real name only once it is complete and its sha256 matches the publisher's. The
kind, when nobody says it, comes from the file's tensor names (`model_kind`). `Downloaded` is what every download
source (this, civitai, the hub) gives back. No torch, no IPython.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import queue
import re
import socket
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .. import library
from ..library.hashes import file_digest, file_sha256
from ..library.kinds import KINDS, file_kind, folder_kind
from ..library.transfer import CHUNK, ByteProgress, check_space, human_bytes

MODEL_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


@dataclass
class Downloaded:
    """A finished download: where it is, what it holds, and whether its checksum was checked."""

    path: Path
    kind: str
    """A `model_kind.KINDS` key, or ``"diffusers"`` for a whole hub repo (in the Hugging Face cache)."""
    size: int
    sha256: str | None = None
    checked: bool = False
    """Whether the sha256 was compared with the one the publisher gives (civitai's API, the hub's LFS id)."""
    already: bool = False

    @property
    def pickle(self) -> bool:
        """Whether this is a pickle file, which can run code when loaded (``--allow-pickle`` to use it)."""
        return self.path.suffix.lower() in PICKLE_SUFFIXES

    def summary(self) -> str:
        """One line for the notebook: what arrived, where, and how to use it."""
        if self.kind == "diffusers":
            return f"downloaded {self.path.name} into the Hugging Face cache ({human_bytes(self.size)}): {self.path}"
        stem = self.path.stem
        use = {
            "checkpoint": f"paint with --model {stem}",
            "lora": f"use it in a prompt as <lora:{stem}:0.8>",
            "lycoris": f"use it in a prompt as <lora:{stem}:0.8>",
            "embedding": f"write {stem} in a prompt",
            "vae": f"paint with --vae {stem}",
            "upscaler": f"paint with --hires-upscaler {stem}",
        }[self.kind]
        verb = "already there" if self.already else "downloaded"
        checked = ", sha256 checked" if self.checked else ""
        what = f"{KINDS[self.kind]}, {human_bytes(self.size)}{checked}"
        line = f"{verb}: {self.path.name} ({what}) in {self.path.parent}; {use}"
        if self.pickle:
            line += " — a pickle file: it can run code when loaded, so using it needs --allow-pickle"
        return line


class Unreachable(Exception):
    """The server could not be reached or failed (network down, DNS, 5xx): fall back where there is a way."""


_OPENER = urllib.request.build_opener()


def open_url(url: str, headers: dict[str, str], start: int = 0) -> Any:
    """Open `url`. Credentials go as unredirected headers, so a redirect to a storage host never receives them."""
    request = urllib.request.Request(url, headers={"User-Agent": "jupyter_sd", "Accept-Encoding": "identity"})
    for key, value in headers.items():
        request.add_unredirected_header(key, value)
    if start:
        request.add_header("Range", f"bytes={start}-")
    return _OPENER.open(request, timeout=60)


def refused(url: str, code: int, hint: str) -> str:
    """The one line for a 401/403 answer, with `hint` saying which token or login the server wants."""
    reason = {401: "401 Unauthorized", 403: "403 Forbidden"}.get(code, str(code))
    return f"download: {url} refused the download ({reason}); {hint or 'the server wants a login'}"


def fetch_model(
    url: str,
    *,
    kind: str | None = None,
    name: str | None = None,
    sha256: str | None = None,
    size: int | None = None,
    headers: dict[str, str] | None = None,
    refusal_hint: str = "",
    retries: int = 3,
    info: dict[str, Any] | None = None,
    folder: Path | None = None,
    suffixes: tuple[str, ...] = MODEL_SUFFIXES,
) -> Downloaded:
    """Fetch one model file over HTTP(S) into the models folder (or into `folder`, e.g. the annotators').

    `suffixes`: the file names taken (the annotators' also take ``.onnx`` and ``.torchscript`` exports).

    The bytes go to ``NAME.part`` (in the kind's subfolder when the kind is known, else in the models folder
    until the file's tensors tell); a later call resumes it with a Range request. The file takes its real name
    only once complete and, when `sha256` is given, verified.

    Raises
    ------
    ValueError
        Refused (401/403: `refusal_hint` says which token), not found, not a model file, too little disk space,
        a dropped connection after `retries` resumes, a checksum mismatch, or a file of unknown kind.
    """
    headers = headers or {}
    response = _open(url, headers, 0, refusal_hint)
    name = _safe_name(name or _filename(response, url))
    if not name.lower().endswith(suffixes):
        response.close()
        msg = f"download: {url} is not a model file (got '{name}'; allowed: {', '.join(suffixes)})"
        raise ValueError(msg)
    folder = folder or (library.subfolder(folder_kind(kind)) if kind else library.models_dir())
    final = folder / name
    if kind and final.exists():
        response.close()
        return _verified_existing(final, kind, sha256, size)
    part = final.with_name(name + ".part")
    staged = library.models_dir() / (name + ".part")  # an earlier try whose kind was unknown left it here
    if kind and not part.exists() and staged.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        os.replace(staged, part)
    have = part.stat().st_size if part.is_file() else 0
    if have:
        response.close()
        response = _open(url, headers, have, refusal_hint)
        if response is not None and response.status != 206:  # 200: the server ignored the range, start over
            have = 0
    length = int(response.headers.get("Content-Length", 0) or 0) if response is not None else 0
    total = (have + length) if length else (size or (have if response is None else None))
    try:
        check_space(folder, (total or size or 0) - have, name)
    except ValueError:
        if response is not None:
            response.close()
        raise
    digest = _Digest(file_digest(part) if have else hashlib.sha256())
    folder.mkdir(parents=True, exist_ok=True)
    progress = ByteProgress(name, total, have)
    try:
        while response is not None:
            have = _stream(response, part, have, digest, progress)
            if total is None or have >= total:
                break
            if retries <= 0:
                msg = (
                    f"download: the connection dropped at {human_bytes(have)} of {human_bytes(total)}; run the "
                    f"same download again to resume (kept: {part})"
                )
                raise ValueError(msg)
            retries -= 1
            response = _open(url, headers, have, refusal_hint)
            if response is not None and response.status != 206:  # the server ignored the range: start over
                digest.close()
                have, digest = 0, _Digest(hashlib.sha256())
                progress.done = progress.start = 0
            elif response is None:  # 416: nothing after `have`, the part is whole
                break
    finally:
        progress.close()
        actual = digest.close()
    return _finish(part, final, kind, actual, sha256, info)


def _open(url: str, headers: dict[str, str], start: int, hint: str) -> Any:
    """Open a download (from byte `start`); None when the range starts at the file's end (the part is whole)."""
    try:
        response = open_url(url, headers, start)
    except urllib.error.HTTPError as error:
        if error.code in (401, 403):
            raise ValueError(refused(url, error.code, hint)) from None
        if error.code == 416 and start:
            return None
        msg = f"download: {url} answered {error.code} {error.reason}"
        raise ValueError(msg) from None
    except (urllib.error.URLError, OSError) as error:
        msg = f"download: can't reach {url} ({getattr(error, 'reason', error)})"
        raise ValueError(msg) from None
    if response.headers.get_content_type() == "text/html":
        response.close()
        msg = f"download: {url} answered with a web page, not a file (a login page?); {hint or 'check the link'}"
        raise ValueError(msg)
    return response


def _stream(response: Any, part: Path, have: int, digest: Any, progress: ByteProgress) -> int:
    """Append the response's bytes to `part`; return how many bytes `part` holds when the stream ends or drops."""
    with response, open(part, "ab" if have else "wb") as writer:
        while True:
            try:
                chunk = response.read(CHUNK)
            except (http.client.IncompleteRead, ConnectionError, socket.timeout, OSError) as error:
                chunk = getattr(error, "partial", b"")
                if chunk:
                    writer.write(chunk)
                    digest.update(chunk)
                    have += len(chunk)
                    progress.update(len(chunk))
                break
            if not chunk:
                break
            writer.write(chunk)
            digest.update(chunk)
            have += len(chunk)
            progress.update(len(chunk))
    return have


def refuse_mismatch(path: Path, name: str, actual: str, expected: str, publisher: str) -> None:
    """Remove a download whose sha256 is not the one its publisher gives, and say so in one line."""
    if actual == expected:
        return
    path.unlink()
    msg = (
        f"download: {name}'s sha256 is {actual[:12]}…, not the {expected[:12]}… {publisher} gives; "
        "the file was removed: download it again"
    )
    raise ValueError(msg)


def _finish(part: Path, final: Path, kind: str | None, actual: str, expected: str | None, info: Any) -> Downloaded:
    """Check the checksum, find the kind, and give the file its real name in its subfolder."""
    if expected:
        refuse_mismatch(part, final.name, actual, expected, "its publisher")
    if kind is None:
        try:
            kind = file_kind(part)
        except ValueError:
            kind = None
        if kind is None:
            msg = (
                f"download: can't tell from its tensors what kind of model {final.name} is (kept as {part}); "
                f"run the same download again with --kind ({', '.join(KINDS)})"
            )
            raise ValueError(msg)
        final = library.subfolder(folder_kind(kind)) / final.name
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            if file_sha256(final) == actual:
                part.unlink()
                return Downloaded(final, kind, final.stat().st_size, actual, bool(expected), already=True)
            msg = f"download: {final} already exists and is a different file; the download is kept as {part}"
            raise ValueError(msg)
    os.replace(part, final)
    if info is not None:
        final.with_name(final.stem + ".civitai.info").write_text(json.dumps(info, indent=1, ensure_ascii=False))
    return Downloaded(final, kind, final.stat().st_size, actual, bool(expected))


def _verified_existing(path: Path, kind: str, expected: str | None, size: int | None) -> Downloaded:
    """A file of that name is already there: keep it if it is the same file, refuse if it is not (no overwrite)."""
    actual = file_sha256(path) if expected else None
    same = actual == expected if expected else size is None or abs(path.stat().st_size - size) < 1024
    if not same:
        msg = f"download: {path} already exists and is a different file; move it away to download this one"
        raise ValueError(msg)
    return Downloaded(path, kind, path.stat().st_size, actual, bool(expected), already=True)


class _Digest:
    """A sha256 fed on its own thread, so hashing overlaps the network and the disk (hashlib frees the GIL)."""

    def __init__(self, digest: Any) -> None:
        self._digest = digest
        self._chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=16)
        self._thread = threading.Thread(target=self._run, name="jupyter_sd-sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._chunks.get()) is not None:
            self._digest.update(chunk)

    def update(self, chunk: bytes) -> None:
        self._chunks.put(chunk)

    def close(self) -> str:
        """Wait for the chunks queued so far and return the hex digest (later calls return it again)."""
        if self._thread.is_alive():
            self._chunks.put(None)
            self._thread.join()
        return self._digest.hexdigest()


def _filename(response: Any, url: str) -> str:
    """The file's name: the server's Content-Disposition when it gives one, else the URL's last path segment."""
    disposition = response.headers.get("Content-Disposition", "")
    match = re.search(r"filename\*\s*=\s*[^']*''([^;]+)", disposition) or re.search(
        r'filename\s*=\s*"?([^";]+)"?', disposition
    )
    if match:
        return unquote(match.group(1).strip())
    return unquote(urlsplit(response.geturl() or url).path.rsplit("/", 1)[-1])


def _safe_name(name: str) -> str:
    """The name as given, minus anything that would leave the folder (path separators, leading dots)."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1].strip().lstrip(".")
    return re.sub(r"[\x00-\x1f]", "", name) or "download"
