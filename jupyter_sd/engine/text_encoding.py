"""A1111's text encoding: chunks of 75 tokens, emphasis weights, Clip skip, both SDXL encoders, a cache.

``conditioning.py`` decides what to encode for which step; this module turns one prompt's texts into tensors the
way A1111's ``sd_hijack_clip`` does (see ``conditioning``'s docstring for the rules).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from ..recipe.prompts import parse_attention

COMMA_BACKTRACK = 20
"""A1111's "Prompt word wrap length limit": how far back a comma may move text to the next chunk."""
OPEN_CLIP_WIDTH = 1024
"""The hidden size of SD 2's OpenCLIP ViT-H text encoder, which A1111 never applies Clip skip to."""
CACHE_SIZE = 16
"""Encoded prompts kept per text encoder (A1111 keeps the last one; a notebook alternates between a few)."""
EMPHASIS_MODES = ("Original", "No norm", "Ignore", "None")
"""A1111's "Emphasis mode" setting: rescale to the original mean, weights without the rescale, weights ignored
(the syntax still read), or no emphasis syntax at all (brackets and BREAK are plain text)."""


@dataclass(frozen=True)
class Encoding:
    """How texts become embeddings: A1111's Clip skip and emphasis mode (part of the cache key)."""

    clip_skip: int = 1
    emphasis: str = "Original"


@dataclass
class Schedule:
    """One prompt's embeddings over the steps: ``(end_at_step, embeddings [1, T, D], pooled [1, P] | None)``."""

    entries: list[tuple[int, Any, Any]]

    @property
    def length(self) -> int:
        """Tokens per embedding (chunks × 77)."""
        return self.entries[0][1].shape[1]

    def at(self, step: int) -> tuple[Any, Any]:
        """The embeddings for a step (from 0): the first entry whose end is not before it, as A1111 picks."""
        for end, embeds, pooled in self.entries:
            if step <= end:
                return embeds, pooled
        return self.entries[-1][1], self.entries[-1][2]

    def padded(self, empty: Any, length: int) -> Schedule:
        """A copy with each embedding padded to `length` tokens by repeats of `empty` (A1111's option)."""
        import torch

        out = []
        for end, embeds, pooled in self.entries:
            repeats = (length - embeds.shape[1]) // empty.shape[1]
            if repeats > 0:
                embeds = torch.cat([embeds, empty.repeat(1, repeats, 1)], dim=1)
            out.append((end, embeds, pooled))
        return Schedule(out)


