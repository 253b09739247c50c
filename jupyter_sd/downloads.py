"""Downloads into the models folder: civitai links, Hugging Face files and repos, plain HTTP(S) URLs.

A file lands in the subfolder its kind asks for (``Stable-diffusion/``, ``Lora/``, ``embeddings/``, ``VAE/``) under
its real name, so it is usable by name at once. The kind comes from civitai's API answer when there is one, else
from the file's tensor names (`model_kind`). Bytes go to a ``.part`` file that later tries resume with an HTTP
Range request; the real name appears only once the file is complete and its sha256 matches the publisher's.
Hugging Face goes through ``huggingface_hub`` (its resume, its cache, ``HF_TOKEN``). No torch, no IPython.
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
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from . import library
from .model_kind import KINDS, file_kind, folder_kind
from .transfer import CHUNK, ByteProgress, check_space, human_bytes

CIVITAI_API_ENV = "JUPYTER_SD_CIVITAI_API"
"""Environment variable overriding civitai's API base (``https://civitai.com/api/v1``), e.g. for a mirror."""
CIVITAI_TOKEN_ENV = "CIVITAI_TOKEN"
DEFAULT_CIVITAI_API = "https://civitai.com/api/v1"
MODEL_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
_CIVITAI_HOSTS = ("civitai.com", "www.civitai.com", "civitai.green", "www.civitai.green")
_HUB_HOSTS = ("huggingface.co", "www.huggingface.co", "hf.co")
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
_CIVITAI_TYPES = {
    "Checkpoint": "checkpoint",
    "LORA": "lora",
    "LoCon": "lycoris",
    "DoRA": "lora",
    "TextualInversion": "embedding",
    "VAE": "vae",
}
_TOKEN_HINT = (
    f"set {CIVITAI_TOKEN_ENV} (an API key from civitai.com → Account settings; an environment variable or a Colab "
    "secret) or %paint config civitai_token=KEY"
)
_civitai_token: str | None = None


def set_civitai_token(token: str | None) -> None:
    """Use `token` for civitai downloads in this kernel (``%paint config civitai_token=...``; empty forgets it)."""
    global _civitai_token
    _civitai_token = token or None


def civitai_token() -> str | None:
    """The civitai API key: the one set in this kernel, else ``$CIVITAI_TOKEN``, else Colab's secret of that name."""
    return _civitai_token or os.environ.get(CIVITAI_TOKEN_ENV) or _colab_secret(CIVITAI_TOKEN_ENV)


def _colab_secret(name: str) -> str | None:
    """A secret from Colab's Secrets panel (🔑), when running in Colab and the notebook was given access."""
    try:
        from google.colab import userdata
    except ImportError:
        return None
    try:
        return userdata.get(name) or None
    except Exception:  # no such secret, or access not granted: as if unset  # noqa: BLE001
        return None


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
        }[self.kind]
        verb = "already there" if self.already else "downloaded"
        checked = ", sha256 checked" if self.checked else ""
        what = f"{KINDS[self.kind]}, {human_bytes(self.size)}{checked}"
        line = f"{verb}: {self.path.name} ({what}) in {self.path.parent}; {use}"
        if self.pickle:
            line += " — a pickle file: it can run code when loaded, so using it needs --allow-pickle"
        return line


def download(source: str, kind: str | None = None, retries: int = 3) -> Downloaded:
    """Download a model from a civitai link, a Hugging Face link or repo id, or an HTTP(S) URL.

    Parameters
    ----------
    source
        ``https://civitai.com/models/ID?modelVersionId=V``, ``https://civitai.com/api/download/models/V``,
        ``https://huggingface.co/ORG/REPO/blob/REV/FILE``, ``ORG/REPO`` (a whole diffusers repo, into the hub's
        cache) or any ``http(s)://`` URL of a model file.
    kind
        ``checkpoint``, ``lora``, ``lycoris``, ``embedding`` or ``vae``: overrides what civitai or the file says.
    retries
        How many times a dropped connection is resumed (HTTP Range) before giving up; the ``.part`` stays.

    Raises
    ------
    ValueError
        One line for every problem: a source that is none of these, a refused token, too little disk space,
        a checksum mismatch (the file is removed), a file of unknown kind.
    """
    source = source.strip()
    if kind is not None and kind not in KINDS:
        msg = f"download: --kind must be one of {', '.join(KINDS)} (got '{kind}')"
        raise ValueError(msg)
    parts = urlsplit(source)
    if parts.scheme in ("http", "https") and parts.hostname:
        if parts.hostname in _CIVITAI_HOSTS:
            return _civitai(source, kind, retries)
        if parts.hostname in _HUB_HOSTS:
            from .hub import hub_download

            return hub_download(source, kind)
        return fetch_model(source, kind=kind, retries=retries)
    if _HUB_ID.match(source):
        from .hub import hub_download

        return hub_download(source, kind)
    msg = (
        f"download: '{source}' is not a civitai link, a Hugging Face link or repo id (org/name), "
        "or an http(s) URL of a model file"
    )
    raise ValueError(msg)


