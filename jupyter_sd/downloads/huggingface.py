"""Hugging Face downloads through ``huggingface_hub``: one file into the models folder, or a diffusers repo.

``huggingface_hub`` brings what a download needs here: resume after an interrupt, its cache, ``HF_TOKEN`` for
gated and private repos, ``HF_ENDPOINT`` for a mirror (read at call time, so a kernel can change it). A single
file goes to the models folder under its real name, in the subfolder its tensors ask for; a repo id fetches the
files ``DiffusionPipeline.from_pretrained`` reads (one weight format per component, no fp16 duplicates) into
the hub's cache, so ``--model ORG/REPO`` then loads without the network.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from .. import library
from ..library.hashes import file_sha256
from ..library.kinds import KINDS, file_kind, folder_kind
from ..library.transfer import check_space
from .http import MODEL_SUFFIXES, Downloaded, refuse_mismatch

TOKEN_HINT = "set HF_TOKEN (a read token from huggingface.co/settings/tokens; gated repos need their terms accepted)"
_WEIGHTS = (".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".msgpack", ".onnx", ".onnx_data", ".h5", ".ot", ".pb")
_STAGING = ".hub-downloads"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def hub_download(source: str, kind: str | None = None) -> Downloaded:
    """Download a hub link (``…/ORG/REPO/blob/REV/FILE``, ``…/resolve/…``, a repo page) or a repo id ``ORG/REPO``.

    Raises
    ------
    ValueError
        Not found, gated or private without ``HF_TOKEN``, offline, too little disk space, unknown kind.
    """
    repo, revision, filename = parse_hub_source(source)
    if filename is None:
        return _repo(repo, revision)
    return _file(repo, revision, filename, kind)


def parse_hub_source(source: str) -> tuple[str, str | None, str | None]:
    """``(repo id, revision, file path)`` of a hub link or repo id (file path None for a whole repo).

    Raises
    ------
    ValueError
        For a hub link that names no repo.
    """
    if "://" not in source:
        return source, None, None
    path = [unquote(piece) for piece in urlsplit(source).path.split("/") if piece]
    if len(path) >= 5 and path[2] in ("blob", "resolve"):
        return f"{path[0]}/{path[1]}", path[3], "/".join(path[4:])
    if len(path) == 2 or (len(path) >= 4 and path[2] == "tree"):
        return f"{path[0]}/{path[1]}", (path[3] if len(path) >= 4 else None), None
    msg = f"download: '{source}' names no Hugging Face repo or file (allowed: …/ORG/REPO, …/ORG/REPO/blob/REV/FILE)"
    raise ValueError(msg)


def endpoint() -> str:
    """The hub's address: ``HF_ENDPOINT`` (read at call time, so a kernel can change it), else huggingface.co."""
    return os.environ.get("HF_ENDPOINT") or "https://huggingface.co"


def _file(repo: str, revision: str | None, filename: str, kind: str | None) -> Downloaded:
    import huggingface_hub as hub

    name = PurePosixPath(filename).name
    if not name.lower().endswith(MODEL_SUFFIXES):
        msg = f"download: {filename} in {repo} is not a model file (allowed: {', '.join(MODEL_SUFFIXES)})"
        raise ValueError(msg)
    staging = library.models_dir() / _STAGING / repo.replace("/", "--")
    with _hub_errors(f"{repo}/{filename}"):
        url = hub.hf_hub_url(repo, filename, revision=revision, endpoint=endpoint())
        meta = hub.get_hf_file_metadata(url)  # the url carries the endpoint
        for each in [kind] if kind else [k for k in KINDS if k != "lycoris"]:
            existing = library.subfolder(folder_kind(each)) / name
            if existing.exists() and (kind or _existing_sha_matches(existing, meta.etag)):
                return _existing(existing, kind or file_kind(existing) or each, meta.etag)
        check_space(library.models_dir(), meta.size or 0, name)
        local = Path(hub.hf_hub_download(repo, filename, revision=revision, local_dir=staging, endpoint=endpoint()))
    actual = file_sha256(local)
    expected = (meta.etag or "").strip('"').lower()
    checked = bool(_SHA256.match(expected))
    if checked:
        refuse_mismatch(local, name, actual, expected, "the hub")
    kind = kind or file_kind(local)
    if kind is None:
        msg = (
            f"download: can't tell from its tensors what kind of model {name} is (kept as {local}); "
            f"run the same download again with --kind ({', '.join(KINDS)})"
        )
        raise ValueError(msg)
    final = library.subfolder(folder_kind(kind)) / name
    if final.exists():
        if file_sha256(final) != actual:
            msg = f"download: {final} already exists and is a different file; the download is kept as {local}"
            raise ValueError(msg)
        local.unlink()
        return Downloaded(final, kind, final.stat().st_size, actual, checked, already=True)
    final.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(local), str(final))
    return Downloaded(final, kind, final.stat().st_size, actual, checked)


def _existing(path: Path, kind: str, etag: str | None) -> Downloaded:
    expected = (etag or "").strip('"').lower()
    actual = file_sha256(path)
    if _SHA256.match(expected) and actual != expected:
        msg = f"download: {path} already exists and is a different file; move it away to download this one"
        raise ValueError(msg)
    return Downloaded(path, kind, path.stat().st_size, actual, bool(_SHA256.match(expected)), already=True)


