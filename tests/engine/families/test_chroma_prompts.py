"""A1111's prompt syntax on Chroma (a tiny folder built from config) as on Flux: emphasis weighting its T5 as Forge
does, BREAK chunks, prompt editing and alternation, each with the attention mask Chroma's pipeline builds.

The reference embeddings are the formula, computed here from the tiny T5's output with its pads masked, handed to
raw diffusers' ChromaPipeline as ``prompt_embeds`` and ``prompt_attention_mask``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.pixels import assert_pixels_close, pixels
from helpers.progress_recorder import Recorder
from helpers.tiny_families import make_tiny_chroma

from jupyter_sd.recipe.request import PaintRequest

WEIGHTED = "a (red:1.5) circle on a [blue] background"
PLAIN = "a red circle on a blue background"
WEIGHTS = [1.0, 1.5, 1.0, 1.0, 1.0, 1 / 1.1, 1.0]  # one per word of PLAIN
LENGTH = 512  # Chroma's T5 tokens (diffusers' max_sequence_length)


@pytest.fixture(scope="module")
def chroma_dir(tmp_path_factory):
    return make_tiny_chroma(tmp_path_factory.mktemp("tiny-chroma"))


@pytest.fixture(scope="module")
def pipe(chroma_dir):
    from diffusers import ChromaPipeline

    pipe = ChromaPipeline.from_pretrained(chroma_dir)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _reference(pipe, text, weights):
    """The formula: T5 over ``tokens </s>`` (pads masked), × weights on those, rescaled to their mean; the mask
    Chroma's transformer reads (the tokens, ``</s>`` and the first pad)."""
    ids = pipe.tokenizer(text, padding="max_length", max_length=LENGTH).input_ids
    read = len(weights) + 1
    assert ids[read - 1] == pipe.tokenizer.eos_token_id  # one token a word, then </s>
    encoder_mask = torch.tensor([[1] * read + [0] * (LENGTH - read)])
    z = pipe.text_encoder(torch.tensor([ids]), attention_mask=encoder_mask)[0]
    head = z[:, :read] * torch.tensor([*weights, 1.0]).reshape(1, -1, 1)
    head = head * (z[:, :read].mean() / head.mean())
    return torch.cat([head, z[:, read:]], dim=1), (torch.arange(LENGTH) <= read).float()[None]


def _paint(engine, folder, prompt, **options):
    options = {"steps": 3, "guidance": 3.0, **options}
    request = PaintRequest(prompt=prompt, model=str(folder), width=32, height=32, seed=5, rng="cpu", **options)
    recorder = Recorder()
    return engine.generate(request, recorder).images[0], recorder


def _seen(engine, folder, prompt, **options):
    """The text embeddings and the attention mask of each of the engine's transformer calls, and the picture."""
    _paint(engine, folder, "a", steps=1)  # loaded
    texts, masks = [], []
    transformer = engine._pipe.transformer
    hooks = [
        transformer.context_embedder.register_forward_pre_hook(lambda module, args: texts.append(args[0].clone())),
        transformer.transformer_blocks[0].register_forward_pre_hook(
            lambda module, args, kwargs: masks.append(kwargs["attention_mask"].clone()), with_kwargs=True
        ),
    ]
    try:
        picture, _ = _paint(engine, folder, prompt, **options)
    finally:
        for hook in hooks:
            hook.remove()
    return texts, masks, picture