# -- civitai ------------------------------------------------------------------------------------------------------


def civitai_api() -> str:
    """Civitai's API base (``$JUPYTER_SD_CIVITAI_API`` overrides it)."""
    return (os.environ.get(CIVITAI_API_ENV) or DEFAULT_CIVITAI_API).rstrip("/")


def civitai_ids(url: str) -> tuple[int | None, int | None, dict[str, str]]:
    """``(model id, version id, file choice)`` from a civitai model page, version link or download link.

    Raises
    ------
    ValueError
        For a civitai link that names no model.
    """
    parts = urlsplit(url)
    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
    choice = {key: query[key] for key in ("type", "format", "size", "fp") if key in query}
    path = [piece for piece in parts.path.split("/") if piece]
    if len(path) >= 4 and path[:3] == ["api", "download", "models"] and path[3].isdigit():
        return None, int(path[3]), choice
    if len(path) >= 3 and path[:3] == ["api", "v1", "model-versions"] and path[3:4] and path[3].isdigit():
        return None, int(path[3]), choice
    if len(path) >= 2 and path[0] == "models" and path[1].isdigit():
        version = query.get("modelVersionId", "")
        return int(path[1]), (int(version) if version.isdigit() else None), choice
    msg = (
        f"download: '{url}' names no civitai model (allowed: civitai.com/models/ID, …?modelVersionId=V, "
        "civitai.com/api/download/models/V)"
    )
    raise ValueError(msg)


def _civitai(url: str, kind: str | None, retries: int) -> Downloaded:
    model_id, version_id, choice = civitai_ids(url)
    token = civitai_token()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        if version_id is not None:
            version = _get_json(f"{civitai_api()}/model-versions/{version_id}", headers)
        else:
            model = _get_json(f"{civitai_api()}/models/{model_id}", headers)
            if not model.get("modelVersions"):
                msg = f"download: civitai model {model_id} has no versions to download"
                raise ValueError(msg)
            version = {**model["modelVersions"][0], "model": {"name": model.get("name"), "type": model.get("type")}}
    except _Unreachable as error:
        if version_id is None:
            msg = (
                f"download: civitai's API can't be reached ({error}) to find model {model_id}'s latest version; "
                "give a version link (…?modelVersionId=V) to download it directly"
            )
            raise ValueError(msg) from None
        # without the API: the download link alone; the kind comes from the file's tensors, no checksum
        root = civitai_api().rsplit("/v1", 1)[0]
        link = f"{root}/download/models/{version_id}" + (f"?{urlencode(choice)}" if choice else "")
        return fetch_model(link, kind=kind, headers=headers, refusal_hint=_TOKEN_HINT, retries=retries)
    chosen = _pick_file(version.get("files") or [], choice, version_id or version.get("id"))
    if kind is None:
        model_type = "VAE" if chosen.get("type") == "VAE" else (version.get("model") or {}).get("type", "")
        if model_type not in _CIVITAI_TYPES:
            msg = (
                f"download: civitai says '{chosen.get('name')}' is a {model_type or 'model of unknown type'}, which "
                f"jupyter_sd does not use (allowed: checkpoints, LoRA, LyCORIS, embeddings, VAEs); pass --kind to "
                "download it anyway"
            )
            raise ValueError(msg)
        kind = _CIVITAI_TYPES[model_type]
    sha256 = ((chosen.get("hashes") or {}).get("SHA256") or "").lower() or None
    size_kb = chosen.get("sizeKB")
    return fetch_model(
        chosen["downloadUrl"],
        kind=kind,
        name=chosen.get("name"),
        sha256=sha256,
        size=int(round(size_kb * 1024)) if size_kb else None,
        headers=headers,
        refusal_hint=_TOKEN_HINT,
        retries=retries,
        info=version,
    )


