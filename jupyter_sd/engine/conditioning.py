"""Prompt text → text-encoder embeddings, the way AUTOMATIC1111 computes them.

What A1111 does and this module repeats (its ``sd_hijack_clip`` and ``prompt_parser``): the weighted pieces of
:func:`~jupyter_sd.prompts.parse_attention` are tokenized without special tokens and packed into chunks of
``model_max_length - 2`` (75) tokens; ``BREAK`` starts a new chunk; when a chunk fills up, the text after a comma
among its last 20 tokens moves to the next chunk; a textual-inversion embedding's vectors never straddle two
chunks. Each chunk is ``[BOS] + tokens + [EOS]`` padded with the tokenizer's pad token (EOS on SD 1, id 0 on
SD 2), encoded on its own (``Clip skip``: the N-th last layer, then the final layer norm), multiplied by its
tokens' weights and rescaled to its unweighted mean ("Original" emphasis); chunks are concatenated, so prompts are
not cut at 77 tokens. SDXL runs both text encoders (penultimate layers, concatenated) and takes the pooled
embedding from the first chunk.

Prompt editing and alternation swap embeddings between steps (the step callback returns ``prompt_embeds``);
``AND`` and prompt/negative pairs of different lengths run through a UNet wrapper inside diffusers' usual CFG, so
every sampler keeps working. A plain prompt reaches diffusers as the same tensors diffusers computes itself.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Iterator

from ..prompts import ExtraNetwork, extract_networks, parse_attention, prompt_schedules, split_and

COMMA_BACKTRACK = 20
"""A1111's "Prompt word wrap length limit": how far back a comma may move text to the next chunk."""
CACHE_SIZE = 16
"""Encoded prompts kept per text encoder (A1111 keeps the last one; a notebook alternates between a few)."""


def build_conditioning(
    pipe: Any,
    prompt: str,
    negative: str,
    steps: int,
    clip_skip: int = 1,
    hires_steps: int | None = None,
    networks_key: Any = (),
    *,
    pad_to_same_length: bool = False,
) -> Conditioning:
    """Encode a prompt and negative prompt for one denoising pass of `pipe`.

    Call it once per pass (txt2img, img2img, the hires pass), then::

        cond = build_conditioning(pipe, prompt, negative, steps, clip_skip, networks_key=key)
        with cond.applied(pipe):
            pipe(**cond.pipeline_kwargs(), ..., callback_on_step_end=lambda p, i, t, k: cond.on_step(p, i, t, k))

    (inside another step callback, call ``tensors = cond.on_step(pipe, index, timestep, tensors)`` first).

    Parameters
    ----------
    pipe
        A diffusers Stable Diffusion (1.x/2.x) or SDXL pipeline. Other families get the plain text back
        (``pipeline_kwargs()`` holds ``prompt``/``negative_prompt``, with tags and comments removed).
    prompt, negative
        A1111 syntax: emphasis, ``BREAK``, prompt editing, alternation, ``AND`` (positive only), ``<lora:…>``
        tags (taken out here; loading them is ``engine/networks.py``'s job), ``#`` comments.
    steps
        The denoiser evaluations of the pass as A1111 counts them for prompt editing: the request's steps
        (twice that for second-order samplers, as A1111 does). For the hires pass: the first pass's steps.
    clip_skip
        A1111's ``Clip skip`` (1 = the last layer). SDXL ignores it, as A1111 does by default.
    hires_steps
        The hires pass's steps, when encoding for that pass (``when`` values then count on from the first pass).
    networks_key
        Anything hashable naming what changes the text encoder (LoRA, embeddings loaded): part of the cache key.
    pad_to_same_length
        A1111's "pad prompt/negative prompt to be same length": pad the shorter with empty-prompt chunks and run
        one batched UNet call, instead of running the halves separately when their chunk counts differ.

    Returns
    -------
    Conditioning
        The pipeline arguments, the step hook and the UNet wrapper for this pass.

    Raises
    ------
    ValueError
        A malformed ``<lora:…>`` tag or emphasis weight (one line naming it).
    """
    prompt_text, networks, unsupported = extract_networks(prompt)
    negative_text, _, negative_unsupported = extract_networks(negative)
    encoders = _encoders(pipe)
    if not encoders:
        kwargs = {"prompt": prompt_text, "negative_prompt": negative_text or None}
        return Conditioning(kwargs=kwargs, networks=networks, unsupported=unsupported + negative_unsupported)
    clip_skip = 1 if len(encoders) > 1 else clip_skip
    key = (steps, hires_steps, clip_skip, networks_key)
    parts = [
        (weight, _encode_cached(encoders, text, key, steps, hires_steps, clip_skip))
        for text, weight in split_and(prompt_text)
    ]
    uncond = _encode_cached(encoders, negative_text, key, steps, hires_steps, clip_skip)
    if not negative_text and len(encoders) > 1 and pipe.config.get("force_zeros_for_empty_prompt"):
        # SDXL's empty negative prompt is zeros, in diffusers and in A1111
        _, embeds, pooled = parts[0][1].entries[0]
        uncond = _Schedule([(uncond.entries[-1][0], _zeros(embeds, embeds.shape[1]), _zeros_like(pooled))])
    if pad_to_same_length:
        empty = _encode_cached(encoders, "", key, steps, hires_steps, clip_skip).entries[0][1]
        longest = max(s.length for s in [uncond] + [p for _, p in parts])
        uncond = uncond.padded(empty, longest)
        parts = [(w, p.padded(empty, longest)) for w, p in parts]
    return Conditioning(parts=parts, uncond=uncond, networks=networks, unsupported=unsupported + negative_unsupported)


