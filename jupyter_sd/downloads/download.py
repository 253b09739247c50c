"""Downloads into the models folder: civitai links, Hugging Face files and repos, plain HTTP(S) URLs.

`download` tells the sources apart and hands each to its module: `civitai` (the API says which file, its kind and
checksum), `hub` (``huggingface_hub``: its resume, its cache, ``HF_TOKEN``) and `fetch` (any URL of a model file).
A file lands in the subfolder its kind asks for (``Stable-diffusion/``, ``Lora/``, ``embeddings/``, ``VAE/``)
under its real name, so it is usable by name at once. No torch, no IPython.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from ..library.kinds import KINDS
from .civitai import (
    CIVITAI_API_ENV,
    CIVITAI_HOSTS,
    CIVITAI_TOKEN_ENV,
    civitai_download,
    civitai_token,
    set_civitai_token,
)
from .http import MODEL_SUFFIXES, Downloaded, fetch_model

__all__ = [
    "CIVITAI_API_ENV",
    "CIVITAI_TOKEN_ENV",
    "MODEL_SUFFIXES",
    "Downloaded",
    "civitai_token",
    "download",
    "fetch_model",
    "set_civitai_token",
]

_HUB_HOSTS = ("huggingface.co", "www.huggingface.co", "hf.co")
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


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
        if parts.hostname in CIVITAI_HOSTS:
            return civitai_download(source, kind, retries)
        if parts.hostname in _HUB_HOSTS:
            from .huggingface import hub_download

            return hub_download(source, kind)
        return fetch_model(source, kind=kind, retries=retries)
    if _HUB_ID.match(source):
        from .huggingface import hub_download

        return hub_download(source, kind)
    msg = (
        f"download: '{source}' is not a civitai link, a Hugging Face link or repo id (org/name), "
        "or an http(s) URL of a model file"
    )
    raise ValueError(msg)
