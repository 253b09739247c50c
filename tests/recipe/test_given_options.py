"""Which options a request was given: a family's or a preset's defaults fill only the others, so an option asked
for by name is painted even when its value equals our own default (``--sampler "DPM++ 2M"`` on Flux)."""

from __future__ import annotations

import copy
import json
import pickle

from jupyter_sd.painting import session as painter
from jupyter_sd.recipe.paste import request_from_infotext
from jupyter_sd.recipe.request import PaintRequest


def test_a_request_knows_the_options_it_was_made_with():
    request = PaintRequest(prompt="a fox", sampler="DPM++ 2M", width=64, height=96)
    assert request.given == {"prompt", "sampler", "width", "height"}
    assert request.sampler == PaintRequest().sampler  # our default, and still given
    assert PaintRequest().given == frozenset()
    changed = request.replace(steps=20, sampler="DPM++ 2M Karras")  # old names carry their schedule
    assert changed.given == {"prompt", "sampler", "schedule", "width", "height", "steps"}
    assert request.given == {"prompt", "sampler", "width", "height"}  # the original is untouched


def test_the_kernel_config_and_the_cell_are_given_and_copies_keep_them(monkeypatch):
    monkeypatch.setattr(painter, "settings", {"steps": 20})
    request = painter.new_request(prompt="a fox", guidance=7)
    assert request.given == {"steps", "prompt", "guidance"}
    for copied in (copy.copy(request), copy.deepcopy(request), pickle.loads(pickle.dumps(request))):
        assert copied.given == request.given


def test_json_for_a_worker_keeps_them_and_a_saved_recipe_gives_everything():
    request = PaintRequest(prompt="a fox", sampler="DPM++ 2M")
    sent = PaintRequest.from_dict(json.loads(request.to_json()))
    assert (sent, sent.given) == (request, request.given)
    saved = PaintRequest.from_dict(request.to_dict())  # a picture's recipe: every option as it painted
    assert saved.given == {f for f in request.to_dict()}


def test_a_pasted_recipe_gives_what_it_names():
    pasted = request_from_infotext("a fox\nSteps: 20, Sampler: DPM++ 2M, CFG scale: 7, Seed: 5, Size: 64x64")
    assert {"sampler", "steps", "guidance", "seed", "width", "height"} <= pasted.given
    assert "schedule" not in pasted.given
