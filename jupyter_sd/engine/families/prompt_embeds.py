"""Emphasis on the CLIP and T5 families (Flux, SD3, Chroma): prompt embeddings weighted as Forge weights them.

Forge's ``t5_engine`` and ``classic_engine`` read A1111's emphasis (``(word:1.2)``, ``[word]``, ``BREAK``) for T5 and
CLIP alike: the pieces are tokenized without special tokens, each token keeps its piece's weight, the encoder's
output is multiplied by the weights and rescaled to its unweighted mean ("Original"; "No norm" skips the rescale).
``BREAK`` starts a new chunk, encoded on its own; the chunks are concatenated. CLIP-L's pooled output (Flux, SD3)
is its first chunk's, unweighted, as Forge takes it.

The token layout is the pipeline's own (``[tokens] </s>`` padded with ``<pad>`` to ``max_sequence_length``: 512 on
Flux and Chroma, 256 on SD3; CLIP ``<s> tokens </s>`` padded to 77), so a prompt whose weights are all 1 paints
exactly what the pipeline paints from its text, and such a prompt reaches the pipeline as text. A chunk longer
than its encoder reads is cut, and `cut_notes` says so in one line (diffusers cuts silently).

Chroma's T5 reads each chunk with its pads masked out, and its transformer reads the chunk's tokens, ``</s>`` and
the first pad (its pipeline's ``prompt_attention_mask``): the weights and the mean restored are those tokens' and
``</s>``'s, the masks of a prompt's chunks are concatenated as its embeddings are.
"""

from __future__ import annotations

from typing import Any

from ...recipe.prompts import parse_attention

T5_LENGTHS = {"Flux": 512, "SD3": 256, "Chroma": 512}
"""The T5 tokens a prompt reaches the model with: diffusers' ``max_sequence_length`` default per family."""
SECOND = {"Flux": "pooled_prompt_embeds", "SD3": "pooled_prompt_embeds", "Chroma": "prompt_attention_mask"}
"""What the pipeline takes beside ``prompt_embeds`` (and as ``negative_…``): CLIP's pooled output, or T5's mask."""
AND_AS_TEXT = {"Flux": "its distilled guidance has no CFG to combine parts in"}
"""The families that read ``AND`` as text, and why (SD3 and Chroma combine the parts: prompt_steps.py)."""

Chunk = tuple[list[int], list[float]]


def weighted(text: str, emphasis: str) -> bool:
    """Whether `text` needs its own embeddings: a weight other than 1 or a ``BREAK`` (with emphasis read)."""
    if emphasis == "None":
        return False
    return any(weight != 1.0 for _, weight in parse_attention(text))


def plain_text(text: str, emphasis: str) -> str:
    """The text the pipeline reads when no weight applies: the brackets gone unless emphasis is ``None``."""
    if emphasis == "None":
        return text
    return "".join(piece for piece, weight in parse_attention(text) if weight != -1)


def token_chunks(tokenizer: Any, text: str, emphasis: str) -> list[Chunk]:
    """``(token ids, weights)`` per ``BREAK``-separated chunk, without special tokens (Forge's ``tokenize_line``)."""
    pieces = [(text, 1.0)] if emphasis == "None" else parse_attention(text)
    ids = tokenizer([p for p, _ in pieces], add_special_tokens=False, verbose=False)["input_ids"]
    chunks: list[Chunk] = [([], [])]
    for (piece, weight), piece_ids in zip(pieces, ids):
        if weight == -1 and piece == "BREAK":
            chunks.append(([], []))
            continue
        factor = 1.0 if emphasis == "Ignore" else weight
        chunks[-1][0].extend(piece_ids)
        chunks[-1][1].extend([factor] * len(piece_ids))
    return chunks


def _apply(z: Any, weights: list[float], emphasis: str) -> Any:
    """A1111's and Forge's emphasis on one chunk's output: ×weights, then (Original) back to the original mean."""
    import torch

    if all(w == 1.0 for w in weights):
        return z
    multipliers = torch.tensor(weights, dtype=z.dtype, device=z.device).reshape(1, -1, 1)
    if emphasis == "No norm":
        return z * multipliers
    original = z.mean()
    z = z * multipliers
    return z * (original / z.mean())


def _t5(pipe: Any, chunks: list[Chunk], length: int, emphasis: str) -> Any:
    """T5's embeddings: each chunk ``tokens </s>`` padded to `length` (cut to fit), encoded, weighted, concatenated."""
    import torch

    tokenizer, model = _t5_parts(pipe)
    out = []
    for tokens, weights in chunks:
        tokens, weights = tokens[: length - 1], weights[: length - 1]
        fill = length - len(tokens) - 1
        ids = [*tokens, tokenizer.eos_token_id] + [tokenizer.pad_token_id] * fill
        z = model(torch.tensor([ids], device=pipe._execution_device))[0]
        out.append(_apply(z, [*weights, 1.0] + [1.0] * fill, emphasis).to(dtype=model.dtype))
    return torch.cat(out, dim=1)