def _existing_sha_matches(path: Path, etag: str | None) -> bool:
    expected = (etag or "").strip('"').lower()
    return bool(_SHA256.match(expected)) and file_sha256(path) == expected


def _repo(repo: str, revision: str | None) -> Downloaded:
    import huggingface_hub as hub

    api = hub.HfApi(endpoint=endpoint())
    with _hub_errors(repo):
        entries = [e for e in api.list_repo_tree(repo, revision=revision, recursive=True) if hasattr(e, "size")]
        sizes = {entry.path: entry.size or 0 for entry in entries}
        if "model_index.json" not in sizes:
            msg = (
                f"download: {repo} is not a diffusers model (it has no model_index.json); to download one of its "
                f"files, give its link: https://huggingface.co/{repo}/blob/main/FILE"
            )
            raise ValueError(msg)
        index = hub.hf_hub_download(repo, "model_index.json", revision=revision, endpoint=endpoint())
        components = [key for key in json.loads(Path(index).read_text()) if not key.startswith("_")]
        wanted = pipeline_files(list(sizes), components)
        missing = [
            path for path in wanted if not isinstance(hub.try_to_load_from_cache(repo, path, revision=revision), str)
        ]
        check_space(Path(hub.constants.HF_HUB_CACHE), sum(sizes[path] for path in missing), repo)
        folder = hub.snapshot_download(repo, revision=revision, allow_patterns=wanted, endpoint=endpoint())
    return Downloaded(Path(folder), "diffusers", sum(sizes[path] for path in wanted))


def pipeline_files(paths: list[str], components: list[str]) -> list[str]:
    """The files ``from_pretrained`` reads: ``model_index.json`` and each component's folder, one weight format.

    Per folder, plain ``.safetensors`` win over ``.bin`` and over variants (``*.fp16.safetensors``); other weight
    formats (ONNX, Flax, TF) and root-level single-file checkpoints are left out.
    """
    chosen = ["model_index.json"]
    for component in components:
        inside = [path for path in paths if path.startswith(f"{component}/")]
        weights = [path for path in inside if path.endswith(_WEIGHTS)]
        keep = _best_weights(weights)
        for path in inside:
            if path.endswith(_WEIGHTS):
                if path in keep:
                    chosen.append(path)
            elif ".index." in PurePosixPath(path).name:  # a sharded weight's index: kept with its format
                name = PurePosixPath(path).name
                stem, _, suffix = name[: -len(".index.json")].rpartition(".")
                if name.endswith(".index.json") and any(
                    PurePosixPath(k).name.startswith(stem) and k.endswith(f".{suffix}") for k in keep
                ):
                    chosen.append(path)
            else:
                chosen.append(path)
    return chosen


def _is_variant(name: str) -> bool:
    """``diffusion_pytorch_model.fp16.safetensors`` (or a shard of one) is a variant; the plain name is not."""
    stem = PurePosixPath(name).name.split("-0000")[0]
    return stem.count(".") >= 2 or (stem.count(".") == 1 and not stem.endswith(_WEIGHTS))


def _best_weights(weights: list[str]) -> set[str]:
    for suffix, variants in ((".safetensors", False), (".bin", False), (".safetensors", True), (".bin", True)):
        found = {path for path in weights if path.endswith(suffix) and _is_variant(path) == variants}
        if found:
            return found
    return set()


@contextmanager
def _hub_errors(what: str) -> Iterator[None]:
    """Turn huggingface_hub's errors into one line naming the repo (and ``HF_TOKEN`` where a token would help)."""
    from huggingface_hub import errors

    try:
        yield
    except Exception as error:
        if isinstance(error, ValueError) and str(error).startswith("download:"):
            raise
        status = getattr(getattr(error, "response", None), "status_code", None)
        if isinstance(error, errors.GatedRepoError):
            msg = f"download: {what} is gated: accept its terms on huggingface.co, then {TOKEN_HINT}"
        elif isinstance(error, errors.RevisionNotFoundError):
            msg = f"download: {what}: no such revision on the hub"
        elif isinstance(error, errors.EntryNotFoundError):
            msg = f"download: {what}: no such file on the hub"
        elif isinstance(error, errors.RepositoryNotFoundError):
            msg = f"download: {what}: no such repo on the hub, or it is private ({TOKEN_HINT})"
        elif status in (401, 403):
            msg = f"download: the hub refused {what} ({status}); {TOKEN_HINT}"
        elif isinstance(error, errors.HFValidationError):
            msg = f"download: '{what}' is not a hub repo id ({_first_line(error)})"
        elif isinstance(error, errors.HfHubHTTPError) and status is not None:
            msg = f"download: the hub answered {status} for {what}: {_first_line(error)}"
        elif isinstance(error, (errors.OfflineModeIsEnabled, ConnectionError, OSError)):
            offline = " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") else ""
            msg = f"download: the hub can't be reached for {what}{offline}: {_first_line(error)}"
        else:
            raise
        raise ValueError(msg) from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:160] if text else type(error).__name__
