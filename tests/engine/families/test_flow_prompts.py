"""Emphasis on Flux and SD3 as Forge applies it: T5 and CLIP outputs × the weights, back to the unweighted mean.

The reference embeddings are the formula, computed here from the tiny encoders' outputs, handed to raw diffusers'
pipelines as ``prompt_embeds``; the engine's pictures must match them within 1/255.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.pixels import assert_pixels_close, pixels
from helpers.progress_recorder import Recorder

from jupyter_sd.recipe.request import PaintRequest

WEIGHTED = "a (red:1.5) circle on a [blue] background"
PLAIN = "a red circle on a blue background"
WEIGHTS = [1.0, 1.5, 1.0, 1.0, 1.0, 1 / 1.1, 1.0]  # one per word of PLAIN


def _emphasis(z, weights):
    """The formula: z × weights, rescaled to z's original mean (A1111's and Forge's "Original")."""
    multipliers = torch.tensor(weights).reshape(1, -1, 1)
    weighted = z * multipliers
    return weighted * (z.mean() / weighted.mean())


def _t5_reference(tokenizer, encoder, length):
    ids = tokenizer(PLAIN, padding="max_length", max_length=length).input_ids  # 7 words, </s>, <pad>…
    assert len(ids) == length and ids[7] == tokenizer.eos_token_id
    return _emphasis(encoder(torch.tensor([ids]))[0], WEIGHTS + [1.0] * (length - 7))


def _clip_reference(tokenizer, encoder):
    ids = tokenizer(PLAIN, padding="max_length", max_length=tokenizer.model_max_length).input_ids
    output = encoder(torch.tensor([ids]), output_hidden_states=True)
    weights = [1.0, *WEIGHTS] + [1.0] * (len(ids) - 8)
    return _emphasis(output.hidden_states[-2], weights), output[0]


def _paint(engine, folder, prompt, **options):
    options = {"steps": 3, **options}
    request = PaintRequest(prompt=prompt, model=str(folder), width=32, height=32, seed=5, rng="cpu", **options)
    recorder = Recorder()
    return engine.generate(request, recorder).images[0], recorder


def _text_seen(engine, folder, prompt, **options):
    """The text embeddings the engine's transformer is called with (its first call), and the picture."""
    seen, picture = _texts_seen(engine, folder, prompt, **options)
    return seen[0], picture


def _texts_seen(engine, folder, prompt, **options):
    """The text embeddings of each of the engine's transformer calls, and the picture."""
    _paint(engine, folder, "a", steps=1)  # loaded
    seen = []
    # the context embedder's input: the text embeddings as the transformer really takes them, after any pre-hook
    embedder = engine._pipe.transformer.context_embedder
    hook = embedder.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    try:
        picture, _ = _paint(engine, folder, prompt, **options)
    finally:
        hook.remove()
    return seen, picture


def test_flux_weights_t5_as_forge_and_keeps_clips_pooled_output(engine, flux_dir):
    from diffusers import FluxPipeline

    seen, picture = _text_seen(engine, flux_dir, WEIGHTED)
    pipe = FluxPipeline.from_pretrained(flux_dir)
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        embeds = _t5_reference(pipe.tokenizer_2, pipe.text_encoder_2, 512)
        pooled = pipe.text_encoder(pipe.tokenizer(PLAIN, padding="max_length", return_tensors="pt").input_ids)[1]
    generator = torch.Generator("cpu").manual_seed(5)
    expected = pipe(prompt_embeds=embeds, pooled_prompt_embeds=pooled, width=32, height=32, num_inference_steps=3,
                    guidance_scale=3.5, generator=generator).images[0]  # fmt: skip
    assert torch.allclose(seen, embeds, atol=1e-6)  # the formula reached the transformer
    with torch.no_grad():
        assert not torch.allclose(seen, pipe._get_t5_prompt_embeds(PLAIN), atol=1e-3)  # not the unweighted text
    assert_pixels_close(picture, expected)
    unweighted = pipe(PLAIN, width=32, height=32, num_inference_steps=3, guidance_scale=3.5,
                      generator=torch.Generator("cpu").manual_seed(5)).images[0]  # fmt: skip
    plain, _ = _paint(engine, flux_dir, "(a red circle:1.0) on a blue background")
    assert_pixels_close(plain, unweighted)  # weights of 1: diffusers' own encoding of the text