def _clip(pipe: Any, tokenizer: Any, model: Any, chunks: list[Chunk], emphasis: str) -> tuple[Any, Any]:
    """One CLIP's penultimate hidden states (chunks of 77, weighted) and its first chunk's pooled output (SD3)."""
    import torch

    length = int(tokenizer.model_max_length)
    hidden, pooled = [], None
    for tokens, weights in chunks:
        tokens, weights = tokens[: length - 2], weights[: length - 2]
        fill = length - len(tokens) - 2
        ids = [tokenizer.bos_token_id, *tokens, tokenizer.eos_token_id] + [tokenizer.pad_token_id] * fill
        output = model(torch.tensor([ids], device=pipe._execution_device), output_hidden_states=True)
        pooled = output[0] if pooled is None else pooled
        z = output.hidden_states[-2]
        hidden.append(_apply(z, [1.0, *weights, 1.0] + [1.0] * fill, emphasis).to(dtype=model.dtype))
    return torch.cat(hidden, dim=1), pooled.to(dtype=model.dtype)


def _t5_parts(pipe: Any) -> tuple[Any, Any]:
    if getattr(pipe, "text_encoder_3", None) is not None:
        return pipe.tokenizer_3, pipe.text_encoder_3
    if getattr(pipe, "text_encoder_2", None) is not None:
        return pipe.tokenizer_2, pipe.text_encoder_2
    return pipe.tokenizer, pipe.text_encoder  # Chroma: T5 alone


def chroma_embeds(pipe: Any, text: str, emphasis: str) -> tuple[Any, Any]:
    """Chroma's ``prompt_embeds`` (T5 read with its pads masked, weighted) and ``prompt_attention_mask``."""
    import torch

    tokenizer, model = _t5_parts(pipe)
    length, device = T5_LENGTHS["Chroma"], pipe._execution_device
    embeds, masks = [], []
    for tokens, weights in token_chunks(tokenizer, text, emphasis):
        tokens, weights = tokens[: length - 1], weights[: length - 1]
        read = len(tokens) + 1  # the tokens and </s>
        ids = [*tokens, tokenizer.eos_token_id] + [tokenizer.pad_token_id] * (length - read)
        mask = torch.tensor([[1] * read + [0] * (length - read)], device=device)
        z = model(torch.tensor([ids], device=device), attention_mask=mask)[0]
        z = torch.cat([_apply(z[:, :read], [*weights, 1.0], emphasis), z[:, read:]], dim=1)
        embeds.append(z.to(dtype=model.dtype))
        masks.append((torch.arange(length, device=device) <= read).to(model.dtype)[None])  # and the first pad
    return torch.cat(embeds, dim=1), torch.cat(masks, dim=1)


def _pad_chunks(chunks: list[Chunk], count: int) -> list[Chunk]:
    """`chunks` with empty ones after it up to `count` (SD3's CFG batches both halves: equal lengths)."""
    return chunks + [([], [])] * (count - len(chunks))


def flux_embeds(pipe: Any, text: str, emphasis: str) -> tuple[Any, Any]:
    """Flux's ``prompt_embeds`` (T5, weighted) and ``pooled_prompt_embeds`` (CLIP-L of the first chunk's text)."""
    first = text if emphasis == "None" else _first_chunk(text)
    pooled = pipe._get_clip_prompt_embeds(prompt=first, device=pipe._execution_device)
    embeds = _t5(pipe, token_chunks(pipe.tokenizer_2, text, emphasis), T5_LENGTHS["Flux"], emphasis)
    return embeds, pooled


def sd3_embeds(pipe: Any, text: str, emphasis: str, counts: tuple[int, int]) -> tuple[Any, Any]:
    """SD3's ``prompt_embeds`` ([CLIP-L | CLIP-G] padded to T5's width, then T5) and pooled ([L | G]).

    `counts`: the CLIP and T5 chunk counts both halves are padded to, so the negative matches the prompt's length.
    """
    import torch

    parts = []
    for tokenizer, model in ((pipe.tokenizer, pipe.text_encoder), (pipe.tokenizer_2, pipe.text_encoder_2)):
        chunks = _pad_chunks(token_chunks(tokenizer, text, emphasis), counts[0])
        parts.append(_clip(pipe, tokenizer, model, chunks, emphasis))
    clip = torch.cat([parts[0][0], parts[1][0]], dim=-1)
    pooled = torch.cat([parts[0][1], parts[1][1]], dim=-1)
    t5_chunks = _pad_chunks(token_chunks(pipe.tokenizer_3, text, emphasis), counts[1])
    t5 = _t5(pipe, t5_chunks, T5_LENGTHS["SD3"], emphasis)
    clip = torch.nn.functional.pad(clip, (0, t5.shape[-1] - clip.shape[-1]))
    return torch.cat([clip, t5.to(clip.dtype)], dim=-2), pooled


