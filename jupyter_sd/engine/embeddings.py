"""Textual-inversion embeddings, triggered as in A1111: a prompt word equal to a file's stem in ``embeddings/``.

Every layout A1111 reads loads (A1111 ``.pt`` and safetensors, diffusers' one-key files, SDXL's ``clip_l``/
``clip_g`` pairs); a file for another model family, or one named like a word the model knows, is refused in one
line. Loaded tokens stay on the tokenizer until the file changes.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any

from .. import library
from .network_state import LoadedEmbedding, NetworkState, Notice, file_stamp, first_line, quiet_loading, read_weights

_WORD_EDGE = r"(?<![\w\-.]){}(?![\w\-])"


def use_embeddings(
    pipe: Any, state: NetworkState, texts: dict[str, str], allow_pickle: bool, notice: Notice
) -> list[tuple[str, str]]:
    """Load the embeddings whose file stem is a word of a prompt (A1111's trigger); return (stem, path) of each.

    A multi-vector embedding is loaded as diffusers does (``stem``, ``stem_1``, …); conditioning.py expands the
    word to all its vectors and keeps them in one chunk.
    """
    candidates = library.list_models("embedding")
    if not candidates or not hasattr(pipe, "load_textual_inversion"):
        return []
    used: list[tuple[str, str]] = []
    for model in candidates:
        pattern = re.compile(_WORD_EDGE.format(re.escape(model.name)), re.IGNORECASE)
        if not any(pattern.search(text) for text in texts.values()):
            continue
        if not _load_embedding(pipe, state, model.path, model.name, allow_pickle, notice):
            continue
        used.append((model.name, str(model.path)))
    return used


def _load_embedding(pipe: Any, state: NetworkState, path: Path, stem: str, allow_pickle: bool, notice: Notice) -> bool:
    key, stamp = str(path), (*file_stamp(path), allow_pickle)
    loaded = state.embeddings.get(key)
    if loaded is not None and loaded.stamp[:2] == stamp[:2]:
        return True
    refused = state.refused.get(key)
    if refused is not None and refused[0] == stamp:
        notice(refused[1])
        return False
    if loaded is not None:
        with quiet_loading(), contextlib.suppress(Exception):
            pipe.unload_textual_inversion(list(loaded.tokens))
        del state.embeddings[key]
    try:
        vectors = _embedding_vectors(path, read_weights(path, allow_pickle, "embedding"), pipe)
        for _, tokenizer, _ in vectors:
            if stem in tokenizer.get_vocab() or f"{stem}_1" in tokenizer.get_vocab():
                msg = (
                    f"embedding: {path.name} is named like a word the model already knows ('{stem}'); "
                    "rename the file to use it"
                )
                raise ValueError(msg)
        with quiet_loading():
            for encoder, tokenizer, tensor in vectors:
                pipe.load_textual_inversion(tensor, token=stem, text_encoder=encoder, tokenizer=tokenizer)
    except (ValueError, OSError, RuntimeError) as error:
        text = str(error)
        if not text.startswith("embedding:"):
            text = f"embedding: could not read {path.name} ({first_line(error)}); painting without it"
        state.refused[key] = (stamp, text)
        notice(text)
        return False
    count = vectors[0][2].shape[0]
    tokens = (stem, *(f"{stem}_{i}" for i in range(1, count)))
    state.embeddings[key] = LoadedEmbedding(stamp, library.short_hash("embedding", path), tokens)
    state.loads += 1
    return True


def _embedding_vectors(path: Path, data: Any, pipe: Any) -> list[tuple[Any, Any, Any]]:
    """The (text encoder, tokenizer, vectors) to load, from any layout A1111 reads.

    A1111 ``.pt`` (``string_to_param``), A1111 safetensors (``emb_params``), diffusers' one-key files, SDXL's
    ``clip_l``/``clip_g`` pair.

    Raises
    ------
    ValueError
        For any other layout, or vectors whose width is not the text encoder's (another model family).
    """
    import torch

    encoders = [(pipe.text_encoder, pipe.tokenizer)]
    if getattr(pipe, "text_encoder_2", None) is not None:
        encoders.append((pipe.text_encoder_2, pipe.tokenizer_2))
    tensors: list[Any]
    if isinstance(data, dict) and "clip_l" in data and "clip_g" in data:
        tensors = [data["clip_l"], data["clip_g"]]
    elif isinstance(data, dict) and isinstance(data.get("string_to_param"), dict) and "*" in data["string_to_param"]:
        tensors = [data["string_to_param"]["*"]]
    elif isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), torch.Tensor):
        tensors = [next(iter(data.values()))]
    elif isinstance(data, torch.Tensor):
        tensors = [data]
    else:
        keys = ", ".join(list(data)[:4]) if isinstance(data, dict) else type(data).__name__
        msg = f"embedding: {path.name} is not a textual-inversion embedding (it holds {keys}); painting without it"
        raise ValueError(msg)
    if len(tensors) != len(encoders):
        made_for, this = ("SDXL", "SD 1.x/2.x") if len(tensors) == 2 else ("SD 1.x/2.x", "SDXL")
        msg = f"embedding: {path.name} is made for {made_for} and this model is {this}; painting without it"
        raise ValueError(msg)
    vectors = []
    for (encoder, tokenizer), tensor in zip(encoders, tensors):
        tensor = tensor.detach().float().reshape(-1, tensor.shape[-1])
        width = encoder.get_input_embeddings().weight.shape[-1]
        if tensor.shape[-1] != width:
            msg = (
                f"embedding: {path.name} has vectors of width {tensor.shape[-1]} and this model's text encoder "
                f"takes {width} (made for another model family); painting without it"
            )
            raise ValueError(msg)
        vectors.append((encoder, tokenizer, tensor))
    return vectors