def test_sd3_weights_both_clips_and_t5_with_cfg(engine, sd3_dir):
    from diffusers import StableDiffusion3Pipeline

    seen, picture = _text_seen(engine, sd3_dir, WEIGHTED, negative_prompt="dog", guidance=4.0)
    pipe = StableDiffusion3Pipeline.from_pretrained(sd3_dir)
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        hidden_l, pooled_l = _clip_reference(pipe.tokenizer, pipe.text_encoder)
        hidden_g, pooled_g = _clip_reference(pipe.tokenizer_2, pipe.text_encoder_2)
        t5 = _t5_reference(pipe.tokenizer_3, pipe.text_encoder_3, 256)
        clip = torch.nn.functional.pad(torch.cat([hidden_l, hidden_g], -1), (0, 64 - 64))
        negative, _, negative_pooled, _ = pipe.encode_prompt("dog", "dog", "dog", do_classifier_free_guidance=False)
    assert torch.allclose(seen, torch.cat([negative, torch.cat([clip, t5], -2)]), atol=1e-6)  # CFG: [neg, pos]
    expected = pipe(prompt_embeds=torch.cat([clip, t5], -2), pooled_prompt_embeds=torch.cat([pooled_l, pooled_g], -1),
                    negative_prompt_embeds=negative, negative_pooled_prompt_embeds=negative_pooled, width=32,
                    height=32, num_inference_steps=3, guidance_scale=4.0,
                    generator=torch.Generator("cpu").manual_seed(5)).images[0]  # fmt: skip
    assert_pixels_close(picture, expected)


def test_break_chunks_sd3_prompts_and_pads_the_negative_to_match(engine, sd3_dir):
    from diffusers import StableDiffusion3Pipeline

    from jupyter_sd.engine.families.prompt_embeds import flow_embeddings

    pipe = StableDiffusion3Pipeline.from_pretrained(sd3_dir)
    kwargs = flow_embeddings(pipe, "SD3", "a red circle BREAK a (blue:1.2) square", "", "Original")
    assert kwargs["prompt_embeds"].shape == kwargs["negative_prompt_embeds"].shape == (1, 2 * 16 + 2 * 256, 64)
    assert flow_embeddings(pipe, "SD3", PLAIN, "", "Original") is None  # no weights: the pipeline encodes the text


def test_a_prompt_longer_than_t5_reads_is_cut_with_one_line(engine, flux_dir):
    _, recorder = _paint(engine, flux_dir, " ".join(["red"] * 520), steps=1)
    assert "prompt: Flux's T5 reads 511 tokens a chunk; 9 were cut (BREAK starts a new chunk)" in recorder.notices


def test_and_on_flux_is_named_in_one_line(engine, flux_dir):
    _, recorder = _paint(engine, flux_dir, "a red circle AND a square", steps=1)
    assert (
        "prompt: AND is read as text on Flux (its distilled guidance has no CFG to combine parts in)"
        in recorder.notices
    )


def test_sd3_prompt_editing_swaps_the_embeddings_at_a1111s_step(engine, sd3_dir):
    from diffusers import StableDiffusion3Pipeline

    seen, picture = _texts_seen(engine, sd3_dir, "a [red:blue:0.5] circle", negative_prompt="dog", guidance=4.0,
                                steps=4)  # fmt: skip
    pipe = StableDiffusion3Pipeline.from_pretrained(sd3_dir)
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        red, negative, red_pooled, negative_pooled = pipe.encode_prompt(
            "a red circle", None, None, negative_prompt="dog"
        )
        blue, _, blue_pooled, _ = pipe.encode_prompt("a blue circle", None, None, negative_prompt="dog")
    last_red = int(0.5 * 4)  # A1111: the first text up to and including step int(when × steps), counted from 0
    expected = [torch.cat([negative, red if step <= last_red else blue]) for step in range(4)]
    assert len(seen) == 4 and all(torch.allclose(a, b, atol=1e-6) for a, b in zip(seen, expected))

    def swap(pipe_, index, timestep, tensors):
        if index == last_red:
            tensors["prompt_embeds"] = torch.cat([negative, blue])
            tensors["pooled_prompt_embeds"] = torch.cat([negative_pooled, blue_pooled])
        return tensors

    raw = pipe(prompt_embeds=red, pooled_prompt_embeds=red_pooled, negative_prompt_embeds=negative,
               negative_pooled_prompt_embeds=negative_pooled, width=32, height=32, num_inference_steps=4,
               guidance_scale=4.0, generator=torch.Generator("cpu").manual_seed(5), callback_on_step_end=swap,
               callback_on_step_end_tensor_inputs=["prompt_embeds", "pooled_prompt_embeds"]).images[0]  # fmt: skip
    assert_pixels_close(picture, raw)


