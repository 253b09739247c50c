"""The models folder: A1111's layout, its hashes (checked against hashlib in the test), the cache, lookups."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest
from IPython.core.error import UsageError

from jupyter_sd import library
from jupyter_sd.library import find
from jupyter_sd.recipe.a1111 import ignored_infotext_keys, options_from_params, pasted_notes
from jupyter_sd.recipe.infotext import parse_infotext
from jupyter_sd.recipe.paste import request_from_infotext
from jupyter_sd.recipe.request import PaintRequest


@pytest.fixture()
def models(tmp_path):
    """An empty models folder in A1111's layout, made the kernel's for the test."""
    root = tmp_path / "models"
    for folder in library.SUBFOLDERS.values():
        (root / folder).mkdir(parents=True)
    library.set_models_dir(root)
    yield root
    library.set_models_dir(None)


def _write(path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _safetensors(path, seed=0):
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    save_file({"a.weight": rng.standard_normal((64, 8)).astype(np.float32)}, str(path), metadata={"ss_x": "1"})
    return path


def _random_bytes(size: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


def test_hashes_are_a1111s(models):
    data = _random_bytes(0x100000 + 0x10000 + 123)
    checkpoint = _write(models / "Stable-diffusion" / "dream.safetensors", data)
    full = hashlib.sha256(data).hexdigest()
    assert library.sha256(checkpoint) == full
    assert library.short_hash("checkpoint", checkpoint) == full[:10]  # Model hash
    assert library.short_hash("vae", checkpoint) == full[:10]  # VAE hash
    assert library.short_hash("embedding", checkpoint) == full[:12]  # TI hashes
    assert library.old_model_hash(checkpoint) == hashlib.sha256(data[0x100000:0x110000]).hexdigest()[:8]


def test_lora_hash_is_the_addnet_hash_of_the_payload(models):
    lora = _safetensors(models / "Lora" / "detail.safetensors")
    raw = lora.read_bytes()
    header = int.from_bytes(raw[:8], "little")  # safetensors: u64 header length, JSON header, then the tensors
    assert json.loads(raw[8 : 8 + header])["a.weight"]["shape"] == [64, 8]
    payload_hash = hashlib.sha256(raw[8 + header :]).hexdigest()
    assert library.addnet_hash(lora) == payload_hash
    assert library.short_hash("lora", lora) == payload_hash[:12]
    assert payload_hash != hashlib.sha256(raw).hexdigest()  # the header (metadata) is not hashed
    pickle_lora = _write(models / "Lora" / "old.pt", b"not really a pickle")
    assert library.short_hash("lora", pickle_lora) == hashlib.sha256(b"not really a pickle").hexdigest()[:12]


def test_hashes_are_cached_by_path_size_and_mtime(models):
    path = _write(models / "VAE" / "big.safetensors", _random_bytes(5000))
    real = library.sha256(path)
    cache = json.loads(library.hash_cache_path().read_text())
    entry = cache[str(path.resolve())]
    assert entry["size"] == 5000 and entry["sha256"] == real and entry["mtime"] == path.stat().st_mtime
    # Plant a different hash for the unchanged file: it is served from the cache, the file is not read again.
    entry["sha256"] = "f" * 64
    library.hash_cache_path().write_text(json.dumps(cache))
    assert library.sha256(path) == "f" * 64
    # A touched file is hashed again.
    os.utime(path, (path.stat().st_atime, path.stat().st_mtime + 10))
    assert library.sha256(path) == real


def test_lookup_by_stem_path_and_hash(models):
    ckpt = _write(models / "Stable-diffusion" / "sd15" / "v1-5-pruned-emaonly.safetensors", _random_bytes(3000))
    other = _write(models / "Stable-diffusion" / "dreamshaper_8.safetensors", _random_bytes(3000, seed=1))
    folder = models / "Stable-diffusion" / "tiny-diffusers"
    _write(folder / "model_index.json", b"{}")
    lora = _safetensors(models / "Lora" / "add_detail.safetensors")
    assert library.find_model("checkpoint", "v1-5-pruned-emaonly").path == ckpt
    assert library.find_model("checkpoint", "sd15/v1-5-pruned-emaonly.safetensors").path == ckpt
    assert library.find_model("checkpoint", hashlib.sha256(other.read_bytes()).hexdigest()[:10]).path == other
    assert library.find_model("checkpoint", "tiny-diffusers").path == folder  # a diffusers folder counts
    addnet = hashlib.sha256(lora.read_bytes()[8 + int.from_bytes(lora.read_bytes()[:8], "little") :]).hexdigest()
    assert library.find_model("lora", addnet[:12]).path == lora
    assert library.find_model("lora", "v1-5-pruned-emaonly") is None  # each kind in its own folder
    assert library.find_model("checkpoint", "nothing-like-it") is None
    assert [m.name for m in library.list_models("checkpoint")] == [
        "dreamshaper_8",
        "v1-5-pruned-emaonly",
        "tiny-diffusers",
    ]
    assert library.close_matches("checkpoint", "dreamshaper8") == ["dreamshaper_8"]
    message = library.not_found_message("lora", "add_detial")
    assert message == f"lora: no 'add_detial' in {models / 'Lora'} (closest: add_detail)"


def test_models_folder_default_and_setting(tmp_path, monkeypatch):
    monkeypatch.setenv(library.ENV_VAR, str(tmp_path / "env"))
    library.set_models_dir(None)
    assert library.models_dir() == tmp_path / "env" and not library.is_models_dir_set()
    assert library.set_models_dir(tmp_path / "mine") == tmp_path / "mine"
    assert library.subfolder("lora") == tmp_path / "mine" / "Lora"
    library.set_models_dir("")
    assert library.models_dir() == tmp_path / "env"
    with pytest.raises(ValueError, match="models: unknown kind 'loras' \\(allowed: checkpoint, lora"):
        library.subfolder("loras")


# -- pasted generation data -------------------------------------------------------------------------------------

CIVITAI = (
    "(masterpiece:1.2), best quality, a red circle on a blue background <lora:add_detail:0.8>\n"
    "Negative prompt: (worst quality:1.4), lowres, EasyNegative\n"
    "Steps: 12, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1, Size: 64x64, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, ADetailer model: face_yolov8n.pt, "
    "Face restoration: CodeFormer, "
    'Lora hashes: "add_detail: 7c6bad76eb54", RNG: CPU, Version: v1.10.1'
)


def test_pasted_model_is_found_by_name_then_by_hash(models):
    data = _random_bytes(2000)
    ckpt = _write(models / "Stable-diffusion" / "v1-5-pruned-emaonly.safetensors", data)
    params = parse_infotext(CIVITAI)[2]
    assert options_from_params(params)["model"] == str(ckpt)
    renamed = {**params, "Model": "renamed", "Model hash": hashlib.sha256(data).hexdigest()[:10]}
    assert options_from_params(renamed)["model"] == str(ckpt)
    assert pasted_notes(renamed, "v1-5-pruned-emaonly") == [
        "ignored from the generation data: ADetailer model, Face restoration"
    ]


def test_a_pasted_model_not_in_the_folder_is_said_with_the_model_that_painted(models):
    _write(models / "Stable-diffusion" / "v1-5-pruned.safetensors", b"x" * 100)
    params = parse_infotext(CIVITAI)[2]
    assert "model" not in options_from_params(params)
    notes = pasted_notes(params, "tiny")
    assert notes[0] == (
        "model: 'v1-5-pruned-emaonly' (hash 6ce0161689) is not in the models folder's Stable-diffusion/; painted "
        "with tiny (closest: v1-5-pruned)"
    )
    assert pasted_notes(params, "tiny", model_given=True) == notes[1:]  # --model chose another on purpose


def test_keys_of_every_option_field_count_as_applied():
    from jupyter_sd.recipe.values import INFOTEXT_KEYS

    every = {key: "1" for key in INFOTEXT_KEYS}
    assert ignored_infotext_keys(every) == []
    assert ignored_infotext_keys({"Steps": "2", "Face restoration": "CodeFormer", "RNG": "GPU"}) == [
        "Face restoration",  # RNG is an option now (--rng): A1111's GPU noise is what we paint with
    ]


def test_written_keys_follow_a1111s_order():
    # A1111 v1.10 create_infotext: the fixed keys in this order, extensions' keys, then hashes and Version.
    a1111 = ["Steps", "Sampler", "Schedule type", "CFG scale", "Seed", "Size", "Model hash", "Model", "VAE hash",
             "VAE", "Denoising strength", "Clip skip", "Hires upscale", "Interrupted", "Lora hashes", "TI hashes",
             "Version"]  # fmt: skip
    request = PaintRequest(prompt="p", width=64, height=64, seed=3, model="m")
    extra = {key: "x" for key in reversed(a1111) if key not in request.infotext_params()}
    text = request.to_infotext(extra=extra)
    assert list(parse_infotext(text)[2]) == a1111


# -- %paint models and %paint config models= -------------------------------------------------------------------


class _Shell:
    """The magic object itself: ``%paint models`` and ``%paint config`` need no kernel (test_magics owns the
    process's one global test shell, which IPython lets start only once)."""

    def __init__(self) -> None:
        from types import SimpleNamespace

        from jupyter_sd.magics import PaintMagics

        self.magics = PaintMagics(shell=SimpleNamespace(user_ns={}))

    def run_line_magic(self, name: str, line: str):
        assert name == "paint"
        return self.magics.paint(line)


@pytest.fixture()
def shell():
    return _Shell()


def test_paint_models_prints_the_table(shell, models, capsys):
    data = _random_bytes(2_500_000)
    _write(models / "Stable-diffusion" / "dream.safetensors", data)
    lora = _safetensors(models / "Lora" / "add_detail.safetensors")
    shell.run_line_magic("paint", "models")
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"models in {models}"
    assert out[1].split() == ["kind", "name", "size", "hash"]
    assert out[2].split() == ["checkpoint", "dream", "2.5", "MB", hashlib.sha256(data).hexdigest()[:10]]
    assert out[3].split() == ["lora", "add_detail", f"{lora.stat().st_size / 1e3:.3g}", "KB",
                              library.addnet_hash(lora)[:12]]  # fmt: skip
    shell.run_line_magic("paint", "models lora")
    assert [line.split()[1] for line in capsys.readouterr().out.splitlines()[2:]] == ["add_detail"]
    with pytest.raises(UsageError, match=r"models: no 'add_detial' in .*models \(closest: add_detail\)"):
        shell.run_line_magic("paint", "models add_detial")
    with pytest.raises(UsageError, match="lora: no 'dream' in"):
        shell.run_line_magic("paint", "models lora dream")


def test_paint_config_models_sets_the_folder(shell, tmp_path, capsys):
    try:
        shell.run_line_magic("paint", f"config models={tmp_path}")
        assert library.models_dir() == tmp_path
        shell.run_line_magic("paint", "config")
        assert f"models = '{tmp_path}' (set)" in capsys.readouterr().out
        shell.run_line_magic("paint", "models")
        assert capsys.readouterr().out.startswith(f"no models in {tmp_path}")
    finally:
        library.set_models_dir(None)


def test_a_pasted_lora_missing_by_name_is_found_by_its_hash(models):
    from jupyter_sd.recipe.paste import parse_body

    lora = _safetensors(models / "Lora" / "more_details.safetensors")
    addnet = library.addnet_hash(lora)[:12]
    hashes = f'Lora hashes: "add_detail: {addnet}, gone: 0123456789ab"'
    body = f"a cat <lora:add_detail:0.8>, <lora:gone:1>\nSteps: 2, Seed: 1, {hashes}"
    assert parse_body(body)["prompt"] == "a cat <lora:more_details:0.8>, <lora:gone:1>"
    prompt, _, params = parse_infotext(body)
    assert pasted_notes(params, "tiny", prompt=prompt) == [
        f"lora: 'add_detail' is not in {models / 'Lora'}; using more_details, which has its hash"
    ]
    assert request_from_infotext(body).prompt == "a cat <lora:more_details:0.8>, <lora:gone:1>"


def test_model_option_finds_a_checkpoint_by_name_or_hash(models):
    from jupyter_sd.engine.models import resolve_model

    data = _random_bytes(4000)
    path = _write(models / "Stable-diffusion" / "dreamshaper_8.safetensors", data)
    by_name = resolve_model("dreamshaper_8")
    assert (by_name.location, by_name.kind, by_name.name) == (str(path.resolve()), "single-file", "dreamshaper_8")
    assert resolve_model(hashlib.sha256(data).hexdigest()[:10]).location == str(path.resolve())
    with pytest.raises(ValueError, match="model: no such file or folder 'dreamshaper8' .*Did you mean 'dreamshaper_8'"):
        resolve_model("dreamshaper8")


def test_a_lora_is_also_found_by_the_name_kohya_stored_in_it(models):
    from safetensors.numpy import save_file

    path = models / "Lora" / "detail_v2-000010.safetensors"
    save_file({"a": np.zeros(3, np.float32)}, str(path), metadata={"ss_output_name": "add_detail"})
    assert library.safetensors_metadata(path) == {"ss_output_name": "add_detail"}
    assert library.find_model("lora", "add_detail").path == path
    assert library.find_model("lora", "detail_v2-000010").path == path


def test_a_pasted_hash_hashes_no_big_file_nobody_asked_for(models, monkeypatch):
    monkeypatch.setattr(find, "BIG_FILE", 1000)  # stands for a multi-GB checkpoint
    data = _random_bytes(4000)
    path = _write(models / "Stable-diffusion" / "big.safetensors", data)
    params = {"Steps": "2", "Model hash": hashlib.sha256(data).hexdigest()[:10], "Model": "renamed"}
    assert "model" not in options_from_params(params)  # not hashed behind the user's back
    assert library.find_model("checkpoint", params["Model hash"]).path == path  # --model HASH asks: hashed
    assert options_from_params(params)["model"] == str(path)  # now cached: found
