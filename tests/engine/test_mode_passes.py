"""What every pass (txt2img, hires, img2img, inpaint) shares in Engine.generate: the loaded components, and a stop.

Switching modes loads nothing (img2img and inpaint pipelines are ``from_pipe`` views of the loaded one), and a stop
in any pass keeps that pass's last x0 and leaves the engine ready for the next cell.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from helpers.paint_modes import box_mask, init_picture, tiny_request
from helpers.pixels import pixels
from helpers.progress_recorder import Recorder

from jupyter_sd.engine import Engine
from jupyter_sd.engine.mode_pipelines import derived_pipeline
from jupyter_sd.engine.pictures import Pictures


@pytest.fixture(scope="module")
def engine():
    return Engine()


def test_modes_share_the_loaded_components(engine, tiny_model_dir):
    request = tiny_request(tiny_model_dir, steps=2, preview="none")
    engine.generate(request)
    key, loads, pipe = engine._key, engine.load_count, engine._pipe
    engine.generate(request.replace(init="x", strength=0.5), pictures=Pictures(init_picture()))
    engine.generate(request.replace(init="x", mask="m"), pictures=Pictures(init_picture(), box_mask(16, (4, 4, 8, 8))))
    engine.generate(request.replace(hires=2))
    assert engine.load_count == loads and engine._key == key and engine._pipe is pipe
    for kind in ("img2img", "inpaint"):
        derived = derived_pipeline(pipe, kind)
        assert derived.unet is pipe.unet and derived.vae is pipe.vae and derived.text_encoder is pipe.text_encoder


@pytest.mark.parametrize(
    ("options", "stop_at", "size", "label"),
    [
        (dict(hires=2, hires_steps=6), 2, (16, 16), "txt2img"),
        (dict(hires=2, hires_steps=6), 9, (32, 32), "hires"),
        (dict(init="x", strength=1.0), 2, (16, 16), "img2img"),
        (dict(init="x", mask="m", strength=1.0, mask_blur=0), 2, (16, 16), "inpaint"),
    ],
)
def test_stop_in_each_pass_keeps_its_last_x0(engine, tiny_model_dir, options, stop_at, size, label):
    event = threading.Event()
    recorder = Recorder(stop_at=stop_at, event=event, total=True)
    mask = box_mask(16, (4, 4, 12, 12))
    pictures = Pictures(init_picture(), mask if "mask" in options else None) if "init" in options else None
    request = tiny_request(tiny_model_dir, steps=6, width=16, height=16, preview="none", **options)
    result = engine.generate(request, recorder, stop=event, pictures=pictures)
    assert result.stopped_by == "stop" and result.interrupted_at == stop_at + 1
    assert len(result.images) == 1 and result.images[0].size == size and result.complete == 0
    assert recorder.phases[-1][0] == label
    if "mask" in options:
        outside = np.asarray(mask) == 0
        assert np.array_equal(pixels(result.images[0])[outside], pixels(init_picture())[outside])
    after = engine.generate(tiny_request(tiny_model_dir, steps=2, preview="none"))
    assert not after.interrupted