def clear_cache(pipe: Any) -> None:
    """Forget the embeddings cached on `pipe`'s text encoders (e.g. after changing their weights by hand)."""
    for encoder in _encoders(pipe):
        encoder.cache.clear()


# ---------------------------------------------------------------------------------------------------------------
# the result: what the pipeline is given, and how it changes between steps


@dataclass
class _Schedule:
    """One prompt's embeddings over the steps: ``(end_at_step, embeddings [1, T, D], pooled [1, P] | None)``."""

    entries: list[tuple[int, Any, Any]]

    @property
    def length(self) -> int:
        return self.entries[0][1].shape[1]

    def at(self, step: int) -> tuple[Any, Any]:
        for end, embeds, pooled in self.entries:
            if step <= end:
                return embeds, pooled
        return self.entries[-1][1], self.entries[-1][2]

    def padded(self, empty: Any, length: int) -> _Schedule:
        import torch

        out = []
        for end, embeds, pooled in self.entries:
            repeats = (length - embeds.shape[1]) // empty.shape[1]
            if repeats > 0:
                embeds = torch.cat([embeds, empty.repeat(1, repeats, 1)], dim=1)
            out.append((end, embeds, pooled))
        return _Schedule(out)


@dataclass
class Conditioning:
    """The embeddings of one pass and the hooks that apply them (see :func:`build_conditioning`)."""

    parts: list[tuple[float, _Schedule]] = field(default_factory=list)
    """The positive prompt's ``AND`` parts: (weight, schedule)."""
    uncond: _Schedule | None = None
    """The negative prompt's schedule."""
    networks: list[ExtraNetwork] = field(default_factory=list)
    """The ``<lora:…>`` tags of the prompt, in order."""
    unsupported: list[str] = field(default_factory=list)
    """Other extra-network tags found (``'hypernet:x:1'``): removed from the text, not applied."""
    kwargs: dict[str, Any] | None = None
    step: int = 0
    """The step (from 0) whose embeddings the UNet gets next."""

    @property
    def needs_wrapper(self) -> bool:
        """Whether the UNet must be wrapped: ``AND``, a part weight other than 1, or halves of unequal length."""
        if self.kwargs is not None:
            return False
        return len(self.parts) > 1 or self.parts[0][0] != 1.0 or self.parts[0][1].length != self.uncond.length

    @property
    def is_sdxl(self) -> bool:
        return self.kwargs is None and self.parts[0][1].entries[0][2] is not None

    def pipeline_kwargs(self) -> dict[str, Any]:
        """The arguments for the pipeline call: ``prompt_embeds``, ``negative_prompt_embeds`` (and SDXL's pooled)."""
        if self.kwargs is not None:
            return dict(self.kwargs)
        self.step = 0
        embeds, pooled = self.parts[0][1].at(0)
        negative, negative_pooled = self.uncond.at(0)
        if embeds.shape[1] != negative.shape[1]:  # the wrapper replaces both; diffusers wants equal shapes
            negative = _zeros(embeds, embeds.shape[1])
        kwargs = {"prompt_embeds": embeds, "negative_prompt_embeds": negative}
        if pooled is not None:
            kwargs.update(pooled_prompt_embeds=pooled, negative_pooled_prompt_embeds=negative_pooled)
        return kwargs

    def on_step(self, pipe: Any, index: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        """The step-end hook: move to the next step and, when its text differs, hand diffusers its embeddings."""
        if self.kwargs is not None:
            return tensors
        before = self.step
        self.step = index + 1
        if self.needs_wrapper or not self._changes(before, self.step):
            return tensors
        import torch

        images = tensors["latents"].shape[0] if "latents" in tensors else 1
        embeds, pooled = self.parts[0][1].at(self.step)
        negative, negative_pooled = self.uncond.at(self.step)
        guided = getattr(pipe, "do_classifier_free_guidance", True)
        new = torch.cat([negative.repeat(images, 1, 1), embeds.repeat(images, 1, 1)]) if guided else embeds.repeat(
            images, 1, 1
        )
        tensors["prompt_embeds"] = new
        if pooled is not None:
            tensors["add_text_embeds"] = (
                torch.cat([negative_pooled.repeat(images, 1), pooled.repeat(images, 1)])
                if guided
                else pooled.repeat(images, 1)
            )
        return tensors

    def _changes(self, before: int, after: int) -> bool:
        schedules = [self.uncond] + [p for _, p in self.parts]
        return any(s.at(before)[0] is not s.at(after)[0] for s in schedules)

    @contextlib.contextmanager
    def applied(self, pipe: Any) -> Iterator[None]:
        """Install the UNet wrapper for the call when this conditioning needs one (a no-op otherwise)."""
        unet = getattr(pipe, "unet", None)
        if not self.needs_wrapper or unet is None:
            yield
            return
        original = unet.forward
        unet.forward = _UNetWrapper(self, pipe, original)
        try:
            yield
        finally:
            del unet.forward  # the instance attribute goes; the class's forward shows again
            if unet.forward != original:  # someone (an offload hook) had replaced forward before us
                unet.forward = original


class _UNetWrapper:
    """Replaces ``unet.forward`` for one call: the negative half gets the negative prompt, the positive half
    ``uncond + Σ wᵢ·(condᵢ − uncond)`` over the ``AND`` parts, each half with its own embeddings and length."""

    def __init__(self, conditioning: Conditioning, pipe: Any, forward: Any) -> None:
        self.conditioning, self.pipe, self.forward = conditioning, pipe, forward

    def __call__(self, sample: Any, timestep: Any, encoder_hidden_states: Any, *args: Any, **kwargs: Any) -> Any:
        import torch

        cond = self.conditioning
        guided = bool(getattr(self.pipe, "do_classifier_free_guidance", False))
        images = sample.shape[0] // 2 if guided else sample.shape[0]
        latents = sample[images:] if guided else sample
        added = kwargs.pop("added_cond_kwargs", None)
        time_ids = added.get("time_ids") if added else None
        timestep_cond = kwargs.pop("timestep_cond", None)
        return_dict = kwargs.pop("return_dict", True)

        # every embedding this step needs: the negative first, then each AND part
        rows = [cond.uncond.at(cond.step)] + [p.at(cond.step) for _, p in cond.parts]
        outputs: list[Any] = [None] * len(rows)
        by_length: dict[int, list[int]] = {}
        for n, (embeds, _) in enumerate(rows):
            by_length.setdefault(embeds.shape[1], []).append(n)
        for members in by_length.values():  # one UNet call per length: A1111 batches what it can
            hidden = torch.cat([rows[n][0].repeat(images, 1, 1) for n in members]).to(encoder_hidden_states.dtype)
            extra = dict(kwargs)
            if added is not None:
                pooled = torch.cat([rows[n][1].repeat(images, 1) for n in members]).to(added["text_embeds"].dtype)
                ids = time_ids[images:] if guided else time_ids
                if guided:
                    ids = torch.cat([time_ids[:images] if n == 0 else ids for n in members])
                else:
                    ids = ids.repeat(len(members), 1)
                extra["added_cond_kwargs"] = {**added, "text_embeds": pooled, "time_ids": ids}
            if timestep_cond is not None:
                extra["timestep_cond"] = timestep_cond[-images:].repeat(len(members), 1)
            x = latents.repeat(len(members), *([1] * (latents.ndim - 1)))
            out = self.forward(x, timestep, hidden, *args, return_dict=False, **extra)[0]
            for k, n in enumerate(members):
                outputs[n] = out[k * images : (k + 1) * images]
        uncond = outputs[0]
        combined = uncond.clone()
        for (weight, _), out in zip(cond.parts, outputs[1:]):
            combined = combined + weight * (out - uncond)
        result = torch.cat([uncond, combined]) if guided else combined
        if return_dict:
            from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

            return UNet2DConditionOutput(sample=result)
        return (result,)


# ---------------------------------------------------------------------------------------------------------------
# encoding


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
        pieces = parse_attention(text)
        ids = self.tokenizer([t for t, _ in pieces], add_special_tokens=False, truncation=False)["input_ids"]
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

    def encode(self, texts: list[str], counts: list[int], clip_skip: int) -> tuple[list[Any], list[Any]]:
        """Encode texts together as A1111 batches them: equal chunk counts, one emphasis mean per chunk batch."""
        import torch

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
            z, pool = self._hidden(ids, clip_skip)
            multipliers = torch.tensor([b[1] for b in batch], device=device, dtype=z.dtype)
            if len(texts) == 1:
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
            norm = getattr(getattr(model, "text_model", model), "final_layer_norm")  # transformers 5: no text_model
            return norm(output.hidden_states[-clip_skip]), None
        pooled = output.text_embeds if self.role == "sdxl_2" else None
        return output.hidden_states[-2], pooled


def _encoders(pipe: Any) -> list[_Encoder]:
    tokenizer, model = getattr(pipe, "tokenizer", None), getattr(pipe, "text_encoder", None)
    tokenizer_2, model_2 = getattr(pipe, "tokenizer_2", None), getattr(pipe, "text_encoder_2", None)
    if getattr(pipe, "unet", None) is None:
        return []
    if model_2 is not None and tokenizer_2 is not None:
        first = [_Encoder(tokenizer, model, "sdxl_1")] if model is not None and tokenizer is not None else []
        return [*first, _Encoder(tokenizer_2, model_2, "sdxl_2")]
    if model is not None and tokenizer is not None and hasattr(model.config, "max_position_embeddings"):
        return [_Encoder(tokenizer, model, "sd")]
    return []


def _encode_cached(
    encoders: list[_Encoder], text: str, key: tuple, steps: int, hires_steps: int | None, clip_skip: int
) -> _Schedule:
    """One prompt's schedule of embeddings, from the cache when this text was encoded with this model before."""
    first = encoders[0]
    full_key = (text, *key, tuple(len(e.tokenizer) for e in encoders))
    cached = first.cache.get(full_key)
    if cached is not None:
        first.cache.move_to_end(full_key)
        return cached
    schedule = prompt_schedules(text, steps, hires_steps)
    texts: list[str] = []
    counts: list[int] = []  # A1111 encodes one text per schedule entry, repeats included
    for _, t in schedule:
        if t in texts:
            counts[texts.index(t)] += 1
        else:
            texts.append(t)
            counts.append(1)
    import torch

    with torch.no_grad():
        encoded = [e.encode(texts, counts, clip_skip) for e in encoders]
    lengths = [z[0].shape[1] for z, _ in encoded]
    if len(set(lengths)) > 1:  # SDXL's two tokenizers chunked differently: pad the shorter with empty chunks
        encoded = [_pad_to(e, z, p, max(lengths), clip_skip) for e, (z, p) in zip(encoders, encoded)]
    pooled = encoded[-1][1]
    embeds = [torch.cat([z[i] for z, _ in encoded], dim=-1) for i in range(len(texts))]
    result = _Schedule([(end, embeds[texts.index(t)], pooled[texts.index(t)]) for end, t in schedule])
    first.cache[full_key] = result
    while len(first.cache) > CACHE_SIZE:
        first.cache.popitem(last=False)
    return result


def _pad_to(encoder: _Encoder, zs: list[Any], pooled: list[Any], length: int, clip_skip: int):
    import torch

    empty, _ = encoder.encode([""], [1], clip_skip)
    out = []
    for z in zs:
        repeats = (length - z.shape[1]) // empty[0].shape[1]
        out.append(torch.cat([z, empty[0].repeat(1, repeats, 1)], dim=1) if repeats else z)
    return out, pooled


def _zeros(like: Any, length: int) -> Any:
    import torch

    return torch.zeros(like.shape[0], length, like.shape[2], dtype=like.dtype, device=like.device)


def _zeros_like(like: Any) -> Any:
    import torch

    return None if like is None else torch.zeros_like(like)
