"""The bundled model's quick load (engine/fast_load.py): its CLIP built directly holds exactly what transformers'
loader gives, the engine paints the same pixels as with that loader, other layouts fall back, the warm-up's dummy
first call changes no picture, and a fresh process loads the bundled model without transformers' renaming table."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import torch
from helpers.paint_modes import euler_request

from jupyter_sd.engine import Engine, fast_load
from jupyter_sd.engine.fast_load import clip_text_encoder, first_call
from jupyter_sd.engine.models import BUNDLED_MODEL

STEPS = 8


def test_the_direct_clip_equals_transformers_loader():
    from transformers import CLIPTextModel

    direct = clip_text_encoder(BUNDLED_MODEL)
    loaded = CLIPTextModel.from_pretrained(BUNDLED_MODEL / "text_encoder")
    ours, theirs = direct.state_dict(), loaded.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[key], theirs[key]) for key in ours)
    tokens = torch.tensor([[0, 5, 6, 7, 1, 1]])
    with torch.no_grad():
        assert torch.equal(direct(tokens)[0], loaded(tokens)[0])
    assert not direct.training and direct.dtype == torch.float32
    assert clip_text_encoder(BUNDLED_MODEL, torch.float16).dtype == torch.float16


def test_other_layouts_fall_back_to_transformers(tmp_path):
    from safetensors.torch import load_file, save_file

    assert clip_text_encoder(tmp_path) is None  # no text encoder at all
    folder = tmp_path / "model"
    shutil.copytree(BUNDLED_MODEL / "text_encoder", folder / "text_encoder")
    weights = folder / "text_encoder" / "model.safetensors"
    state = load_file(weights)
    state["text_model.extra.weight"] = torch.zeros(1)
    save_file(state, weights)
    assert clip_text_encoder(folder) is None  # a key the model lacks: transformers decides


def test_the_engine_paints_the_pixels_of_transformers_loader(monkeypatch):
    """The same picture as an engine whose bundled model's CLIP came through transformers' ``from_pretrained``."""
    engine = Engine()
    assert engine.preload(euler_request("tiny", STEPS))
    assert engine._pipe.name_or_path == str(BUNDLED_MODEL)
    result = engine.generate(euler_request("tiny", STEPS))
    monkeypatch.setattr(fast_load, "bundled_components", lambda *args: {})
    reference = Engine()
    expected = reference.generate(euler_request("tiny", STEPS)).images[0]
    assert type(reference._pipe.text_encoder) is type(engine._pipe.text_encoder)
    assert np.array_equal(np.asarray(result.images[0]), np.asarray(expected))
    first_call(engine._pipe)  # the dummy call again: nothing it leaves behind changes the next picture
    again = engine.generate(euler_request("tiny", STEPS))
    assert np.array_equal(np.asarray(again.images[0]), np.asarray(result.images[0]))


def test_first_call_leaves_other_models_alone(tiny_model_dir):
    engine = Engine()
    pipe = engine.pipeline(euler_request(tiny_model_dir, STEPS))
    calls: list[int] = []
    hook = pipe.unet.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        assert first_call(pipe) is pipe and calls == []
        first_call_bundled = Engine().pipeline(euler_request("tiny", STEPS))
        hook2 = first_call_bundled.unet.register_forward_pre_hook(lambda module, args: calls.append(1))
        first_call(first_call_bundled)
        hook2.remove()
    finally:
        hook.remove()
    assert calls == [1]


def test_a_fresh_process_loads_the_bundled_model_without_the_renaming_table():
    code = (
        "from jupyter_sd.engine import Engine\n"
        "from jupyter_sd.recipe.request import PaintRequest\n"
        "import transformers.conversion_mapping as mapping\n"
        "Engine().pipeline(PaintRequest(prompt='x', model='tiny'))\n"
        "print(mapping._checkpoint_conversion_mapping_cache is None)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "True"