def test_flux_alternation_reaches_the_prompts_call_and_the_negative_keeps_its_own(engine, flux_dir):
    from diffusers import FluxPipeline

    seen, _ = _texts_seen(engine, flux_dir, "a [red|blue] circle", negative_prompt="dog", guidance=2.0, steps=3)
    pipe = FluxPipeline.from_pretrained(flux_dir)
    with torch.no_grad():
        red, blue, dog = (pipe.encode_prompt(text, None)[0] for text in ("a red circle", "a blue circle", "dog"))
    # A1111's alternation lists step k (from 1) with option k mod 2 and paints step s (from 0) with the first entry
    # whose step is not before s: red, red, blue. Each step calls the prompt, then the negative
    expected = [red, dog, red, dog, blue, dog]
    assert len(seen) == 6 and all(torch.allclose(a, b, atol=1e-6) for a, b in zip(seen, expected))


@pytest.mark.parametrize(
    ("prompt", "texts", "weights"),
    [
        ("a red circle AND a blue square :0.6", ["a red circle", "a blue square"], [1.0, 0.6]),
        ("a red circle :0.5", ["a red circle"], [0.5]),  # one weighted part: A1111 composes it too
    ],
)
def test_sd3_and_combines_its_parts_as_composable_diffusion(engine, sd3_dir, prompt, texts, weights):
    """``uncond + Σ wᵢ·(condᵢ − uncond)`` as the prompt's prediction (CFG then makes A1111's ``u + g·Σ…``)."""
    from diffusers import StableDiffusion3Pipeline

    seen, picture = _texts_seen(engine, sd3_dir, prompt, negative_prompt="dog", guidance=4.0)
    pipe = StableDiffusion3Pipeline.from_pretrained(sd3_dir)
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        encoded = [pipe.encode_prompt(text, None, None, negative_prompt="dog") for text in texts]
    rows = [(encoded[0][1], encoded[0][3])] + [(e, p) for e, _, p, _ in encoded]  # the negative, then each part
    together = torch.cat([e for e, _ in rows])
    assert len(seen) == 3 and all(torch.allclose(s, together, atol=1e-6) for s in seen)
    forward = pipe.transformer.forward

    def composable(hidden_states, timestep, encoder_hidden_states, pooled_projections, **kwargs):
        kwargs.pop("return_dict", None)
        x, t = hidden_states[1:], timestep[1:]  # the prompt's half of CFG (the halves' latents are equal)
        u, *conds = (forward(hidden_states=x, timestep=t, encoder_hidden_states=e, pooled_projections=p,
                             return_dict=False, **kwargs)[0] for e, p in rows)  # fmt: skip
        return (torch.cat([u, u + sum(w * (c - u) for w, c in zip(weights, conds))]),)

    pipe.transformer.forward = composable
    (negative, negative_pooled), (first, first_pooled) = rows[0], rows[1]
    expected = pipe(prompt_embeds=first, pooled_prompt_embeds=first_pooled, negative_prompt_embeds=negative,
                    negative_pooled_prompt_embeds=negative_pooled, width=32, height=32, num_inference_steps=3,
                    guidance_scale=4.0, generator=torch.Generator("cpu").manual_seed(5)).images[0]  # fmt: skip
    assert_pixels_close(picture, expected)
    plain, _ = _paint(engine, sd3_dir, "a red circle", negative_prompt="dog", guidance=4.0)
    assert np.abs(pixels(plain) - pixels(picture)).max() > 2  # the weights (and parts) change the picture