def test_chroma_weights_t5_as_forge_with_its_attention_mask(engine, chroma_dir, pipe):
    texts, masks, picture = _seen(engine, chroma_dir, WEIGHTED, negative_prompt="dog")
    with torch.no_grad():
        embeds, mask = _reference(pipe, PLAIN, WEIGHTS)
        unweighted, _ = pipe._get_t5_prompt_embeds(PLAIN)
    assert torch.allclose(texts[0], embeds, atol=1e-6)  # the formula reached the transformer
    assert not torch.allclose(texts[0], unweighted, atol=1e-3)  # not the unweighted text
    assert torch.equal(masks[0][:, :LENGTH], mask) and bool(masks[0][:, LENGTH:].all())  # then the picture's tokens
    expected = pipe(prompt_embeds=embeds, prompt_attention_mask=mask, negative_prompt="dog", width=32, height=32,
                    num_inference_steps=3, guidance_scale=3.0,
                    generator=torch.Generator("cpu").manual_seed(5)).images[0]  # fmt: skip
    assert_pixels_close(picture, expected)
    plain, recorder = _paint(engine, chroma_dir, "(a red circle:1.0) on a blue background")
    raw = pipe(PLAIN, width=32, height=32, num_inference_steps=3, guidance_scale=3.0,
               generator=torch.Generator("cpu").manual_seed(5)).images[0]  # fmt: skip
    assert_pixels_close(plain, raw)  # weights of 1: diffusers' own encoding of the text
    assert not any("plain text" in line for line in recorder.notices)


def test_break_gives_chroma_a_chunk_and_a_mask_each(pipe):
    from jupyter_sd.engine.families.prompt_embeds import flow_embeddings

    kwargs = flow_embeddings(pipe, "Chroma", "a red circle BREAK a (blue:1.2) square", "", "Original")
    assert kwargs["prompt_embeds"].shape[:2] == kwargs["prompt_attention_mask"].shape == (1, 2 * LENGTH)
    assert kwargs["prompt_attention_mask"].sum() == 2 * (3 + 2)  # each chunk: 3 words, </s> and the first pad
    assert kwargs["negative_prompt_attention_mask"].sum() == 2  # "": </s> and the first pad
    assert flow_embeddings(pipe, "Chroma", PLAIN, "", "Original") is None  # no weights: the pipeline reads the text


def test_chroma_prompt_editing_swaps_the_embeddings_at_a1111s_step(engine, chroma_dir, pipe):
    texts, _, picture = _seen(engine, chroma_dir, "a [red:blue:0.5] circle", negative_prompt="dog", steps=4)
    with torch.no_grad():
        (red, mask), (blue, _), (dog, _) = (pipe._get_t5_prompt_embeds(t) for t in ("a red circle", "a blue circle",
                                                                                     "dog"))  # fmt: skip
    last_red = int(0.5 * 4)  # A1111: the first text up to and including step int(when × steps), counted from 0
    expected = [e for step in range(4) for e in ((red if step <= last_red else blue), dog)]  # prompt, then negative
    assert len(texts) == 8 and all(torch.allclose(a, b, atol=1e-6) for a, b in zip(texts, expected))

    def swap(pipe_, index, timestep, tensors):  # (equal lengths: the mask stays)
        return {**tensors, "prompt_embeds": blue} if index == last_red else tensors

    raw = pipe(prompt_embeds=red, prompt_attention_mask=mask, negative_prompt="dog", width=32, height=32,
               num_inference_steps=4, guidance_scale=3.0, generator=torch.Generator("cpu").manual_seed(5),
               callback_on_step_end=swap, callback_on_step_end_tensor_inputs=["prompt_embeds"]).images[0]  # fmt: skip
    assert_pixels_close(picture, raw)


def test_chroma_alternation_of_texts_of_two_lengths_swaps_their_masks(engine, chroma_dir, pipe):
    texts, masks, _ = _seen(engine, chroma_dir, "a [red|green square] circle", negative_prompt="dog")
    with torch.no_grad():
        red, square, dog = (pipe._get_t5_prompt_embeds(t) for t in ("a red circle", "a green square circle", "dog"))
    # steps 0, 1, 2 paint red, red, green square (A1111's alternation), each the prompt then the negative
    expected = [red, dog, red, dog, square, dog]
    assert len(texts) == len(masks) == 6
    for (embeds, mask), text, seen_mask in zip(expected, texts, masks):
        assert torch.allclose(text, embeds, atol=1e-6)
        assert torch.equal(seen_mask[:, :LENGTH], mask) and bool(seen_mask[:, LENGTH:].all())
    assert [int(m[:, :LENGTH].sum()) for m in masks] == [5, 3, 5, 3, 6, 3]  # words + </s> + the first pad


