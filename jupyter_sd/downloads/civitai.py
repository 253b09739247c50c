"""Civitai links: which file a model page or version link means, its kind and checksum, and the API key.

A link is resolved through civitai's public API (``/model-versions/V``, ``/models/ID``) to the version's primary
file, its type (checkpoint, LoRA, LyCORIS, embedding, VAE) and its sha256; `fetch.fetch_model` then downloads and
checks it. Without the API, a version's download link still works (kind from the tensors, no checksum). The key
comes from ``%paint config civitai_token=``, ``$CIVITAI_TOKEN`` or Colab's secret of that name. No torch.
"""

from __future__ import annotations

import json
import os
import urllib.error
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from .http import Downloaded, Unreachable, fetch_model, open_url, refused

CIVITAI_API_ENV = "JUPYTER_SD_CIVITAI_API"
"""Environment variable overriding civitai's API base (``https://civitai.com/api/v1``), e.g. for a mirror."""
CIVITAI_TOKEN_ENV = "CIVITAI_TOKEN"
DEFAULT_CIVITAI_API = "https://civitai.com/api/v1"
CIVITAI_HOSTS = ("civitai.com", "www.civitai.com", "civitai.green", "www.civitai.green")
_CIVITAI_TYPES = {
    "Checkpoint": "checkpoint",
    "LORA": "lora",
    "LoCon": "lycoris",
    "DoRA": "lora",
    "TextualInversion": "embedding",
    "VAE": "vae",
    "Upscaler": "upscaler",
    "Controlnet": "controlnet",
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


def civitai_download(url: str, kind: str | None, retries: int) -> Downloaded:
    """Download what a civitai link names: the version's primary file, with its kind and sha256 from the API.

    Raises
    ------
    ValueError
        One line: a link naming no model, a refused or missing key, a type jupyter_sd does not use, or what
        `fetch_model` refuses.
    """
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
    except Unreachable as error:
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
                "jupyter_sd does not use (allowed: checkpoints, LoRA, LyCORIS, embeddings, VAEs, upscalers, "
                "ControlNets); pass --kind to download it anyway"
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


def _get_json(url: str, headers: dict[str, str]) -> dict[str, Any]:
    try:
        with open_url(url, headers) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        if error.code in (401, 403):
            raise ValueError(refused(url, error.code, _TOKEN_HINT)) from None
        if error.code == 404:
            msg = f"download: civitai has no such model or version ({url} answered 404)"
            raise ValueError(msg) from None
        raise Unreachable(f"HTTP {error.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise Unreachable(str(getattr(error, "reason", error))) from None