class _Encoder:
    """One tokenizer and text encoder, with A1111's chunking and emphasis."""

    def __init__(self, tokenizer: Any, model: Any, role: str) -> None:
        self.tokenizer, self.model, self.role = tokenizer, model, role
        limit = min(int(tokenizer.model_max_length), int(model.config.max_position_embeddings))
        self.chunk_length = limit - 2
        self.bos = tokenizer.bos_token_id
        self.eos = tokenizer.eos_token_id
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos
        self.comma = tokenizer.get_vocab().get(",</w>")
        self.emphasis = "Original"
        if not hasattr(model, "_jupyter_sd_cache"):
            model._jupyter_sd_cache = OrderedDict()
        self.cache: OrderedDict = model._jupyter_sd_cache

    def embedding_groups(self) -> dict[int, list[int]]:
        """Multi-vector textual-inversion tokens (``tok``, ``tok_1``, …, as diffusers adds them) → all their ids."""
        added = self.tokenizer.get_added_vocab()
        groups = {}
        for token, first in added.items():
            ids, k = [first], 1
            while f"{token}_{k}" in added:
                ids.append(added[f"{token}_{k}"])
                k += 1
            if len(ids) > 1:
                groups[first] = ids
        return groups

    def chunks(self, text: str) -> list[tuple[list[int], list[float]]]:
        """A1111's ``tokenize_line``: ``(token ids, weights)`` per chunk, each ``chunk_length + 2`` long."""
        pieces = [(text, 1.0)] if self.emphasis == "None" else parse_attention(text)
        texts = [t for t, _ in pieces]
        ids = self.tokenizer(texts, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
        groups = self.embedding_groups()
        size = self.chunk_length
        chunks: list[tuple[list[int], list[float]]] = []
        tokens: list[int] = []
        weights: list[float] = []
        last_comma = -1

        def close() -> None:
            nonlocal tokens, weights, last_comma
            fill = size - len(tokens)
            chunks.append(([self.bos, *tokens, self.eos] + [self.pad] * fill, [1.0, *weights, 1.0] + [1.0] * fill))
            tokens, weights, last_comma = [], [], -1

        for (piece, weight), piece_ids in zip(pieces, ids):
            if piece == "BREAK" and weight == -1:
                close()
                continue
            for token in piece_ids:
                unit = groups.get(token, [token])
                if token == self.comma:
                    last_comma = len(tokens)
                elif len(tokens) == size and last_comma != -1 and len(tokens) - last_comma <= COMMA_BACKTRACK:
                    moved_tokens, moved_weights = tokens[last_comma + 1 :], weights[last_comma + 1 :]
                    tokens, weights = tokens[: last_comma + 1], weights[: last_comma + 1]
                    close()
                    tokens, weights = moved_tokens, moved_weights
                if len(tokens) == size:
                    close()
                if len(unit) > 1 and len(tokens) + len(unit) > size:
                    close()
                tokens += unit
                weights += [weight] * len(unit)
        if tokens or not chunks:
            close()
        return chunks

    def encode(self, texts: list[str], counts: list[int], how: Encoding) -> tuple[list[Any], list[Any]]:
        """Encode texts together as A1111 batches them: equal chunk counts, one emphasis mean per chunk batch."""
        import torch

        self.emphasis = how.emphasis
        per_text = [self.chunks(t) for t in texts]
        count = max(len(c) for c in per_text)
        empty = ([self.bos, self.eos] + [self.pad] * self.chunk_length, [1.0] * (self.chunk_length + 2))
        device = self.model.device
        zs: list[list[Any]] = [[] for _ in texts]
        pooled: list[Any] = [None] * len(texts)
        share = torch.tensor(counts, dtype=torch.float64)
        for c in range(count):
            batch = [chunks[c] if c < len(chunks) else empty for chunks in per_text]
            ids = torch.tensor([b[0] for b in batch], device=device)
            z, pool = self._hidden(ids, how.clip_skip)
            multipliers = torch.tensor([b[1] for b in batch], device=device, dtype=z.dtype)
            if how.emphasis in ("Ignore", "None") or bool((multipliers == 1).all()):
                pass  # all weights 1: the rescale is ×1 (and would be 0/0 for a chunk whose mean is exactly 0)
            elif how.emphasis == "No norm":
                z = z * multipliers.unsqueeze(-1).expand(z.shape)
            elif len(texts) == 1:
                original = z.mean()
                z = z * multipliers.unsqueeze(-1).expand(z.shape)
                z = z * (original / z.mean())
            else:  # the mean over the batch A1111 encodes: each text as often as the schedule lists it
                weights = (share / share.sum()).to(device=device, dtype=z.dtype)
                original = (z.mean(dim=(1, 2)) * weights).sum()
                z = z * multipliers.unsqueeze(-1).expand(z.shape)
                z = z * (original / (z.mean(dim=(1, 2)) * weights).sum())
            for b in range(len(texts)):
                zs[b].append(z[b : b + 1])
                if c == 0 and pool is not None:
                    pooled[b] = pool[b : b + 1]
        return [torch.cat(z, dim=1) for z in zs], pooled

    def _hidden(self, ids: Any, clip_skip: int) -> tuple[Any, Any]:
        """The encoder's output for token ids: (hidden states as the pipeline uses them, pooled or None)."""
        model = self.model
        if self.role == "sd" and clip_skip <= 1:
            output = model(ids)
            return output[0], None
        output = model(ids, output_hidden_states=True)
        if self.role == "sd":
            norm = getattr(model, "text_model", model).final_layer_norm  # transformers 5: no text_model
            return norm(output.hidden_states[-clip_skip]), None
        pooled = output.text_embeds if self.role == "sdxl_2" else None
        return output.hidden_states[-2], pooled


def encoders_of(pipe: Any) -> list[_Encoder]:
    """The pipeline's CLIP text encoders and tokenizers, SDXL's two in order; [] where A1111 syntax is not ours."""
    tokenizer, model = getattr(pipe, "tokenizer", None), getattr(pipe, "text_encoder", None)
    tokenizer_2, model_2 = getattr(pipe, "tokenizer_2", None), getattr(pipe, "text_encoder_2", None)
    from .families import family_of

    family = family_of(pipe)
    if "prompt syntax" in family.lacks or "t5" in family.text_encoders:  # not A1111's CLIP-only chunks
        return []
    if family.text_encoders == ("clip_l", "clip_g") and model_2 is not None and tokenizer_2 is not None:
        first = [_Encoder(tokenizer, model, "sdxl_1")] if model is not None and tokenizer is not None else []
        return [*first, _Encoder(tokenizer_2, model_2, "sdxl_2")]
    if model is not None and tokenizer is not None and hasattr(model.config, "max_position_embeddings"):
        return [_Encoder(tokenizer, model, "sd")]
    return []


def encode_cached(
    encoders: list[_Encoder], schedule: list[tuple[int, str]], how: Encoding, networks_key: Any
) -> Schedule:
    """One prompt's embeddings over its schedule, from the cache when these texts were encoded before."""
    texts: list[str] = []
    counts: list[int] = []  # A1111 encodes one text per schedule entry, repeats included
    for _, t in schedule:
        if t in texts:
            counts[texts.index(t)] += 1
        else:
            texts.append(t)
            counts.append(1)
    first = encoders[0]
    key = (tuple(texts), tuple(counts), how, networks_key, tuple(len(e.tokenizer) for e in encoders))
    cached = first.cache.get(key)
    if cached is not None:
        first.cache.move_to_end(key)
        embeds, pooled = cached
        return Schedule([(end, embeds[texts.index(t)], pooled[texts.index(t)]) for end, t in schedule])
    import torch

    with torch.no_grad():
        encoded = [e.encode(texts, counts, how) for e in encoders]
    lengths = [z[0].shape[1] for z, _ in encoded]
    if len(set(lengths)) > 1:  # SDXL's two tokenizers chunked differently: pad the shorter with empty chunks
        encoded = [_pad_to(e, z, p, max(lengths), how) for e, (z, p) in zip(encoders, encoded)]
    pooled = encoded[-1][1]
    embeds = [torch.cat([z[i] for z, _ in encoded], dim=-1) for i in range(len(texts))]
    first.cache[key] = (embeds, pooled)
    while len(first.cache) > CACHE_SIZE:
        first.cache.popitem(last=False)
    return Schedule([(end, embeds[texts.index(t)], pooled[texts.index(t)]) for end, t in schedule])


def _pad_to(encoder: _Encoder, zs: list[Any], pooled: list[Any], length: int, how: Encoding):
    import torch

    empty, _ = encoder.encode([""], [1], how)
    out = []
    for z in zs:
        repeats = (length - z.shape[1]) // empty[0].shape[1]
        out.append(torch.cat([z, empty[0].repeat(1, repeats, 1)], dim=1) if repeats else z)
    return out, pooled
