"""The widget panel in-process: controls generated from the request's fields, the worker, stop, queue, gallery."""

from __future__ import annotations

import threading
import time

import pytest

pytest.importorskip("ipywidgets")
import ipywidgets as widgets  # noqa: E402

from jupyter_sd.painting import session as painter
from jupyter_sd.painting.store import load_request, read_parameters
from jupyter_sd.panel import CellControls, Panel
from jupyter_sd.panel.controls import css_class
from jupyter_sd.recipe.values import option_fields

FIELDS = {f.name: f for f in option_fields()}


@pytest.fixture()
def panel(tiny_model_dir, tmp_path, fresh_settings):
    made = Panel(model=str(tiny_model_dir), outdir=str(tmp_path / "out"), steps=3, user_ns={})
    made.controls.widgets["prompt"].value = "a red circle"
    yield made
    made.stop()
    made.wait(30)


def _slow_pipeline(tiny_model_dir, seconds=0.03):
    """Make each UNet call take a while, so a run can be stopped half-way on any machine."""
    pipe = painter.get_engine().pipeline(painter.new_request(model=str(tiny_model_dir)))
    return pipe.unet.register_forward_pre_hook(lambda *args: time.sleep(seconds))


def _wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


# -- controls come from the fields -------------------------------------------------------------------------------


def test_slider_ranges_equal_validation_ranges(panel):
    w = panel.controls.widgets
    assert isinstance(w["steps"], widgets.IntSlider)
    assert (w["steps"].min, w["steps"].max) == FIELDS["steps"].metadata["range"]
    assert isinstance(w["guidance"], widgets.FloatSlider)
    assert (w["guidance"].min, w["guidance"].max) == FIELDS["guidance"].metadata["range"]
    assert w["guidance"].step == FIELDS["guidance"].metadata["step"]
    assert (w["n"].min, w["n"].max) == FIELDS["n"].metadata["range"]
    assert (w["seed"].min, w["seed"].max) == FIELDS["seed"].metadata["range"]
    assert w["width"].step == FIELDS["width"].metadata["step"] == 8
    assert (w["height"].min, w["height"].max) == FIELDS["height"].metadata["range"]
    assert list(w["sampler"].options) == list(FIELDS["sampler"].metadata["choices"])
    assert list(w["schedule"].options) == list(FIELDS["schedule"].metadata["choices"])
    assert list(w["preview"].options) == list(FIELDS["preview"].metadata["choices"])
    assert isinstance(w["prompt"], widgets.Textarea) and isinstance(w["negative_prompt"], widgets.Textarea)
    assert css_class("negative_prompt") in w["negative_prompt"]._dom_classes
    # every option has a control, and the controls describe a request equal to the defaults
    assert set(w) == set(FIELDS)
    assert panel.controls.request() == panel.defaults.replace(prompt="a red circle")
    # controls left alone are not asked for: a loaded family's defaults (Flux's Euler) still fill them
    assert "sampler" not in panel.controls.request().given
    w["sampler"].value = w["sampler"].value  # touched but unchanged: still ours
    w["guidance"].value = 5.5
    assert panel.controls.request().given - panel.defaults.given == {"prompt", "guidance"}


def test_defaults_come_from_kernel_config(fresh_settings):
    fresh_settings.update(steps=33, sampler="Euler a")
    made = Panel(guidance=4.5, user_ns={})
    assert made.controls.widgets["steps"].value == 33
    assert made.controls.widgets["sampler"].value == "Euler a"
    assert made.controls.widgets["guidance"].value == 4.5
    with pytest.raises(ValueError, match="steps: must be"):
        Panel(steps=0, user_ns={})


def test_size_choices_and_custom(panel):
    size = panel.controls.size
    assert size.get() == (None, None)
    assert "512x768" in size.dropdown.options[2] or any(v == "512x768" for _, v in size.dropdown.options)
    size.set(640, 448)
    assert size.dropdown.value == "custom" and size.width.layout.display == ""
    assert size.get() == (640, 448)
    size.set(512, 768)
    assert size.get() == (512, 768) and size.width.layout.display == "none"


# -- painting -------------------------------------------------------------------------------------------------------