def test_a_cut_prompt_is_one_line(engine, chroma_dir):
    _, recorder = _paint(engine, chroma_dir, " ".join(["red"] * 520), steps=1)
    assert "prompt: Chroma's T5 reads 511 tokens a chunk; 9 were cut (BREAK starts a new chunk)" in recorder.notices


@pytest.mark.parametrize(
    ("prompt", "texts", "guidance"),
    [
        ("a red circle AND a blue square :0.6", [["a red circle"], ["a blue square"]], 3.0),
        ("a red circle :1.3 AND a blue BREAK square :-0.4", [["a red circle"], ["a blue", "square"]], 3.0),
        ("a red circle AND a blue square :0.6", [["a red circle"], ["a blue square"]], 1.0),  # no CFG
        ("a red circle :0.5", [["a red circle"]], 3.0),  # one weighted part: A1111 composes it too
    ],
)
def test_chroma_and_combines_its_parts_as_composable_diffusion(engine, chroma_dir, pipe, prompt, texts, guidance):
    """The transformer called on each part's embeddings and the negative's, combined as A1111 combines them:
    ``uncond + Σ wᵢ·(condᵢ − uncond)`` as the prompt's prediction (the pipeline's CFG then makes
    ``uncond + g·Σ wᵢ·(condᵢ − uncond)``); the negative's own call returns ``uncond``."""
    from jupyter_sd.recipe.prompts import split_and

    weights = [weight for _, weight in split_and(prompt)]
    seen, _, picture = _seen(engine, chroma_dir, prompt, negative_prompt="dog", guidance=guidance)
    with torch.no_grad():
        chunks = [[pipe._get_t5_prompt_embeds(text) for text in part] for part in [["dog"], *texts]]
    rows = [(torch.cat([e for e, _ in part], dim=1), torch.cat([m for _, m in part], dim=1)) for part in chunks]
    (dog, dog_mask), (first, first_mask) = rows[0], rows[1]
    lengths = {embeds.shape[1] for embeds, _ in rows}
    assert len(seen) == 3 * len(lengths)  # each step: one call per text length (the negative's call made none)
    assert torch.allclose(torch.cat([s for s in seen if s.shape[1] == LENGTH]), torch.cat(
        [e for e, _ in rows if e.shape[1] == LENGTH] * 3), atol=1e-6)  # fmt: skip
    forward = pipe.transformer.forward

    def predict(hidden_states, encoder_hidden_states, attention_mask, txt_ids, **kwargs):
        kwargs.pop("return_dict", None)
        picture_tokens = torch.ones(1, hidden_states.shape[1])
        u, *conds = (forward(hidden_states=hidden_states, encoder_hidden_states=e, txt_ids=torch.zeros(e.shape[1], 3),
                             attention_mask=torch.cat([m, picture_tokens], dim=1), return_dict=False, **kwargs)[0]
                     for e, m in rows)  # fmt: skip
        if torch.equal(encoder_hidden_states, dog):
            return (u,)
        return (u + sum(w * (c - u) for w, c in zip(weights, conds)),)

    pipe.transformer.forward = predict
    try:
        expected = pipe(prompt_embeds=first, prompt_attention_mask=first_mask, negative_prompt_embeds=dog,
                        negative_prompt_attention_mask=dog_mask, width=32, height=32, num_inference_steps=3,
                        guidance_scale=guidance, generator=torch.Generator("cpu").manual_seed(5)).images[0]  # fmt: skip
    finally:
        del pipe.transformer.forward
    assert_pixels_close(picture, expected)
    plain, _ = _paint(engine, chroma_dir, "a red circle", negative_prompt="dog", guidance=guidance)
    assert torch.tensor(np.abs(pixels(plain) - pixels(picture)).max()) > 1  # the parts changed the picture