def _pick_file(files: list[dict[str, Any]], choice: dict[str, str], version: Any) -> dict[str, Any]:
    """The version's file to fetch: the one the link's ``type``/``format`` asks for, else the primary model file."""
    candidates = [f for f in files if f.get("downloadUrl")]
    if "type" in choice:
        candidates = [f for f in candidates if f.get("type") == choice["type"]]
    if "format" in choice:
        candidates = [f for f in candidates if (f.get("metadata") or {}).get("format") == choice["format"]]
    if not candidates:
        msg = f"download: civitai version {version} has no file matching {choice or 'a model file'}"
        raise ValueError(msg)
    models = [f for f in candidates if f.get("type", "Model") == "Model"] or candidates
    safetensors = [f for f in models if (f.get("metadata") or {}).get("format") == "SafeTensor"]
    return next((f for f in models if f.get("primary")), None) or (safetensors or models)[0]


class _Unreachable(Exception):
    """The server could not be reached or failed (network down, DNS, 5xx): fall back where there is a way."""


_OPENER = urllib.request.build_opener()


def _request(url: str, headers: dict[str, str], start: int = 0) -> Any:
    """Open `url`. Credentials go as unredirected headers, so a redirect to a storage host never receives them."""
    request = urllib.request.Request(url, headers={"User-Agent": "jupyter_sd", "Accept-Encoding": "identity"})
    for key, value in headers.items():
        request.add_unredirected_header(key, value)
    if start:
        request.add_header("Range", f"bytes={start}-")
    return _OPENER.open(request, timeout=60)


def _get_json(url: str, headers: dict[str, str]) -> dict[str, Any]:
    try:
        with _request(url, headers) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        if error.code in (401, 403):
            raise ValueError(_refused(url, error.code, _TOKEN_HINT)) from None
        if error.code == 404:
            msg = f"download: civitai has no such model or version ({url} answered 404)"
            raise ValueError(msg) from None
        raise _Unreachable(f"HTTP {error.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise _Unreachable(str(getattr(error, "reason", error))) from None


def _refused(url: str, code: int, hint: str) -> str:
    reason = {401: "401 Unauthorized", 403: "403 Forbidden"}.get(code, str(code))
    return f"download: {url} refused the download ({reason}); {hint or 'the server wants a login'}"


# -- plain HTTP(S), with .part and Range resume -------------------------------------------------------------------


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
) -> Downloaded:
    """Fetch one model file over HTTP(S) into the models folder.

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
    if not name.lower().endswith(MODEL_SUFFIXES):
        response.close()
        msg = f"download: {url} is not a model file (got '{name}'; allowed: {', '.join(MODEL_SUFFIXES)})"
        raise ValueError(msg)
    folder = library.subfolder(folder_kind(kind)) if kind else library.models_dir()
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
    digest = _Digest(_hash_file(part, have))
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
        response = _request(url, headers, start)
    except urllib.error.HTTPError as error:
        if error.code in (401, 403):
            raise ValueError(_refused(url, error.code, hint)) from None
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


def _finish(part: Path, final: Path, kind: str | None, actual: str, expected: str | None, info: Any) -> Downloaded:
    """Check the checksum, find the kind, and give the file its real name in its subfolder."""
    if expected and actual != expected:
        part.unlink()
        msg = (
            f"download: {final.name}'s sha256 is {actual[:12]}…, not the {expected[:12]}… its publisher gives; "
            "the file was removed: download it again"
        )
        raise ValueError(msg)
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
            if _sha256(final) == actual:
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
    actual = _sha256(path) if expected else None
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


def _hash_file(path: Path, length: int) -> Any:
    digest = hashlib.sha256()
    if length:
        with open(path, "rb") as reader:
            while chunk := reader.read(CHUNK):
                digest.update(chunk)
    return digest


def _sha256(path: Path) -> str:
    return _hash_file(path, path.stat().st_size).hexdigest()


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