def _first_chunk(text: str) -> str:
    """The text before the first ``BREAK`` (Forge's pooled output is its first chunk's)."""
    pieces = parse_attention(text)
    cut = next((n for n, (p, w) in enumerate(pieces) if p == "BREAK" and w == -1), len(pieces))
    return "".join(p for p, _ in pieces[:cut])


def flow_embeddings(pipe: Any, family: str, prompt: str, negative: str, emphasis: str) -> dict[str, Any] | None:
    """The pipeline arguments for a Flux, SD3 or Chroma prompt and negative, or None when its own text will do.

    The pipeline's own encoding is kept for prompts without weights or ``BREAK`` (it reads their text, brackets
    removed): their pictures are exactly diffusers'.
    """
    if family not in T5_LENGTHS or not (weighted(prompt, emphasis) or weighted(negative or "", emphasis)):
        return None
    import inspect

    import torch

    with torch.no_grad():
        if family == "SD3":
            texts = (prompt, negative or "")
            clip = max(len(token_chunks(pipe.tokenizer, t, emphasis)) for t in texts)
            t5 = max(len(token_chunks(pipe.tokenizer_3, t, emphasis)) for t in texts)
            embeds, second = sd3_embeds(pipe, prompt, emphasis, (clip, t5))
            negative_embeds, negative_second = sd3_embeds(pipe, negative or "", emphasis, (clip, t5))
        else:
            embeds, second = ENCODERS[family](pipe, prompt, emphasis)
            negative_embeds, negative_second = ENCODERS[family](pipe, negative or "", emphasis)
    kwargs = {"prompt_embeds": embeds, SECOND[family]: second}
    if negative or family != "Flux":  # Flux's pipeline runs CFG only with a negative prompt given
        kwargs.update({"negative_prompt_embeds": negative_embeds, f"negative_{SECOND[family]}": negative_second})
    takes = inspect.signature(type(pipe).__call__).parameters  # Flux's ControlNet img2img takes no negative
    return {name: value for name, value in kwargs.items() if name in takes}


ENCODERS = {"Flux": flux_embeds, "Chroma": chroma_embeds}
"""The families whose prompt and negative prompt are encoded apart (SD3 pads both halves to one length)."""


def cut_notes(pipe: Any, family: str, texts: dict[str, str], emphasis: str) -> list[str]:
    """One line per prompt longer than an encoder reads (T5: the family's length; SD3's CLIP: 75 a chunk)."""
    if family not in T5_LENGTHS:
        return []
    tokenizer, _ = _t5_parts(pipe)
    notes = []
    for name, text in texts.items():
        if not text:
            continue
        t5 = max(len(tokens) for tokens, _ in token_chunks(tokenizer, text, emphasis))
        if t5 > T5_LENGTHS[family] - 1:
            notes.append(
                f"{name}: {family}'s T5 reads {T5_LENGTHS[family] - 1} tokens a chunk; {t5 - T5_LENGTHS[family] + 1} "
                "were cut (BREAK starts a new chunk)"
            )
        if family == "SD3":
            clip = int(pipe.tokenizer.model_max_length) - 2
            longest = max(len(tokens) for tokens, _ in token_chunks(pipe.tokenizer, text, emphasis))
            if longest > clip:
                notes.append(
                    f"{name}: SD3's CLIP reads {clip} tokens a chunk; {longest - clip} were cut "
                    "(BREAK starts a new chunk)"
                )
    return notes


def prompt_notes(family: str, pipe: Any, request: Any) -> list[str]:
    """The lines a Flux, SD3 or Chroma request's prompts earn: ``AND`` read as text, prompts cut (`cut_notes`)."""
    if family not in T5_LENGTHS:
        return []
    from ...recipe.prompts import extract_networks, split_and

    texts = {"prompt": request.prompt or "", "negative prompt": request.negative_prompt or ""}
    texts = {name: extract_networks(text)[0] for name, text in texts.items()}
    notes = []
    if family in AND_AS_TEXT and len(split_and(texts["prompt"])) > 1:
        notes.append(f"prompt: AND is read as text on {family} ({AND_AS_TEXT[family]})")
    return notes + cut_notes(pipe, family, texts, request.emphasis)
