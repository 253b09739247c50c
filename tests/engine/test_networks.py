"""LoRA, textual inversion and an external VAE on the tiny pipeline, against raw diffusers and hand-made references.

The files are made here the way A1111 users get them: a kohya-format LoRA (``lora_unet_*`` / ``lora_te_*`` keys
with ``alpha``), A1111 embeddings (``emb_params`` safetensors, ``string_to_param`` pickles) and an LDM-layout VAE.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from helpers.ldm_checkpoint import vae_to_ldm
from helpers.lora_files import kohya_lora
from helpers.pixels import assert_pixels_close, pixels
from helpers.tiny_pipeline import make_tiny_pipeline, tiny_vae
from safetensors.torch import save_file

from jupyter_sd import library
from jupyter_sd.engine import Engine, Progress
from jupyter_sd.engine.networks import state_of
from jupyter_sd.engine.schedulers import make_scheduler
from jupyter_sd.recipe.infotext import parse_infotext
from jupyter_sd.recipe.request import PaintRequest

pytest.importorskip("peft")


class Notes(Progress):
    """Keeps the one-line notices a generation gives."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def notice(self, text: str) -> None:
        if not text.startswith(("loading ", "loaded ")):  # the model's own load lines
            self.lines.append(text)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    """The tiny random pipeline with a non-zero bias on CLIP's final layer norm.

    A freshly initialised LayerNorm (weight 1, bias 0) makes every token's vector zero-mean, so the whole chunk's
    mean is 0 up to rounding, and A1111's emphasis rescale (mean / weighted mean) is then 0/0 on some prompts.
    Trained text encoders never have that; giving the bias values keeps these pictures meaningful.
    """
    from transformers import CLIPTextModel

    folder = make_tiny_pipeline(tmp_path_factory.mktemp("tiny-networks"))
    encoder = CLIPTextModel.from_pretrained(folder / "text_encoder")
    layer_norm = getattr(encoder, "text_model", encoder).final_layer_norm
    with torch.no_grad():
        layer_norm.bias.copy_(torch.randn(layer_norm.bias.shape, generator=torch.Generator().manual_seed(5)) * 0.5)
    encoder.save_pretrained(folder / "text_encoder")
    return folder


@pytest.fixture(scope="module")
def fresh(tiny_model_dir):
    """A function making a fresh raw diffusers pipeline of the tiny model."""
    from diffusers import StableDiffusionPipeline

    def make():
        pipe = StableDiffusionPipeline.from_pretrained(tiny_model_dir, safety_checker=None)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    return make


@pytest.fixture(scope="module")
def models(tmp_path_factory, fresh):
    """A models folder with the test's LoRA, embeddings and VAE (the LoRA's layers kept for merging by hand)."""
    root = tmp_path_factory.mktemp("networks") / "models"
    for folder in library.SUBFOLDERS.values():
        (root / folder).mkdir(parents=True)
    library.set_models_dir(root)
    pipe = fresh()
    layers = kohya_lora(pipe, root / "Lora" / "add_detail.safetensors")
    kohya_lora(pipe, root / "Lora" / "other_detail.safetensors", seed=1)
    vectors = torch.randn(2, 32, generator=torch.Generator().manual_seed(3))
    save_file({"emb_params": vectors}, str(root / "embeddings" / "EasyNeg.safetensors"))
    torch.save(
        {"string_to_param": {"*": torch.randn(1, 32)}, "name": "stored-name", "step": 100},
        root / "embeddings" / "oldstyle.pt",
    )
    torch.manual_seed(7)
    vae = tiny_vae(16)
    ldm = {k: v.contiguous() for k, v in vae_to_ldm(vae.state_dict(), dict(vae.config)).items()}
    save_file(ldm, str(root / "VAE" / "alt-vae.safetensors"))
    yield {"root": root, "layers": layers, "vectors": vectors, "vae": vae}
    library.set_models_dir(None)


@pytest.fixture(scope="module")
def engine(models):
    return Engine()


def _request(tiny_model_dir, prompt, **options):
    options = {"steps": 2, "seed": 11, "preview": "none", "rng": "cpu", **options}
    return PaintRequest(prompt=prompt, model=str(tiny_model_dir), **options)


