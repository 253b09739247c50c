"""The Hugging Face hub without surprises: a cached model loads with no network, a missing one fails in one line.

Left to itself, loading a hub id on a machine that can't reach the hub retries each file with back-off (about half
a minute, six "Retrying in 8s" lines, a deprecation warning) before failing. Instead we look in the local cache
first (no network at all when the model is there), and otherwise ask the hub once, with a short timeout, whether
the model exists: unreachable or unknown, the user gets one line in about a second.
"""

from __future__ import annotations

from typing import Any

from ..downloads.huggingface import endpoint
from .quiet import quiet

PROBE_TIMEOUT = 4.0
"""Seconds to wait for the hub's answer; a refused or unresolvable address fails at once."""
PROBE_REPO = "stable-diffusion-v1-5/stable-diffusion-v1-5"
"""A repository asked about only to tell whether the hub answers at all (single files fetch configs from it)."""
_WAY_OUT = "download it where there is internet, or pass a local folder or .safetensors file with --model"


def offline_mode() -> bool:
    """Whether ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) forbids the hub."""
    from huggingface_hub import constants

    checker = getattr(constants, "is_offline_mode", None)
    return bool(checker() if callable(checker) else constants.HF_HUB_OFFLINE)


def is_cached(repo_id: str, filename: str = "model_index.json") -> bool:
    """Whether `filename` of `repo_id` is in the local Hugging Face cache (``HF_HUB_CACHE``); no network."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, filename), str)


def probe(repo_id: str, timeout: float = PROBE_TIMEOUT) -> str:
    """Ask the hub once, without retries, about `repo_id`.

    Returns
    -------
    str
        ``"found"``, ``"missing"`` (no such model, or private) or ``"unreachable"`` (no answer, or an error page).
    """
    with quiet():
        try:
            model_info, RepositoryNotFoundError = _hub_api()
        except Exception:  # raced the background imports of %load_ext inside huggingface_hub: let them finish
            from . import warmup

            warmup.wait()
            model_info, RepositoryNotFoundError = _hub_api()
        try:
            model_info(repo_id, timeout=timeout)
        except RepositoryNotFoundError:
            return "missing"
        except Exception:  # connection refused, DNS failure, timeout, 5xx: all mean "no usable hub now"
            return "unreachable"
    return "found"


def _hub_api() -> tuple[Any, type]:
    from huggingface_hub import model_info

    try:
        from huggingface_hub.errors import RepositoryNotFoundError
    except ImportError:  # huggingface_hub before 0.23 (older Colab images)
        from huggingface_hub.utils import RepositoryNotFoundError
    return model_info, RepositoryNotFoundError


def check_hub_model(repo_id: str) -> bool:
    """Decide how to load a hub model before anything heavy runs.

    Returns
    -------
    bool
        True when the model is in the local cache (load with ``local_files_only``), False when it must be
        downloaded (the hub answered that it exists).

    Raises
    ------
    ValueError
        One line when the model is not cached and the hub is unreachable or forbidden, or does not know the id.
    """
    if is_cached(repo_id):
        return True
    if offline_mode():
        msg = f"model: '{repo_id}' is not in the Hugging Face cache and HF_HUB_OFFLINE is set: {_WAY_OUT}"
        raise ValueError(msg)
    answer = probe(repo_id)
    if answer == "unreachable":
        raise ValueError(unreachable_message(repo_id))
    if answer == "missing":
        msg = (
            f"model: '{repo_id}' is not on the Hugging Face hub (check the id; a private or gated model needs "
            "'hf auth login' first)"
        )
        raise ValueError(msg)
    return False


def unreachable_message(repo_id: str) -> str:
    """The one line for a model that is neither cached nor downloadable now."""
    where = f"the hub ({endpoint()})"
    return f"model: '{repo_id}' is not in the Hugging Face cache and {where} can't be reached: {_WAY_OUT}"


def hub_usable() -> bool:
    """Whether the hub may be asked for files now (not offline, and it answers): single files' configs need it."""
    return not offline_mode() and probe(PROBE_REPO) != "unreachable"


def load_error_is_offline(error: BaseException) -> bool:
    """Whether a loading error says a file was missing locally (as opposed to a broken model)."""
    names = {cls.__name__ for cls in type(error).__mro__}
    return bool(names & {"LocalEntryNotFoundError", "OfflineModeIsEnabled", "ConnectError", "ConnectionError"})


def describe(error: Any) -> str:
    """The first line of an error, short."""
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__