def test_generate_paints_saves_and_fills_gallery(panel, tmp_path, capfd):
    panel.controls.widgets["steps"].value = 4
    panel.controls.widgets["guidance"].value = 6.5
    panel.controls.widgets["seed"].value = 42
    panel.generate_button.click()
    assert panel.wait(60)
    assert panel.last_error is None
    result = panel.last_result
    assert result.seeds == [42] and result.request.steps == 4 and len(result.images) == 1
    assert panel.live.bar.value == panel.live.bar.max == 4 and panel.live.bar.bar_style == "success"
    assert panel.live.image.format == "png" and panel.live.image.value
    assert "1 image" in panel.live.status.value
    # saved beside the notebook folder the request names, with the same metadata %%paint writes
    path = result.paths[0]
    assert path.parent == tmp_path / "out"
    saved = load_request(path)
    assert (saved.steps, saved.guidance, saved.seed, saved.prompt) == (4, 6.5, 42, "a red circle")
    assert "Steps: 4" in read_parameters(path) and "CFG scale: 6.5" in read_parameters(path)
    # gallery: newest first, the detail shows the recipe, "reuse last" knows the seed
    assert len(panel.gallery.strip.children) == 1
    assert panel.controls.seed.last_seed == 42 and not panel.controls.seed.last.disabled
    assert panel.controls.size.dropdown.options[0][0] == "native (16×16)"
    # the worker never prints (text from a thread lands in whichever cell ran last)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_gallery_reuse_loads_settings(panel):
    panel.controls.widgets["seed"].value = 7
    panel.controls.widgets["sampler"].value = "Euler a"
    panel.generate()
    panel.wait(60)
    panel.controls.widgets["seed"].value = -1
    panel.controls.widgets["sampler"].value = "DDIM"
    panel.controls.widgets["steps"].value = 9
    item = panel.gallery.items[0]
    panel.gallery.strip.children[0].children[1].click()  # the thumbnail's button
    assert panel.gallery.selected is item and panel.gallery.detail.layout.display == ""
    assert "Seed: 7" in panel.gallery.info.value and "Sampler: Euler a" in panel.gallery.info.value
    panel.gallery.reuse.click()
    values = panel.controls.values()
    assert (values["seed"], values["sampler"], values["steps"]) == (7, "Euler a", 3)
    assert values["width"] is None  # the native size maps back to "native", not a clamped slider


def test_newest_first_and_batches(panel):
    panel.controls.widgets["n"].value = 2
    panel.controls.widgets["seed"].value = 100
    panel.generate()
    panel.controls.widgets["n"].value = 1
    panel.controls.widgets["seed"].value = 200
    panel.generate()
    assert panel.wait(60)
    assert [item.request.seed for item in panel.gallery.items] == [200, 101, 100]
    assert [b.description for b in (tile.children[1] for tile in panel.gallery.strip.children)] == ["#3", "#2", "#1"]


def test_stop_keeps_last_preview_and_queue_is_removable(panel, tiny_model_dir):
    hook = _slow_pipeline(tiny_model_dir)
    try:
        panel.controls.widgets["steps"].value = 150
        first = panel.generate()
        assert _wait_for(lambda: panel.live.bar.value >= 2)
        second = panel.generate()  # busy: queued
        assert panel.worker.queued == [second]
        assert len(panel.queue_box.children) == 2 and not panel.stop_button.disabled
        remove = panel.queue_box.children[1].children[0]
        remove.click()
        assert panel.worker.queued == [] and len(panel.queue_box.children) == 1
        panel.stop_button.click()
        assert panel.wait(30)
    finally:
        hook.remove()
    result = first.result
    assert result.interrupted and result.stopped_by == "stop" and 2 <= result.interrupted_at < 150
    assert len(result.images) == 1  # the last x0 picture, kept
    assert second.result is None and second.done.is_set()
    assert "stopped at step" in panel.live.status.value and panel.live.bar.bar_style == "warning"
    assert panel.stop_button.disabled and panel.queue_box.children == ()
    assert len(panel.gallery.items) == 1


