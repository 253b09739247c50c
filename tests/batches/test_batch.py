"""Batches on the kernel's engine: reading every kind of input, validating it all first, painting in order, resuming.

Painted with the bundled tiny model at 64 px and 2 steps. References: infotext written out in the test, raw
diffusers for one picture, the files on disk.
"""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from IPython.core.error import UsageError
from PIL import Image

import jupyter_sd
from jupyter_sd.batches.command import parse_command
from jupyter_sd.batches.plan import InvalidBatch, plan
from jupyter_sd.batches.saved import BATCH_KEY, request_key
from jupyter_sd.batches.sources import read_entries
from jupyter_sd.batches.views import BatchTracker, BatchView, InlineBatchView
from jupyter_sd.recipe.request import PaintRequest

FAST = {"model": "tiny", "steps": 2, "size": "64x64"}
VERSION = f", Version: jupyter_sd {jupyter_sd.__version__}"
MIXED = """\
# prompts for the demo model
a red circle on a blue background
--seed 9 --cfg 4 a green square on a white background

a yellow triangle on a black background
Negative prompt: blurry
Steps: 2, Sampler: Euler a, CFG scale: 5, Seed: 7, Size: 64x64, Model: tiny

--sampler "Euler b" a picture with a made-up sampler
"""

BAD_SAMPLER = "sampler: unknown 'Euler b'; did you mean 'Euler a'? (every choice: %%paint? or docs/options.md)"


def pngs(folder):
    return sorted(folder.glob("*.png"))


def recipe(path):
    with Image.open(path) as image:
        return image.text["parameters"], json.loads(image.text["jupyter_sd"])


@pytest.fixture()
def mixed(tmp_path, offline, fresh_settings):
    path = tmp_path / "prompts.txt"
    path.write_text(MIXED)
    return path