def _encode_ids(pipe, text):
    """What diffusers' encode_prompt computes for a text, from the tokenizer's ids alone."""
    tokenizer = pipe.tokenizer
    ids = tokenizer(text, padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt").input_ids
    with torch.no_grad():
        return pipe.text_encoder(ids)[0]


def _raw(pipe, prompt, negative=None, seed=11, **embeds):
    pipe.scheduler = make_scheduler("DPM++ 2M", "Automatic", dict(pipe.scheduler.config))
    return pipe(
        prompt,
        negative_prompt=negative,
        **embeds,
        num_inference_steps=2,
        guidance_scale=7.0,
        generator=[torch.Generator("cpu").manual_seed(seed)],
    ).images[0]


def _same(actual, expected) -> bool:
    """Identical pictures, and not blank ones (a NaN picture casts to one flat colour: equality would mean nothing)."""
    assert pixels(expected).std() > 1, "blank reference picture"
    return np.array_equal(pixels(actual), pixels(expected))


def _payload_hash(path) -> str:
    raw = path.read_bytes()
    return hashlib.sha256(raw[8 + int.from_bytes(raw[:8], "little") :]).hexdigest()[:12]


def _paint(engine, tiny_model_dir, prompt, **options):
    notes = Notes()
    result = engine.generate(_request(tiny_model_dir, prompt, **options), notes)
    return result, notes.lines


# -- LoRA ------------------------------------------------------------------------------------------------------


def test_kohya_lora_paints_as_diffusers_and_as_the_weights_merged_by_hand(engine, models, fresh, tiny_model_dir):
    lora = models["root"] / "Lora" / "add_detail.safetensors"
    result, notes = _paint(engine, tiny_model_dir, "a red circle <lora:add_detail:0.8:0.6>")
    assert notes == []
    plain = fresh()
    plain.load_lora_weights(str(lora.parent), weight_name=lora.name, adapter_name="x")
    plain.set_adapters(["x"], [{"text_encoder": 0.8, "unet": 0.6}])
    assert_pixels_close(result.images[0], _raw(plain, "a red circle"))
    # Independent of diffusers' converter: W + w * alpha/rank * up @ down, merged into a fresh pipeline by hand.
    merged = fresh()
    for component, name, up, down in models["layers"]:
        module = dict(getattr(merged, component).named_modules())[name]
        with torch.no_grad():
            module.weight += (0.6 if component == "unet" else 0.8) * (2.0 / 4) * (up @ down)
    assert_pixels_close(result.images[0], _raw(merged, "a red circle"))
    without = engine.generate(_request(tiny_model_dir, "a red circle")).images[0]
    assert np.abs(pixels(without) - pixels(result.images[0])).max() > 8  # the LoRA changed the picture
    params = parse_infotext(result.infotext(0))[2]
    assert params["Lora hashes"] == f"add_detail: {_payload_hash(lora)}"
    assert result.request.prompt == "a red circle <lora:add_detail:0.8:0.6>"  # the recipe keeps the tag


def test_weight_zero_is_no_lora_and_a_prompt_without_the_tag_switches_it_off(engine, models, tiny_model_dir):
    without = engine.generate(_request(tiny_model_dir, "a blue square")).images[0]
    zero = engine.generate(_request(tiny_model_dir, "a blue square <lora:add_detail:0>")).images[0]
    one = engine.generate(_request(tiny_model_dir, "a blue square <lora:add_detail:1>")).images[0]
    after = engine.generate(_request(tiny_model_dir, "a blue square")).images[0]
    assert not _same(one, without)  # the LoRA does change this picture, so the equalities below mean something
    assert _same(zero, without)
    assert _same(after, without)


def test_switching_the_weight_between_cells_reloads_nothing(engine, models, tiny_model_dir):
    first = engine.generate(_request(tiny_model_dir, "a fox <lora:add_detail:0.5> <lora:other_detail:1>"))
    pipe, state = engine._pipe, state_of(engine._pipe)
    loads, adapters = state.loads, engine._pipe.get_list_adapters()
    assert loads >= 2 and {"add_detail", "other_detail"} <= {name for names in adapters.values() for name in names}
    second = engine.generate(_request(tiny_model_dir, "a fox <lora:add_detail:1.0> <lora:other_detail:0.2>"))
    again = engine.generate(_request(tiny_model_dir, "a fox <lora:add_detail:0.5> <lora:other_detail:1>"))
    assert engine._pipe is pipe and state_of(engine._pipe) is state  # the same pipeline: no reload either
    assert state.loads == loads and engine._pipe.get_list_adapters() == adapters
    assert not _same(first.images[0], second.images[0])
    assert _same(first.images[0], again.images[0])
    assert parse_infotext(second.infotext(0))[2]["Lora hashes"].count(":") == 2  # both files, A1111's format


def test_lora_of_the_prompt_apply_to_the_whole_batch(engine, models, tiny_model_dir):
    batch = engine.generate(_request(tiny_model_dir, "a cat <lora:add_detail:0.9>", n=2))
    alone = engine.generate(_request(tiny_model_dir, "a cat <lora:add_detail:0.9>", seed=12))
    plain = engine.generate(_request(tiny_model_dir, "a cat", seed=12))
    assert_pixels_close(batch.images[1], alone.images[0])  # a batch of two sums in another order: within 1/255
    assert np.abs(pixels(plain.images[0]) - pixels(alone.images[0])).max() > 8  # and the LoRA shows


def test_a_missing_lora_is_one_line_with_close_matches_and_painting_goes_on(engine, models, tiny_model_dir):
    result, notes = _paint(engine, tiny_model_dir, "a red circle <lora:add_detial:1>")
    plain = engine.generate(_request(tiny_model_dir, "a red circle")).images[0]
    folder = models["root"] / "Lora"
    assert notes == [f"lora: no 'add_detial' in {folder} (closest: add_detail, other_detail); painting without it"]
    assert _same(result.images[0], plain)
    assert "Lora hashes" not in parse_infotext(result.infotext(0))[2]


def _bad_file(models, name, data: bytes | dict):
    path = models["root"] / "Lora" / name
    if isinstance(data, dict):
        save_file(data, str(path))
    else:
        path.write_bytes(data)
    return path


def test_bad_lora_files_are_one_line_each_nothing_half_loaded(engine, models, tiny_model_dir, fresh):
    good = "a red circle <lora:add_detail:0.8>"
    before = engine.generate(_request(tiny_model_dir, good)).images[0]
    adapters = engine._pipe.get_list_adapters()
    assert "add_detail" in {name for names in adapters.values() for name in names}
    raw = (models["root"] / "Lora" / "add_detail.safetensors").read_bytes()
    _bad_file(models, "truncated.safetensors", raw[: len(raw) // 3])
    key = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q"
    loha = {
        f"{key}.hada_w1_a": torch.zeros(4, 4),
        f"{key}.hada_w1_b": torch.zeros(4, 32),
        f"{key}.alpha": torch.ones(()),
    }
    _bad_file(models, "loha.safetensors", loha)
    xl = {}
    for te in ("lora_te1_", "lora_te2_"):  # SDXL's two text encoders, as kohya names them
        xl[f"{te}text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight"] = torch.zeros(4, 32)
        xl[f"{te}text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight"] = torch.zeros(32, 4)
    _bad_file(models, "for_sdxl.safetensors", xl)
    wide = {f"{key}.lora_down.weight": torch.zeros(4, 768), f"{key}.lora_up.weight": torch.zeros(320, 4)}
    _bad_file(models, "for_sd15.safetensors", wide)  # SD 1.5's layer widths on this model
    for name, expected in [
        ("truncated", "lora: could not read truncated.safetensors ("),
        ("loha", "lora: loha.safetensors is a LoHa network, which diffusers cannot load; painting without it"),
        ("for_sdxl", "lora: for_sdxl.safetensors is made for SDXL and this model is SD 1.x/2.x; painting without it"),
        ("for_sd15", "lora: could not load for_sd15.safetensors on this model ("),
    ]:
        result, notes = _paint(engine, tiny_model_dir, f"{good} <lora:{name}:1>")
        assert len(notes) == 1 and notes[0].startswith(expected) and "\n" not in notes[0], notes
        assert engine._pipe.get_list_adapters() == adapters  # nothing half-loaded
        assert_pixels_close(result.images[0], before, tolerance=0)  # painted on with the good LoRA alone
    again = engine.generate(_request(tiny_model_dir, good)).images[0]
    assert _same(again, before)
    _, notes = _paint(engine, tiny_model_dir, f"{good} <lora:loha:1>")  # not tried again, but said again
    assert notes == ["lora: loha.safetensors is a LoHa network, which diffusers cannot load; painting without it"]


def test_a_malformed_tag_is_one_line_before_anything_loads(models, tiny_model_dir):
    engine = Engine()  # its own: no LoRA loaded by an earlier test
    request = _request(tiny_model_dir, "a red circle <lora:add_detail:1> <lora:>")
    pipe = engine.pipeline(request)  # the model loaded first, so what the refusal left loaded can be seen
    with pytest.raises(ValueError, match="<lora:>") as error:
        engine.generate(request)
    assert "\n" not in str(error.value)
    # refused before any network loaded: not even the well-formed tag's LoRA
    assert state_of(pipe).loads == 0 and not any(pipe.get_list_adapters().values())
    assert engine.generate(_request(tiny_model_dir, "a red circle")).images  # the next cell works


def test_a_pickle_lora_needs_allow_pickle(engine, models, tiny_model_dir):
    path = models["root"] / "Lora" / "pickled.pt"
    from safetensors.torch import load_file

    torch.save(load_file(str(models["root"] / "Lora" / "add_detail.safetensors")), path)
    refused, notes = _paint(engine, tiny_model_dir, "a red circle <lora:pickled:0.8>")
    assert notes == [
        "lora: pickled.pt is a pickle file, which can run code when loaded (pass --allow-pickle if you trust it); "
        "painting without it"
    ]
    assert _same(refused.images[0], engine.generate(_request(tiny_model_dir, "a red circle")).images[0])
    allowed, notes = _paint(engine, tiny_model_dir, "a red circle <lora:pickled:0.8>", allow_pickle=True)
    same = engine.generate(_request(tiny_model_dir, "a red circle <lora:add_detail:0.8>")).images[0]
    assert notes == [] and _same(allowed.images[0], same)


# -- textual inversion ---------------------------------------------------------------------------------------------


def test_an_embedding_is_triggered_by_its_file_name_and_expands(engine, models, fresh, tiny_model_dir):
    path = models["root"] / "embeddings" / "EasyNeg.safetensors"
    result, notes = _paint(engine, tiny_model_dir, "a red circle EasyNeg", negative_prompt="a blue")
    assert notes == []
    # Reference: diffusers' own loader on a fresh pipeline, the two vectors' tokens written out by hand.
    plain = fresh()
    plain.load_textual_inversion(models["vectors"], token="EasyNeg")
    ids = plain.tokenizer("EasyNeg EasyNeg_1", add_special_tokens=False).input_ids
    table = plain.text_encoder.get_input_embeddings().weight
    assert torch.equal(table[ids], models["vectors"])  # the prompt's word became the file's two vectors
    # (embeddings from the token ids themselves: diffusers' own prompt conversion expands the word only on some
    # tokenizer versions)
    embeds = [_encode_ids(plain, text) for text in ("a red circle EasyNeg EasyNeg_1", "a blue")]
    assert_pixels_close(result.images[0], _raw(plain, None, prompt_embeds=embeds[0], negative_prompt_embeds=embeds[1]))
    assert (
        parse_infotext(result.infotext(0))[2]["TI hashes"]
        == f"EasyNeg: {hashlib.sha256(path.read_bytes()).hexdigest()[:12]}"
    )
    plain_text = engine.generate(_request(tiny_model_dir, "a red circle blue", negative_prompt="a blue"))
    assert not _same(plain_text.images[0], result.images[0])
    weighted = engine.generate(_request(tiny_model_dir, "a red circle, [(easyneg:1.1)]"))  # any case, in brackets
    assert parse_infotext(weighted.infotext(0))[2]["TI hashes"].startswith("EasyNeg: ")


def test_a_pickle_embedding_loads_only_with_allow_pickle(engine, models, tiny_model_dir):
    refused, notes = _paint(engine, tiny_model_dir, "a oldstyle circle")
    assert notes == [
        "embedding: oldstyle.pt is a pickle file, which can run code when loaded (pass --allow-pickle if you trust "
        "it); painting without it"
    ]
    assert "TI hashes" not in parse_infotext(refused.infotext(0))[2]
    allowed, notes = _paint(engine, tiny_model_dir, "a oldstyle circle", allow_pickle=True)
    assert notes == [] and parse_infotext(allowed.infotext(0))[2]["TI hashes"].startswith("oldstyle: ")


def test_an_unknown_embedding_type_is_one_line(engine, models, tiny_model_dir):
    save_file({"foo": torch.zeros(3), "bar": torch.zeros(3)}, str(models["root"] / "embeddings" / "weird.safetensors"))
    save_file({"emb_params": torch.zeros(1, 768)}, str(models["root"] / "embeddings" / "wide.safetensors"))
    vocab = len(engine.pipeline(_request(tiny_model_dir, "a weird wide circle")).tokenizer)  # loaded first
    result, notes = _paint(engine, tiny_model_dir, "a weird wide circle")
    assert notes == [
        "embedding: weird.safetensors is not a textual-inversion embedding (it holds bar, foo); painting without it",
        "embedding: wide.safetensors has vectors of width 768 and this model's text encoder takes 32 (made for "
        "another model family); painting without it",
    ]
    assert len(engine._pipe.tokenizer) == vocab  # no token half-added
    assert engine.generate(_request(tiny_model_dir, "a red circle")).images


# -- VAE -----------------------------------------------------------------------------------------------------------


def test_an_external_vae_paints_as_diffusers_with_that_vae_and_goes_back(engine, models, fresh, tiny_model_dir):
    path = models["root"] / "VAE" / "alt-vae.safetensors"
    own = engine.generate(_request(tiny_model_dir, "a red circle")).images[0]
    result, notes = _paint(engine, tiny_model_dir, "a red circle", vae="alt-vae")
    assert notes == []
    for name, tensor in models["vae"].state_dict().items():  # the A1111 (LDM) layout file was read right
        assert torch.equal(engine._pipe.vae.state_dict()[name], tensor), name
    plain = fresh()
    plain.vae = models["vae"]
    assert_pixels_close(result.images[0], _raw(plain, "a red circle"))
    assert not _same(result.images[0], own)
    params = parse_infotext(result.infotext(0))[2]
    assert params["VAE"] == "alt-vae.safetensors"
    assert params["VAE hash"] == hashlib.sha256(path.read_bytes()).hexdigest()[:10]
    by_path = engine.generate(_request(tiny_model_dir, "a red circle", vae=str(path))).images[0]
    assert _same(by_path, result.images[0])
    back = engine.generate(_request(tiny_model_dir, "a red circle")).images[0]
    assert _same(back, own)
    missing, notes = _paint(engine, tiny_model_dir, "a red circle", vae="alt-vea")
    assert notes == [f"vae: no 'alt-vea' in {models['root'] / 'VAE'} (closest: alt-vae); painting with the model's own"]
    assert _same(missing.images[0], own)


# -- the civitai recipe, pasted into %%paint -------------------------------------------------------------------


def test_the_civitai_recipe_round_trips(models, tiny_model_dir, tmp_path, fresh_settings, capsys):
    import shutil
    from types import SimpleNamespace

    from helpers.ldm_checkpoint import config_only_copy, convert_to_ldm_checkpoint
    from PIL import Image

    from jupyter_sd.magics import PaintMagics
    from jupyter_sd.recipe.a1111 import ignored_infotext_keys

    root = models["root"]
    checkpoint = convert_to_ldm_checkpoint(
        tiny_model_dir, root / "Stable-diffusion" / "v1-5-pruned-emaonly.safetensors"
    )
    shutil.copy(root / "embeddings" / "EasyNeg.safetensors", root / "embeddings" / "EasyNegative.safetensors")
    fresh_settings.update(model_config=str(config_only_copy(tiny_model_dir, tmp_path / "configs")),
                          outdir=str(tmp_path / "out"), preview="none")  # fmt: skip
    model_hash = hashlib.sha256(checkpoint.read_bytes()).hexdigest()[:10]
    lora_hash = _payload_hash(root / "Lora" / "add_detail.safetensors")
    recipe = (
        "(masterpiece:1.2), best quality, a red circle on a blue background <lora:add_detail:0.8>\n"
        "Negative prompt: (worst quality:1.4), lowres, EasyNegative\n"
        "Steps: 3, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1, Size: 32x32, "
        f"Model hash: {model_hash}, Model: v1-5-pruned-emaonly, Clip skip: 2, Variation seed: 7, "
        f'Variation seed strength: 0.3, Lora hashes: "add_detail: {lora_hash}", Version: v1.10.1'
    )
    magics = PaintMagics(shell=SimpleNamespace(user_ns={}))
    first = magics.paint("", recipe)
    printed = capsys.readouterr().out
    pasted = parse_infotext(recipe)[2]
    ignored = ignored_infotext_keys(pasted)  # what no option applies yet: named, never dropped silently
    applied = {"Steps", "Sampler", "Schedule type", "CFG scale", "Seed", "Size", "Model hash", "Model", "Clip skip"}
    applied |= {"Variation seed", "Variation seed strength", "Lora hashes"}
    assert applied <= set(pasted) and not applied & set(ignored)  # so "every key comes back" covers them
    assert (f"ignored from the generation data: {', '.join(ignored)}" in printed) == bool(ignored)
    assert "model:" not in printed  # the checkpoint was found by its name
    ours = Image.open(first.paths[0]).text["parameters"]
    params = parse_infotext(ours)[2]
    assert [key for key in pasted if key not in ignored and key not in params] == []  # every key comes back
    assert params["Model hash"] == model_hash and params["Model"] == "v1-5-pruned-emaonly"
    assert params["Lora hashes"] == f"add_detail: {lora_hash}"
    assert params["TI hashes"].startswith("EasyNegative: ")
    # Pasting our own PNG's text paints the same pixels, and nothing in it is ignored.
    second = magics.paint("", ours)
    assert "ignored from" not in capsys.readouterr().out
    assert _same(second.images[0], first.images[0])
    assert parse_infotext(Image.open(second.paths[0]).text["parameters"])[2] == params


# -- SDXL ----------------------------------------------------------------------------------------------------------


def test_sdxl_embedding_loads_into_both_encoders_and_an_sd_lora_is_one_line(tmp_path, models):
    from helpers.tiny_sdxl import TEXT_2_WIDTH, TEXT_WIDTH, make_tiny_sdxl

    sdxl = make_tiny_sdxl(tmp_path / "sdxl")
    root = models["root"]
    clip_l = torch.randn(2, TEXT_WIDTH, generator=torch.Generator().manual_seed(1))
    clip_g = torch.randn(2, TEXT_2_WIDTH, generator=torch.Generator().manual_seed(2))
    save_file({"clip_l": clip_l, "clip_g": clip_g}, str(root / "embeddings" / "xlneg.safetensors"))
    engine = Engine()
    notes = Notes()
    result = engine.generate(_request(sdxl, "a red circle xlneg <lora:add_detail:1>"), notes)
    pipe = engine._pipe
    for tokenizer, encoder, vectors in ((pipe.tokenizer, pipe.text_encoder, clip_l),
                                        (pipe.tokenizer_2, pipe.text_encoder_2, clip_g)):  # fmt: skip
        ids = tokenizer("xlneg xlneg_1", add_special_tokens=False).input_ids
        assert torch.equal(encoder.get_input_embeddings().weight[ids], vectors)
    assert parse_infotext(result.infotext(0))[2]["TI hashes"].startswith("xlneg: ")
    assert notes.lines == ["lora: could not load add_detail.safetensors on this model (its layer sizes are another "
                           "model's); painting without it"]  # fmt: skip
    assert not any(pipe.get_list_adapters().values())  # nothing half-loaded
    assert pixels(result.images[0]).std() > 1
    (root / "embeddings" / "xlneg.safetensors").unlink()


def test_only_the_most_recently_used_lora_stay_loaded(engine, models, tiny_model_dir, monkeypatch):
    import jupyter_sd.engine.lora as lora

    monkeypatch.setattr(lora, "KEEP_LORAS", 1)
    first = engine.generate(_request(tiny_model_dir, "a fox <lora:add_detail:0.9>")).images[0]
    engine.generate(_request(tiny_model_dir, "a fox <lora:other_detail:0.9>"))
    assert sorted(a for names in engine._pipe.get_list_adapters().values() for a in names) == ["other_detail"] * 2
    again = engine.generate(_request(tiny_model_dir, "a fox <lora:add_detail:0.9>")).images[0]  # loaded again
    assert _same(again, first)