def test_close_cancels_queue_and_stops(panel, tiny_model_dir):
    hook = _slow_pipeline(tiny_model_dir)
    try:
        panel.controls.widgets["steps"].value = 150
        first = panel.generate()
        second = panel.generate()
        assert _wait_for(lambda: panel.live.bar.value >= 1)
        panel.close()
        assert panel.wait(30)
    finally:
        hook.remove()
    assert first.result.interrupted and second.result is None and second.done.is_set()


def test_kernel_thread_stays_free(panel, tiny_model_dir):
    hook = _slow_pipeline(tiny_model_dir)
    try:
        panel.controls.widgets["steps"].value = 150
        panel.generate()
        assert _wait_for(lambda: panel.live.bar.value >= 1)
        assert threading.current_thread() is threading.main_thread() and panel.worker.busy
        panel.stop()
    finally:
        panel.wait(30)
        hook.remove()


def test_errors_show_one_line_and_panel_keeps_working(panel):
    panel.controls.widgets["model"].value = "/no/such/model"
    panel.generate()
    panel.wait(30)
    assert "model: no such file or folder" in panel.live.error.value
    assert isinstance(panel.last_error, ValueError)
    panel.controls.widgets["seed_resize_from"].value = "big"  # refused in one line, nothing queued
    assert panel.generate() is None and "seed_resize_from: expected WIDTHxHEIGHT" in panel.live.error.value
    panel.controls.widgets["seed_resize_from"].value = ""
    panel.controls.widgets["prompt"].value = "a blue square"
    panel.controls.widgets["model"].value = panel.defaults.model
    panel.generate()
    assert panel.wait(60)
    assert panel.live.error.value == "" and len(panel.results) == 1


def test_worker_errors_other_than_value_error_name_their_type(panel, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("CUDA error: device-side assert\nmore lines")

    monkeypatch.setattr(painter, "render", boom)
    panel.generate()
    panel.wait(10)
    assert "RuntimeError: CUDA error: device-side assert" in panel.live.error.value
    assert "more lines" not in panel.live.error.value
    assert panel.live.bar.bar_style == "danger"
    from jupyter_sd.panel.worker import error_line

    assert error_line(MemoryError("out of memory painting 4 image(s): try -n 1")) == (
        "out of memory painting 4 image(s): try -n 1"
    )
    assert error_line(KeyError("x")) == "KeyError: 'x'" and error_line(RuntimeError()) == "RuntimeError"


def test_prompt_html_is_shown_as_text(panel):
    panel.controls.widgets["prompt"].value = "<img src=x onerror=alert(1)> fox"
    panel.generate()
    assert panel.wait(60)
    panel.gallery.show(panel.gallery.items[0])
    for text in (panel.gallery.info.value, panel.live.status.value):
        assert "<img" not in text
    assert "&lt;img src=x onerror=alert(1)&gt; fox" in panel.gallery.info.value


# -- %%paint --ui -----------------------------------------------------------------------------------------------


def test_cell_controls_paint_again(tiny_model_dir, tmp_path, fresh_settings):
    request = painter.new_request(prompt="a green fox", model=str(tiny_model_dir), outdir=str(tmp_path), steps=2)
    result = painter.render(request, None)
    controls = CellControls(result, user_ns={})
    assert controls.inputs["seed"].value == result.seeds[0]
    assert controls.inputs["steps"].value == 2
    controls.inputs["steps"].value = 3
    controls.inputs["guidance"].value = 5.0
    controls.again_button.click()
    assert controls.wait(60)
    again = controls.results[-1]
    assert again.request.steps == 3 and again.request.guidance == 5.0 and again.seeds == result.seeds
    assert again.request.prompt == "a green fox" and controls.live.image.value
    assert len(list(tmp_path.glob("*.png"))) == 2


def test_foreground_mode_waits_for_the_picture(tiny_model_dir, tmp_path, fresh_settings, monkeypatch):
    import sys

    from jupyter_sd.panel.worker import background_default

    assert background_default() is True
    monkeypatch.setitem(sys.modules, "google.colab", object())  # Colab: updates sent while idle are not shown
    assert background_default() is False
    made = Panel(model=str(tiny_model_dir), outdir=str(tmp_path), steps=2, prompt="a fox", user_ns={})
    assert made.background is False
    job = made.generate()
    assert job.done.is_set() and job.result is not None and len(made.gallery.items) == 1