def test_bad_line_is_listed_with_its_line_number_and_nothing_runs(mixed, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(InvalidBatch) as info:
        jupyter_sd.batch(mixed, seed=1, outdir=str(out), model="tiny", size="64x64")
    assert str(info.value) == (
        f"batch: 1 of 4 requests are invalid, nothing was painted (--skip-bad paints the rest): prompts.txt:9: "
        f"{BAD_SAMPLER}"
    )
    assert info.value.lines() == [f"prompts.txt:9: {BAD_SAMPLER}"]
    assert not out.exists()


def test_many_bad_lines_one_line_error_naming_the_first_few(tmp_path, fresh_settings):
    (tmp_path / "p.txt").write_text("".join(f"--steps {1100 + k * 100} p{k}\n" for k in range(5)) + "fine\n")
    with pytest.raises(InvalidBatch) as info:
        plan(tmp_path / "p.txt", {})
    assert "\n" not in str(info.value)
    assert str(info.value).endswith("p.txt:3: steps: must be 1–1000 (got 1300); and 2 more")
    assert len(info.value.lines()) == 5 and info.value.lines()[4] == "p.txt:5: steps: must be 1–1000 (got 1500)"


def test_mixed_file_paints_the_right_files_with_the_right_infotext(mixed, tmp_path):
    out = tmp_path / "out"
    result = jupyter_sd.batch(mixed, skip_bad=True, outdir=str(out), model="tiny", steps=2, size="64x64")
    assert [item.status for item in result.items] == ["painted", "painted", "painted", "invalid"]
    assert result.failures == [("prompts.txt:9", BAD_SAMPLER)]
    files = pngs(out)
    assert [path.name for path in files][1:] == ["00002-9.png", "00003-7.png"] and result.paths == files
    first_seed = result.items[0].seeds[0]
    assert files[0].name == f"00001-{first_seed}.png"
    expected = [
        f"a red circle on a blue background\nSteps: 2, Sampler: DPM++ 2M, Schedule type: Automatic, CFG scale: 7, "
        f"Seed: {first_seed}, Size: 64x64, Model: tiny{VERSION}",
        "a green square on a white background\nSteps: 2, Sampler: DPM++ 2M, Schedule type: Automatic, CFG scale: 4, "
        f"Seed: 9, Size: 64x64, Model: tiny{VERSION}",
        "a yellow triangle on a black background\nNegative prompt: blurry\nSteps: 2, Sampler: Euler a, "
        f"Schedule type: Automatic, CFG scale: 5, Seed: 7, Size: 64x64, Model: tiny{VERSION}",
    ]
    assert [recipe(path)[0] for path in files] == expected
    keys = [recipe(path)[1][BATCH_KEY] for path in files]
    assert keys == [item.key for item in result.items[:3]] and len(set(keys)) == 3


def test_picture_is_raw_diffusers_picture(tmp_path, offline, fresh_settings):
    import torch
    from diffusers import StableDiffusionPipeline

    from jupyter_sd.engine.models import resolve_model
    from jupyter_sd.engine.schedulers import make_scheduler

    result = jupyter_sd.batch(["a red circle on a blue background"], seed=3, outdir=str(tmp_path), rng="cpu", **FAST)
    pipe = StableDiffusionPipeline.from_pretrained(resolve_model("tiny").location, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = make_scheduler("DPM++ 2M", "Automatic", dict(pipe.scheduler.config))
    generator = [torch.Generator("cpu").manual_seed(3)]
    raw = pipe("a red circle on a blue background", num_inference_steps=2, guidance_scale=7, width=64, height=64,
               generator=generator).images[0]  # fmt: skip
    ours = np.asarray(Image.open(result.paths[0]).convert("RGB"), dtype=np.int16)
    assert np.abs(ours - np.asarray(raw, dtype=np.int16)).max() <= 1


def test_rerun_skips_what_is_saved_and_duplicates_paint_twice(tmp_path, offline, fresh_settings):
    prompts = ["a red circle on a blue background", "a red circle on a blue background", "a green square"]
    first = jupyter_sd.batch(prompts, seed=5, outdir=str(tmp_path), **FAST)
    assert first.painted == 3 and len(pngs(tmp_path)) == 3  # the same line twice is two requests
    stamps = {path: path.stat().st_mtime_ns for path in pngs(tmp_path)}
    again = jupyter_sd.batch(prompts, seed=5, outdir=str(tmp_path), **FAST)
    assert (again.painted, again.skipped) == (0, 3)
    assert {path: path.stat().st_mtime_ns for path in pngs(tmp_path)} == stamps
    more = jupyter_sd.batch(prompts + ["a blue circle"], seed=5, outdir=str(tmp_path), **FAST)
    assert (more.painted, more.skipped) == (1, 3) and len(pngs(tmp_path)) == 4
    changed = jupyter_sd.batch(prompts[:1], seed=5, outdir=str(tmp_path), model="tiny", steps=3, size="64x64")
    assert changed.painted == 1  # another recipe is another picture


class StopAfterFirst(BatchView):
    def __init__(self, stop):
        self.stop = stop

    def update(self, tracker, images=(), final=False):
        if tracker.images_done >= 1:
            self.stop.set()


def test_stop_keeps_what_finished_and_a_rerun_resumes(tmp_path, offline, fresh_settings):
    prompts = [f"a red circle number {k}" for k in range(4)]
    stop = threading.Event()
    result = jupyter_sd.batch(prompts, seed=1, outdir=str(tmp_path), view=StopAfterFirst(stop), stop=stop, **FAST)
    assert result.stopped_by == "stop" and result.painted == 1
    assert [item.status for item in result.items] == ["painted", "pending", "pending", "pending"]
    assert len(pngs(tmp_path)) == 1
    rest = jupyter_sd.batch(prompts, seed=1, outdir=str(tmp_path), **FAST)
    assert (rest.painted, rest.skipped, rest.stopped_by) == (3, 1, None) and len(pngs(tmp_path)) == 4


def test_a_failing_request_is_reported_and_the_rest_go_on(tmp_path, offline, fresh_settings):
    requests = [
        {"prompt": "a red circle", "model": "tiny"},
        {"prompt": "a fox", "model": str(tmp_path / "no-such-model")},
        {"prompt": "a green square", "model": "tiny"},
    ]
    result = jupyter_sd.batch(requests, seed=2, outdir=str(tmp_path / "out"), steps=2, size="64x64")
    assert [item.status for item in result.items] == ["painted", "failed", "painted"]
    assert result.failures[0][0] == "item 2" and "no-such-model" in result.failures[0][1]
    assert len(pngs(tmp_path / "out")) == 2


def test_tables_by_field_name_flag_or_infotext_key(tmp_path, offline, fresh_settings):
    (tmp_path / "r.csv").write_text(
        "prompt,negative,CFG scale,seed,size,Sampler\n"
        'a red circle,"blurry, dark",4.5,11,64x64,Euler a\n'
        ",,,,,\n"
        "a green square,,,12,64x64,\n"
        "a bad one,,,13,sixty,\n"
    )
    entries = read_entries(tmp_path / "r.csv")
    assert [entry.where for entry in entries] == ["r.csv:2", "r.csv:4", "r.csv:5"]
    assert entries[0].options == {
        "prompt": "a red circle", "negative_prompt": "blurry, dark", "guidance": "4.5", "seed": "11",
        "width": 64, "height": 64, "sampler": "Euler a",
    }  # fmt: skip
    with pytest.raises(ValueError, match=r"r\.csv:5: size: expected WIDTHxHEIGHT such as 512x512 \(got 'sixty'\)"):
        plan(tmp_path / "r.csv", {})
    items = plan(tmp_path / "r.csv", {}, skip_bad=True)
    assert items[0].request == PaintRequest(
        prompt="a red circle", negative_prompt="blurry, dark", guidance=4.5, seed=11, width=64, height=64,
        sampler="Euler a",
    )  # fmt: skip
    (tmp_path / "r.jsonl").write_text(
        '{"prompt": "a red circle", "steps": 3, "-W": 64, "H": 64}\n\n# comment\n{"prompt": "x", "colour": 1}\n[1]\n{'
    )
    entries = read_entries(tmp_path / "r.jsonl")
    assert entries[0].options == {"prompt": "a red circle", "steps": 3, "width": 64, "height": 64}
    assert [(entry.where, (entry.error or "")[:24]) for entry in entries[1:]] == [
        ("r.jsonl:4", "unknown column 'colour' "),
        ("r.jsonl:5", "expected an object of op"),
        ("r.jsonl:6", "not JSON (Expecting prop"),
    ]


def test_folder_of_pngs_repaints_their_recipes_with_new_options(mixed, tmp_path):
    out, again = tmp_path / "out", tmp_path / "again"
    jupyter_sd.batch(mixed, skip_bad=True, outdir=str(out), **FAST)
    result = jupyter_sd.batch(out, outdir=str(again), steps=3)
    assert result.painted == 3
    for old, new in zip(pngs(out), pngs(again)):
        old_text, old_json = recipe(old)
        new_text, new_json = recipe(new)
        assert new_text == old_text.replace("Steps: 2", "Steps: 3")
        assert new_json["request"]["outdir"] == str(again)  # the PNG's own folder is not carried over
    bare = tmp_path / "bare"
    bare.mkdir()
    Image.new("RGB", (8, 8)).save(bare / "plain.png")
    with pytest.raises(ValueError, match=r"plain\.png: no recipe"):
        jupyter_sd.batch(bare)


def test_text_blocks_and_option_lines(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("one\n  # indented comment\ntwo\n\nthree\nNegative prompt: four\n\n--steps x five\n")
    entries = read_entries(path)
    assert [(e.where, e.options, e.error) for e in entries] == [
        ("p.txt:1", {"prompt": "one"}, None),
        ("p.txt:3", {"prompt": "two"}, None),
        ("p.txt:5", {"prompt": "three", "negative_prompt": "four"}, None),
        ("p.txt:8", {}, "steps: expected a whole number (got 'x')"),
    ]
    with pytest.raises(ValueError, match="batch: no such file or folder"):
        read_entries(tmp_path / "missing.txt")


def test_key_ignores_where_pictures_go_and_fields_left_at_default():
    request = PaintRequest(prompt="a fox", seed=1)
    assert request_key(request) == request_key(request.replace(outdir="/elsewhere", preview="none"))
    assert request_key(request) != request_key(request.replace(steps=21))
    assert request_key(request) != request_key(request, occurrence=1)


def test_tracker_rate_and_eta_from_the_first_picture():
    tracker = BatchTracker(images=10, requests=10)
    tracker.started -= 5.0  # five seconds of loading before the first picture
    tracker.image_done()
    assert tracker.eta() == pytest.approx(9 * 5.0, rel=0.05)
    tracker.first_image = tracker.elapsed - 2.0  # then 4 more pictures in 2 s
    tracker.image_done(4)
    assert tracker.rate() == pytest.approx(2.0, rel=0.05)
    assert tracker.eta() == pytest.approx(5 / 2.0, rel=0.05)
    tracker.request_done(failed=True)
    assert tracker.text().startswith("batch 5/10 images · 2.00 images/s · ETA ")
    assert tracker.text().endswith(" s · 1 failed")


def test_inline_view_shows_bar_and_newest_thumbnails_first():
    view = InlineBatchView(previews=False)
    tracker = BatchTracker(images=3, requests=3)
    view._thumbs.extend(["A", "B"])
    tracker.image_done(2)
    bundle = view.bundle(tracker)
    assert '<progress value="2" max="3"' in bundle["text/html"]
    assert bundle["text/html"].index("base64,B") < bundle["text/html"].index("base64,A")
    assert bundle["text/plain"].startswith("batch 2/3 images")


def test_command_line_splits_batch_and_request_options():
    source, runner, options = parse_command("p.txt --steps 3 --ray auto --seed -1 --skip-bad --workers 2 -s 64x64")
    assert source == "p.txt"
    assert runner == {"cluster": "auto", "skip_bad": True, "workers": 2}
    assert options == {"steps": 3, "seed": -1, "width": 64, "height": 64}
    with pytest.raises(ValueError, match="give the file or folder first"):
        parse_command("--steps 3")
    with pytest.raises(ValueError, match="argument --workers: invalid int value"):
        parse_command("p.txt --workers two")


def test_magic_batch(shell, mixed, tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(UsageError) as info:
        shell.run_line_magic("paint", f"batch {mixed} -o {out} --model tiny")
    assert type(info.value) is UsageError and f"prompts.txt:9: {BAD_SAMPLER}" in str(info.value)
    assert capsys.readouterr().out == f"prompts.txt:9: {BAD_SAMPLER}\n"
    result = shell.run_line_magic("paint", f"batch {mixed} --skip-bad -o {out} --model tiny --steps 2 -s 64x64")
    assert isinstance(result, jupyter_sd.BatchResult) and result.painted == 3 and len(pngs(out)) == 3
    assert "painted" in result._repr_html_()


def test_cli_batch(mixed, tmp_path):
    from jupyter_sd.cli import main

    out = tmp_path / "out"
    assert main(["batch", str(mixed), "-o", str(out), "--model", "tiny"]) == 2
    assert not out.exists()
    assert main(["batch", str(mixed), "--skip-bad", "-o", str(out), "--model", "tiny", "--steps", "2",
                 "-s", "64x64"]) == 1  # fmt: skip
    assert len(pngs(out)) == 3
    assert main(["batch", "--help"]) == 0


@pytest.mark.slow
def test_in_a_kernel_previews_bar_thumbnails_and_interrupt_keeps_what_finished(tmp_path):
    from helpers.kernel_client import of_type, reply_status, running_kernel

    (tmp_path / "shapes.txt").write_text("".join(f"a red circle number {k}\n" for k in range(6)))
    line = "%paint batch shapes.txt --model tiny --steps 20 --size 128x128 --seed 3 --preview-interval 0 -o out"
    sent = {"interrupt": False}

    def interrupt_after_first_thumbnail(message, messages):
        html = message["content"].get("data", {}).get("text/html", "") if "content" in message else ""
        if not sent["interrupt"] and 'class="jupyter-sd-batch"' in html and "<img" in html:
            sent["interrupt"] = True
            kernel.interrupt()

    with running_kernel(tmp_path, env={"HF_HUB_OFFLINE": "1"}) as kernel:
        assert reply_status(kernel.execute("%load_ext jupyter_sd")) == "ok"
        messages = kernel.execute(line, timeout=300, on_message=interrupt_after_first_thumbnail)
        assert sent["interrupt"] and reply_status(messages) == "ok"
        shown = [m["content"]["data"] for m in of_type(messages, "display_data", "update_display_data")]
        assert any("image/png" in data and data["text/plain"].startswith("preview at step") for data in shown)
        bars = [data["text/plain"] for data in shown if 'class="jupyter-sd-batch"' in data.get("text/html", "")]
        assert bars[0] == "batch 0/6 images · 0.00 images/s · ETA …" and bars[-1].startswith("batch ")
        result = of_type(messages, "execute_result")[0]["content"]["data"]["text/plain"]
        saved = sorted((tmp_path / "out").glob("*.png"))
        assert "stopped" in result and 1 <= len(saved) < 6, result
        assert f"{len(saved)} painted" in result
        again = kernel.execute(line, timeout=300)
        result = of_type(again, "execute_result")[0]["content"]["data"]["text/plain"]
        assert f"{6 - len(saved)} painted" in result and f"{len(saved)} already saved" in result
        assert len(list((tmp_path / "out").glob("*.png"))) == 6
