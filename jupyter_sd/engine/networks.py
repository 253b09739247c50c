"""A1111's extra networks on the loaded pipeline: LoRA tags, embeddings by file name, an external VAE.

LoRA come from ``<lora:…>`` tags; a textual-inversion embedding is triggered by its file name; ``--vae`` swaps the
decoder.

Files come from the models folder (`jupyter_sd.library`). What loads stays loaded on the pipeline (one peft adapter
per LoRA file, one token set per embedding), so the next cell that names it loads nothing; each request only sets
the adapters' weights. A file that cannot be used gets one line naming it and why, and painting goes on without
it, as in A1111.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..recipe.prompts import extract_networks
from ..recipe.request import PaintRequest
from .embeddings import use_embeddings
from .families import family_of
from .lora import set_loras
from .network_state import Notice, hash_with_notice, state_of
from .vae_swap import set_vae

__all__ = ["AppliedNetworks", "apply_networks", "state_of"]

_TEXT_FIELDS = ("prompt", "negative_prompt", "hires_prompt")
"""The request's fields the text encoder reads."""


@dataclass(frozen=True)
class AppliedNetworks:
    """What the networks stage did for one request."""

    key: tuple
    """Hashable: the LoRA files and weights, embeddings and VAE in use (equal keys paint with equal networks)."""
    text_key: tuple
    """The part of `key` that changes text embeddings (LoRA text-encoder weights, embeddings): for the
    conditioning cache."""
    params: dict[str, str] = field(default_factory=dict)
    """A1111 infotext keys: ``Model hash``, ``VAE hash``, ``VAE``, ``Lora hashes``, ``TI hashes``."""


def apply_networks(pipe: Any, request: PaintRequest, notice: Notice, model_file: str | None = None) -> AppliedNetworks:
    """Put the request's LoRA, embeddings and VAE on the pipeline; say in one line what could not be used.

    Parameters
    ----------
    model_file
        The checkpoint file the pipeline came from, if it is a single file (for ``Model hash``).

    Raises
    ------
    ValueError
        For a malformed tag such as ``<lora:>`` (before anything is loaded).
    """
    texts, tags = {}, {}
    for name in _TEXT_FIELDS:  # (tags of unsupported kinds are said by the engine, with the conditioning)
        texts[name], tags[name], _ = extract_networks(getattr(request, name, "") or "")
    if tags["negative_prompt"]:
        names = ", ".join(f"<lora:{tag.name}>" for tag in tags["negative_prompt"])
        notice(f"prompt: {names} in the negative prompt does nothing (A1111 applies LoRA from the prompt only)")
    if tags["hires_prompt"] and {t.name for t in tags["hires_prompt"]} != {t.name for t in tags["prompt"]}:
        notice("prompt: the hires pass uses the prompt's LoRA (other LoRA in the hires prompt are not applied)")
    state = state_of(pipe)
    params: dict[str, str] = {}
    if model_file:
        params["Model hash"] = hash_with_notice("checkpoint", Path(model_file), notice)
    vae_key = set_vae(pipe, state, request, notice, params)
    loras = set_loras(pipe, state, tags["prompt"], request.allow_pickle, notice)
    if loras:
        params["Lora hashes"] = ", ".join(f"{_alias(tag.name)}: {state.loras[path].short_hash}" for path, tag in loras)
    has_embeddings = "embeddings" not in family_of(pipe).lacks  # (no textual inversion for T5 families yet)
    used = use_embeddings(pipe, state, texts, request.allow_pickle, notice) if has_embeddings else []
    if used:
        params["TI hashes"] = ", ".join(f"{_alias(stem)}: {state.embeddings[path].short_hash}" for stem, path in used)
    lora_key = tuple((path, state.loras[path].stamp[:2], tag.te_weight, tag.unet_weight) for path, tag in loras)
    text_key = (
        tuple((path, stamp, te) for path, stamp, te, _ in lora_key),
        tuple((stem, state.embeddings[path].stamp[:2]) for stem, path in used),
    )
    return AppliedNetworks((lora_key, text_key[1], vae_key), text_key, params)


def _alias(name: str) -> str:
    """A name as A1111 writes it inside ``Lora hashes`` / ``TI hashes`` (no ``:`` or ``,``)."""
    return name.replace(":", "").replace(",", "")
