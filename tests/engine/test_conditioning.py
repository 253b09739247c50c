"""Embeddings the A1111 way, checked against references built by hand in each test.

The tiny pipelines here have a 16-token context, so a chunk holds 14 tokens (A1111's 75 on real models): long
prompts, BREAK and the comma backtrack show up with a few words.
"""

from __future__ import annotations

import json

import pytest
import torch
from helpers.pixels import assert_pixels_close
from helpers.tiny_pipeline import WORDS, _tokenizer, save_sd_pipeline, tiny_vae

from jupyter_sd.engine import Engine
from jupyter_sd.engine.conditioning import build_conditioning
from jupyter_sd.engine.schedulers import make_scheduler
from jupyter_sd.recipe.request import PaintRequest

CHUNK = 14


def _vocab_tokenizer(folder, pad_token="<|endoftext|>"):
    """The tiny test tokenizer plus a comma (A1111 backtracks to commas), optionally padding with '!' (SD 2)."""
    from transformers import CLIPTokenizer

    _tokenizer(folder)
    vocab = json.loads((folder / "vocab.json").read_text())
    vocab.setdefault(",", len(vocab))
    vocab.setdefault(",</w>", len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    return CLIPTokenizer(
        str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=16, pad_token=pad_token
    )


def _make_sd(folder, pad_token="<|endoftext|>"):
    from helpers.tiny_pipeline import tiny_text_encoder, tiny_unet

    torch.manual_seed(0)
    tokenizer = _vocab_tokenizer(folder / "_tok", pad_token)
    unet = tiny_unet()
    text_encoder = tiny_text_encoder(tokenizer, layers=3, pad_token_id=tokenizer.pad_token_id)
    # a trained final layer norm has a bias; the fresh one's zero bias makes every layer-normed vector's mean 0,
    # and A1111's mean rescale then divides 0 by 0
    norm = getattr(text_encoder, "text_model", text_encoder).final_layer_norm
    torch.nn.init.normal_(norm.bias, 0.0, 0.5)
    return save_sd_pipeline(folder, unet, tiny_vae(16), text_encoder, tokenizer)


@pytest.fixture(scope="module")
def sd_dir(tmp_path_factory):
    return _make_sd(tmp_path_factory.mktemp("cond-sd"))


@pytest.fixture(scope="module")
def sd2_dir(tmp_path_factory):
    return _make_sd(tmp_path_factory.mktemp("cond-sd2"), pad_token="!")


def _load(folder):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def pipe(sd_dir):
    return _load(sd_dir)


# -- the reference, by hand ------------------------------------------------------------------------------------


def _ids(pipe, words):
    vocab = pipe.tokenizer.get_vocab()
    return [vocab[w + "</w>"] if w + "</w>" in vocab else vocab[w] for w in words]


def _reference(pipe, chunks, clip_skip=1):
    """chunks: [(words, weights)]. [BOS] words [EOS] pad…, encoded, weighted, rescaled to the unweighted mean."""
    tok = pipe.tokenizer
    out = []
    for words, weights in chunks:
        ids = [tok.bos_token_id, *_ids(pipe, words), tok.eos_token_id]
        ids += [tok.pad_token_id] * (CHUNK + 2 - len(ids))
        w = torch.tensor([1.0, *weights] + [1.0] * (CHUNK + 1 - len(weights)))
        with torch.no_grad():
            states = pipe.text_encoder(torch.tensor([ids]), output_hidden_states=True)
        z = states.hidden_states[-clip_skip]
        z = getattr(pipe.text_encoder, "text_model", pipe.text_encoder).final_layer_norm(z)
        z_weighted = z * w[None, :, None]
        out.append(z_weighted * (z.mean() / z_weighted.mean()))
    return torch.cat(out, dim=1)


def _ones(words):
    return (words, [1.0] * len(words))


ROW = "a red circle on a blue square".split()  # one token per word in the tiny vocabulary


@pytest.mark.parametrize("clip_skip", [1, 2, 3])
@pytest.mark.parametrize(
    ("prompt", "chunks"),
    [
        ("a (red:1.5) circle", [(["a", "red", "circle"], [1.0, 1.5, 1.0])]),
        ("a ((red)) [circle]", [(["a", "red", "circle"], [1.0, 1.1 * 1.1, 1 / 1.1])]),
        (
            "a red circle BREAK a [blue] square",
            [_ones(["a", "red", "circle"]), (["a", "blue", "square"], [1, 1 / 1.1, 1])],
        ),
        # 16 words without a comma: 14, then the rest
        (" ".join(ROW + ROW + ["cat", "dog"]), [_ones((ROW + ROW)[:14]), _ones(["cat", "dog"])]),
        # a comma among the last 20 tokens of a full chunk: what follows it moves to the next chunk
        (
            "a red circle on a blue square, a fox on a red square on snow, a cat",
            [
                _ones(ROW + [","]),
                _ones("a fox on a red square on snow , a cat".split()),
            ],
        ),
        ("", [_ones([])]),
    ],
)
def test_embeddings_equal_the_hand_reference(pipe, prompt, chunks, clip_skip):
    cond = build_conditioning(pipe, prompt, "", 4, clip_skip=clip_skip)
    expected = _reference(pipe, chunks, clip_skip)
    got = cond.pipeline_kwargs()["prompt_embeds"]
    assert got.shape == expected.shape == (1, len(chunks) * 16, 32)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_sd2_pads_with_its_pad_token(sd2_dir):
    pipe = _load(sd2_dir)
    assert pipe.tokenizer.pad_token_id != pipe.tokenizer.eos_token_id
    cond = build_conditioning(pipe, "a (red:1.2) circle", "", 4)
    expected = _reference(pipe, [(["a", "red", "circle"], [1, 1.2, 1])])
    torch.testing.assert_close(cond.pipeline_kwargs()["prompt_embeds"], expected, rtol=1e-5, atol=1e-6)
    plain = build_conditioning(pipe, "a red circle", "", 4).pipeline_kwargs()["prompt_embeds"]
    diffusers_own, _ = pipe.encode_prompt("a red circle", "cpu", 1, False)
    assert torch.equal(plain, diffusers_own)


def test_plain_prompt_is_what_diffusers_encodes(pipe):
    kwargs = build_conditioning(pipe, "a red circle on a blue square", "a dog", 4).pipeline_kwargs()
    positive, negative = pipe.encode_prompt("a red circle on a blue square", "cpu", 1, True, "a dog")
    assert torch.equal(kwargs["prompt_embeds"], positive) and torch.equal(kwargs["negative_prompt_embeds"], negative)


def test_textual_inversion_vectors_stay_in_one_chunk(pipe, sd_dir):
    pipe = _load(sd_dir)
    vectors = torch.randn(3, 32)
    pipe.load_textual_inversion({"emb_params": vectors}, token="mytok")
    assert pipe.tokenizer.convert_tokens_to_ids(["mytok", "mytok_1", "mytok_2"]) == list(
        range(len(pipe.tokenizer) - 3, len(pipe.tokenizer))
    )
    # short: the same tokens diffusers' maybe_convert_prompt makes
    short = build_conditioning(pipe, "a mytok circle", "", 4).pipeline_kwargs()["prompt_embeds"]
    diffusers_own, _ = pipe.encode_prompt("a mytok circle", "cpu", 1, False)
    assert torch.equal(short, diffusers_own)
    # 12 words + 3 vectors do not fit in 14: the embedding moves whole to the next chunk
    words = (ROW + ROW)[:12]
    long = build_conditioning(pipe, " ".join(words) + " mytok", "", 4).pipeline_kwargs()["prompt_embeds"]
    expected = _reference(pipe, [_ones(words), _ones(["mytok", "mytok_1", "mytok_2"])])
    torch.testing.assert_close(long, expected, rtol=1e-5, atol=1e-6)


# -- pixels: the engine against raw diffusers and a denoising loop written here ---------------------------------


def _reference_loop(pipe, conds_at, steps=4, guidance=7.0, seed=3):
    """CFG by hand: eps = u + g·Σ wᵢ(cᵢ − u), each half through the UNet on its own; Euler."""
    scheduler = make_scheduler("Euler", "Automatic", dict(pipe.scheduler.config))
    scheduler.set_timesteps(steps)
    generator = torch.Generator("cpu").manual_seed(seed)
    latents = torch.randn((1, 4, 8, 8), generator=generator) * scheduler.init_noise_sigma
    with torch.no_grad():
        for i, t in enumerate(scheduler.timesteps):
            negative, parts = conds_at(i)
            x = scheduler.scale_model_input(latents, t)
            u = pipe.unet(x, t, encoder_hidden_states=negative).sample
            c = sum(w * (pipe.unet(x, t, encoder_hidden_states=p).sample - u) for w, p in parts)
            latents = scheduler.step(u + guidance * c, t, latents).prev_sample
        image = pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample
    return pipe.image_processor.postprocess(image)[0]


def _paint(engine, folder, prompt, negative="", steps=4, **options):
    request = PaintRequest(
        prompt=prompt,
        negative_prompt=negative,
        model=str(folder),
        steps=steps,
        seed=3,
        sampler="Euler",
        preview="none",
        save=False,
        rng="cpu",
        **options,
    )
    return engine.generate(request).images[0]


@pytest.fixture(scope="module")
def engine():
    return Engine()


def _embeds(pipe, text, clip_skip=1):
    return build_conditioning(pipe, text, "", 4, clip_skip).pipeline_kwargs()["prompt_embeds"]


def test_weighted_prompt_pixels_equal_raw_diffusers(engine, pipe, sd_dir):
    prompt = "a (red:1.4) circle BREAK on a [blue] square"
    positive = _reference(
        pipe, [(["a", "red", "circle"], [1, 1.4, 1]), (["on", "a", "blue", "square"], [1, 1, 1 / 1.1, 1])], 2
    )
    negative = _reference(pipe, [_ones(["dog"]), _ones(["cat"])], 2)
    pipe.scheduler = make_scheduler("Euler", "Automatic", dict(pipe.scheduler.config))
    expected = pipe(
        prompt_embeds=positive,
        negative_prompt_embeds=negative,
        num_inference_steps=4,
        guidance_scale=7.0,
        generator=torch.Generator("cpu").manual_seed(3),
    ).images[0]
    got = _paint(engine, sd_dir, prompt, "dog BREAK cat", clip_skip=2)
    assert_pixels_close(got, expected)
    assert "Clip skip: 2" in PaintRequest(prompt=prompt, clip_skip=2).to_infotext()
    assert "Clip skip" not in PaintRequest(prompt=prompt).to_infotext()


def test_different_chunk_counts_run_the_halves_separately(engine, pipe, sd_dir):
    long_prompt = " ".join(ROW + ROW + ["cat"])  # two chunks against a one-chunk negative
    positive, negative = _embeds(pipe, long_prompt), _embeds(pipe, "dog")
    assert positive.shape[1] == 32 and negative.shape[1] == 16
    expected = _reference_loop(pipe, lambda i: (negative, [(1.0, positive)]))
    assert_pixels_close(_paint(engine, sd_dir, long_prompt, "dog"), expected)


def test_pad_to_same_length_pads_the_negative_with_empty_chunks(pipe):
    long_prompt = " ".join(ROW + ROW + ["cat"])
    cond = build_conditioning(pipe, long_prompt, "dog", 4, pad_to_same_length=True)
    kwargs = cond.pipeline_kwargs()
    empty = _reference(pipe, [_ones([])])
    expected_negative = torch.cat([_embeds(pipe, "dog"), empty], dim=1)
    torch.testing.assert_close(kwargs["negative_prompt_embeds"], expected_negative, rtol=1e-5, atol=1e-6)
    assert not cond.needs_wrapper  # one batched UNet call, as diffusers makes it


def test_and_combines_inside_cfg(engine, pipe, sd_dir):
    first, second, negative = _embeds(pipe, "a red circle"), _embeds(pipe, "a blue square"), _embeds(pipe, "")
    expected = _reference_loop(pipe, lambda i: (negative, [(1.0, first), (0.5, second)]))
    assert_pixels_close(_paint(engine, sd_dir, "a red circle AND a blue square :0.5"), expected)


def test_prompt_editing_switches_at_its_step(engine, pipe, sd_dir):
    red, blue, negative = _embeds(pipe, "a red circle"), _embeds(pipe, "a blue circle"), _embeds(pipe, "")
    # A1111: steps 0 and 1 are <= 1 and use the first text; steps 2 and 3 the second
    expected = _reference_loop(pipe, lambda i: (negative, [(1.0, red if i <= 1 else blue)]))
    _paint(engine, sd_dir, "x")  # loaded: now watch what the UNet is given at each step
    seen = []

    def watch(module, args, kwargs):
        seen.append(kwargs["encoder_hidden_states"][-1:].detach().clone())  # the positive half of the CFG batch

    handle = engine._pipe.unet.register_forward_pre_hook(watch, with_kwargs=True)
    try:
        got = _paint(engine, sd_dir, "a [red:blue:1] circle")
    finally:
        handle.remove()
    assert_pixels_close(got, expected)
    # this model's picture barely depends on the text, so the pixels alone could not tell a missed switch
    assert [("red" if torch.equal(e, red) else "blue" if torch.equal(e, blue) else "?") for e in seen] == [
        "red", "red", "blue", "blue",
    ]  # fmt: skip


def test_alternation_cycles(engine, pipe, sd_dir):
    red, blue, negative = _embeds(pipe, "a red circle"), _embeds(pipe, "a blue circle"), _embeds(pipe, "")
    # schedule [(1, red), (2, blue), (3, red), (4, blue)]: step s takes the first entry whose end >= s
    texts = {0: red, 1: red, 2: blue, 3: red}
    expected = _reference_loop(pipe, lambda i: (negative, [(1.0, texts[i])]))
    assert_pixels_close(_paint(engine, sd_dir, "a [red|blue] circle"), expected)


def _px(image):
    import numpy as np

    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_second_identical_request_encodes_nothing(sd_dir, tmp_path):
    from helpers.lora_files import kohya_lora

    from jupyter_sd import library

    library.set_models_dir(tmp_path)
    engine = Engine()
    _paint(engine, sd_dir, "a (red:1.2) circle", "dog")
    calls = []
    hook = engine._pipe.text_encoder.register_forward_hook(lambda *args: calls.append(1))
    try:
        _paint(engine, sd_dir, "a (red:1.2) circle", "dog")
        assert calls == []
        _paint(engine, sd_dir, "a (red:1.2) circle", "dog", steps=6)  # no editing: the steps do not matter
        assert calls == []
        _paint(engine, sd_dir, "a (red:1.2) circle", "dog", clip_skip=2)  # clip skip is part of the key
        assert len(calls) == 2
        (tmp_path / "Lora").mkdir()
        kohya_lora(engine._pipe, tmp_path / "Lora" / "x.safetensors")
        _paint(engine, sd_dir, "a (red:1.2) circle <lora:x:0.5>", "dog", clip_skip=2)  # so are the LoRA loaded
        assert len(calls) == 4
    finally:
        hook.remove()
        library.set_models_dir(None)


def test_lora_tags_are_taken_out_of_the_text(pipe):
    cond = build_conditioning(pipe, "a red circle <lora:detail:0.8> <hypernet:h:1>", "", 4)
    assert [n.name for n in cond.networks] == ["detail"] and cond.unsupported == ["hypernet:h:1"]
    assert torch.equal(cond.pipeline_kwargs()["prompt_embeds"], _embeds(pipe, "a red circle  "))
    with pytest.raises(ValueError, match="<lora:>"):
        build_conditioning(pipe, "a cat <lora:>", "", 4)


# -- SDXL -------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sdxl_dir(tmp_path_factory):
    from helpers.tiny_sdxl import make_tiny_sdxl

    return make_tiny_sdxl(tmp_path_factory.mktemp("cond-sdxl"))


def test_sdxl_paints_a_weighted_prompt(engine, sdxl_dir):
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(sdxl_dir)
    pipe.set_progress_bar_config(disable=True)
    words, weights = ["a", "red", "circle"], [1.0, 1.3, 1.0]
    ids = [0, *_ids(pipe, words), 1] + [1] * (CHUNK - len(words))
    w = torch.tensor([1.0, *weights] + [1.0] * (CHUNK + 1 - len(weights)))[None, :, None]
    halves = []
    with torch.no_grad():
        for encoder in (pipe.text_encoder, pipe.text_encoder_2):
            out = encoder(torch.tensor([ids]), output_hidden_states=True)
            z = out.hidden_states[-2]
            halves.append(z * w * (z.mean() / (z * w).mean()))
        pooled = pipe.text_encoder_2(torch.tensor([ids])).text_embeds
    positive = torch.cat(halves, dim=-1)
    cond = build_conditioning(pipe, "a (red:1.3) circle", "", 4, clip_skip=2)  # SDXL ignores clip skip (A1111)
    kwargs = cond.pipeline_kwargs()
    torch.testing.assert_close(kwargs["prompt_embeds"], positive, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(kwargs["pooled_prompt_embeds"], pooled)
    assert not kwargs["negative_prompt_embeds"].any()  # the empty negative is zeros, as in diffusers and A1111
    pipe.scheduler = make_scheduler("Euler", "Automatic", dict(pipe.scheduler.config))
    expected = pipe(
        prompt_embeds=positive,
        pooled_prompt_embeds=pooled,
        num_inference_steps=4,
        guidance_scale=7.0,
        generator=torch.Generator("cpu").manual_seed(3),
    ).images[0]
    assert_pixels_close(_paint(engine, sdxl_dir, "a (red:1.3) circle", clip_skip=2), expected)


def test_sdxl_and_with_different_lengths_runs(engine, sdxl_dir):
    long_prompt = " ".join(WORDS + WORDS) + " AND a blue square :0.7"
    image = _paint(engine, sdxl_dir, long_prompt, "a dog")
    assert image.size == (16, 16)


# -- A1111's emphasis modes and "pad conds" ------------------------------------------------------------------------


def test_emphasis_modes(pipe):
    prompt = "a (red:1.5) circle"
    weights = torch.tensor([1.0, 1.0, 1.5, 1.0] + [1.0] * 12)[None, :, None]
    plain = _reference(pipe, [_ones(["a", "red", "circle"])])
    no_norm = build_conditioning(pipe, prompt, "", 4, emphasis="No norm").pipeline_kwargs()["prompt_embeds"]
    torch.testing.assert_close(no_norm, plain * weights, rtol=1e-5, atol=1e-6)
    ignore = build_conditioning(pipe, prompt, "", 4, emphasis="Ignore").pipeline_kwargs()["prompt_embeds"]
    torch.testing.assert_close(ignore, plain, rtol=1e-5, atol=1e-6)
    # None: the text goes to the tokenizer as written, as diffusers would take it
    literal = build_conditioning(pipe, "a red BREAK circle", "", 4, emphasis="None").pipeline_kwargs()
    diffusers_own, _ = pipe.encode_prompt("a red BREAK circle", "cpu", 1, False)
    assert torch.equal(literal["prompt_embeds"], diffusers_own)


def test_pad_conds_paints_what_diffusers_paints_with_the_padded_negative(engine, pipe, sd_dir):
    long_prompt = " ".join(ROW + ROW + ["cat"])
    positive = _reference(pipe, [_ones(ROW + ROW), _ones(["cat"])])
    negative = torch.cat([_reference(pipe, [_ones(["dog"])]), _reference(pipe, [_ones([])])], dim=1)
    pipe.scheduler = make_scheduler("Euler", "Automatic", dict(pipe.scheduler.config))
    expected = pipe(
        prompt_embeds=positive,
        negative_prompt_embeds=negative,
        num_inference_steps=4,
        guidance_scale=7.0,
        generator=torch.Generator("cpu").manual_seed(3),
    ).images[0]
    assert_pixels_close(_paint(engine, sd_dir, long_prompt, "dog", pad_conds=True), expected)
    separate = _paint(engine, sd_dir, long_prompt, "dog")
    assert (abs(_px(separate) - _px(expected)) > 1).any()  # the default (separate halves) is another picture
    assert "Pad conds: True" in PaintRequest(prompt="x", pad_conds=True).to_infotext()
