"""The panel's img2img / inpaint / hires sections, its image input and the mask painter (real widgets, real engine)."""

from __future__ import annotations

import html
import io
import json

import numpy as np
import pytest

pytest.importorskip("ipywidgets")
pytest.importorskip("anywidget")
import ipywidgets as widgets  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from jupyter_sd.painting import session as painter
from jupyter_sd.painting.store import REQUEST_KEY, load_request
from jupyter_sd.panel import Panel
from jupyter_sd.panel.controls import SECTIONS
from jupyter_sd.panel.images import uploaded_files
from jupyter_sd.panel.mask import MaskPainter
from jupyter_sd.recipe.request import PaintRequest
from jupyter_sd.recipe.values import option_fields

FIELDS = {f.name: f for f in option_fields()}


@pytest.fixture()
def panel(tiny_model_dir, tmp_path, fresh_settings):
    made = Panel(model=str(tiny_model_dir), outdir=str(tmp_path / "out"), steps=4, seed=11, user_ns={})
    made.controls.widgets["prompt"].value = "a red circle"
    yield made
    made.stop()
    made.wait(30)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _circle(side: int = 16) -> Image.Image:
    picture = Image.new("RGB", (side, side), (20, 40, 200))
    ImageDraw.Draw(picture).ellipse((side // 4, side // 4, 3 * side // 4, 3 * side // 4), fill=(220, 30, 30))
    return picture


def _upload_value(name: str, data: bytes) -> list[dict]:
    """What ipywidgets 8's front end sends for one chosen file."""
    return [{"name": name, "type": "image/png", "size": len(data), "last_modified": 0, "content": memoryview(data)}]


def _upload(panel, name: str, data: bytes) -> None:
    panel.images.upload.set_state({"value": _upload_value(name, data)})  # as the comm message arrives


# -- controls come from the fields ---------------------------------------------------------------------------------


def test_section_controls_match_the_fields(panel):
    w = panel.controls.widgets
    for name in ("strength", "mask_blur", "padding", "hires", "hires_steps", "hires_denoise"):
        assert (w[name].min, w[name].max) == FIELDS[name].metadata["range"], name
        assert isinstance(w[name], (widgets.IntSlider, widgets.FloatSlider)), name
    for name in ("resize_mode", "inpaint_area", "masked_content", "hires_upscaler", "hires_sampler"):
        assert list(w[name].options) == list(FIELDS[name].metadata["choices"]), name
    for section, names in SECTIONS.items():
        box = panel.controls.sections[section].box
        assert box.layout.display == "none"  # hidden until used
        assert all(n in FIELDS for n in names)
    more = panel.controls.more().children[0].children
    assert not {w[n] for names in SECTIONS.values() for n in names} & set(more)


def test_a_section_switched_off_paints_its_defaults(panel):
    w, sections = panel.controls.widgets, panel.controls.sections
    w["hires"].value, w["strength"].value = 1.5, 0.4
    assert (panel.request().hires, panel.request().strength) == (0.0, 0.75)
    sections["hires"].toggle.value = True
    assert panel.request().hires == 1.5 and sections["hires"].box.layout.display == ""
    sections["img2img"].toggle.value = True  # img2img and hires exclude each other
    assert sections["hires"].toggle.value is False and panel.request().hires == 0.0
    w["hires"].value = 0.0
    sections["hires"].toggle.value = True  # on with no factor: A1111's 2
    assert w["hires"].value == 2.0 and not sections["img2img"].on
    # a request that uses a section opens it
    opened = Panel(model=panel.defaults.model, hires=1.5, user_ns={})
    assert opened.controls.sections["hires"].on and opened.request().hires == 1.5


# -- the image input ---------------------------------------------------------------------------------------------


def test_upload_in_both_widget_apis_becomes_the_init_file(panel, tmp_path):
    data = _png(_circle())
    assert uploaded_files(_upload_value("c.png", data)) == [("c.png", data)]
    seven = {"c.png": {"metadata": {"name": "c.png", "type": "image/png", "size": len(data)}, "content": data}}
    assert uploaded_files(seven) == [("c.png", data)]  # ipywidgets 7's dict
    assert uploaded_files(()) == [] and uploaded_files({}) == []

    _upload(panel, "c.png", data)
    staged = list((tmp_path / "out").iterdir())
    assert len(staged) == 1 and staged[0].name.startswith("init-")  # kept once, named by its content
    assert np.array_equal(np.asarray(Image.open(staged[0])), np.asarray(_circle()))
    request = panel.request()
    assert request.init == str(staged[0]) and panel.controls.sections["img2img"].on
    assert (request.width, request.height) == (16, 16)  # the size follows the picture
    assert panel.images.thumb.value and "16×16" in panel.images.about.value
    assert panel.images.painter.width == 16 and panel.images.painter.image

    _upload(panel, "notes.png", b"not a picture")
    assert "init: cannot read the uploaded file 'notes.png' as a picture" in html.unescape(panel.live.error.value)
    assert len(list(staged[0].parent.iterdir())) == 1 and panel.request().init == str(staged[0])
    _upload(panel, "again.png", data)  # the same picture again: the same file
    assert len(list(staged[0].parent.iterdir())) == 1


def test_use_last_picture_and_send_to_img2img(panel):
    panel.images.use_last.click()
    assert "init: no picture painted yet" in panel.live.error.value
    panel.generate()
    assert panel.wait(60) and panel.last_error is None
    first = panel.last_result.paths[0]

    panel.images.use(None)
    panel.images.use_last.click()
    assert panel.request().init == str(first)

    panel.images.use(None)
    panel.controls.widgets["prompt"].value = "something else"
    panel.controls.sections["img2img"].toggle.value = False
    tile = panel.gallery.strip.children[0]
    tile.children[2].children[0].click()  # the thumbnail's "send to img2img"
    request = panel.request()
    assert request.init == str(first) and request.prompt == "a red circle" and request.mask == ""
    assert panel.controls.sections["img2img"].on and not panel.controls.sections["inpaint"].on
    assert np.array_equal(np.asarray(panel.images.picture), np.asarray(panel.last_result.images[0]))

    # the large view's "send to inpaint": the mask painter opens over the picture
    panel.gallery.show(panel.gallery.items[0])
    panel.gallery.send_buttons["inpaint"].click()
    assert panel.controls.sections["inpaint"].on and panel.images.painter.width == 16
    assert panel.images.painter.mask == b"" and panel.controls.widgets["init"].value == str(first)
    panel.controls.sections["inpaint"].toggle.value = False

    panel.controls.widgets["strength"].value = 0.5
    panel.generate()
    assert panel.wait(60) and panel.last_error is None, panel.last_error
    second = panel.last_result.paths[0]
    recipe = load_request(second)
    assert recipe.init == str(first) and recipe.strength == 0.5
    assert "Denoising strength: 0.5" in panel.gallery.items[0].infotext


# -- the mask painter --------------------------------------------------------------------------------------------


def test_mask_painter_undo_clear_invert():
    painter_ = MaskPainter(_circle(32))
    assert (painter_.width, painter_.height) == (32, 32) and painter_.brush == 3
    assert painter_.mask_image() is None and not painter_.painted
    stroke = Image.new("L", (32, 32), 0)
    ImageDraw.Draw(stroke).line((4, 16, 28, 16), fill=255, width=4)
    painter_.set_state({"mask": memoryview(_png(stroke))})  # what the browser sends after a stroke
    assert painter_.painted and np.array_equal(np.asarray(painter_.mask_image()), np.asarray(stroke))
    painter_._on_action(painter_, {"action": "invert"}, [])  # the toolbar's buttons send these
    assert np.array_equal(np.asarray(painter_.mask_image()), 255 - np.asarray(stroke))
    painter_._on_action(painter_, {"action": "clear"}, [])
    assert painter_.mask_image() is None
    assert painter_.undo() and np.array_equal(np.asarray(painter_.mask_image()), 255 - np.asarray(stroke))
    assert painter_.undo() and np.array_equal(np.asarray(painter_.mask_image()), np.asarray(stroke))
    assert painter_.undo() and painter_.mask_image() is None
    assert not painter_.undo()
    painter_.set_image(_circle(24))  # a new picture: the mask and its history start again
    assert painter_.mask == b"" and painter_.history == [] and painter_.width == 24


def test_painted_mask_inpaints_and_is_saved_beside_the_picture(panel, tmp_path):
    init = _circle()
    panel.images.use(init, inpaint=True)
    assert panel.controls.sections["inpaint"].on and panel.controls.sections["img2img"].on
    panel.controls.widgets["mask_blur"].value = 0
    assert panel.generate() is None and "mask: inpaint is on but nothing is painted" in panel.live.error.value

    mask = Image.new("L", (16, 16), 0)
    mask.paste(255, (4, 4, 12, 12))
    panel.images.painter.set_state({"mask": memoryview(_png(mask))})
    assert "painted: 25%" in panel.images.mask_about.value
    panel.last_error = None
    panel.generate()
    assert panel.wait(60) and panel.last_error is None, panel.last_error
    picture = panel.last_result.paths[0]
    beside = picture.with_name(f"{picture.stem}-mask.png")
    with Image.open(beside) as saved:
        assert np.array_equal(np.asarray(saved.convert("L")), np.asarray(mask))
    with Image.open(picture) as image:
        payload = json.loads(image.text[REQUEST_KEY])
        painted = np.asarray(image.convert("RGB"), dtype=int)
    assert payload["mask"]["path"] == str(beside.resolve()) and len(payload["mask"]["sha256"]) == 64
    recipe = load_request(picture)
    assert recipe.mask == str(beside.resolve()) and recipe.mode == "inpaint" and recipe.mask_blur == 0
    # outside the mask the init's pixels are kept (pasted back), inside they are repainted
    keep = np.asarray(mask) == 0
    assert np.abs(painted[keep] - np.asarray(init, dtype=int)[keep]).max() <= 1
    # the recipe alone paints the same picture again (through the saved mask file)
    again = painter.render(recipe.replace(save=False), None, user_ns={})
    assert np.abs(np.asarray(again.images[0], dtype=int) - painted).max() <= 1


def test_stop_during_the_hires_pass_keeps_its_x0(panel, tiny_model_dir):
    pipe = painter.get_engine().pipeline(painter.new_request(model=str(tiny_model_dir)))
    panel.controls.sections["hires"].toggle.value = True
    panel.controls.widgets["hires_steps"].value = 150
    panel.controls.widgets["hires_denoise"].value = 0.99
    loads = painter.get_engine().load_count
    import time

    hook = pipe.unet.register_forward_pre_hook(lambda *args: time.sleep(0.03))
    try:
        job = panel.generate()
        deadline = time.monotonic() + 60
        while "hires 2/2 · step" not in panel.live.status.value or panel.live.bar.value < 2:
            assert time.monotonic() < deadline, panel.live.status.value
            time.sleep(0.02)
        assert panel.live.bar.max == 150
        panel.stop_button.click()
        assert panel.wait(30)
    finally:
        hook.remove()
    result = job.result
    assert result.interrupted and result.stopped_by == "stop" and result.interrupted_at > 4
    assert result.images[0].size == (32, 32)  # the hires pass's x0, at the hires size
    assert result.paths == []  # nothing saved without --save-incomplete
    assert "stopped at step" in panel.live.status.value and panel.live.bar.bar_style == "warning"
    assert painter.get_engine().load_count == loads
    assert isinstance(PaintRequest().hires, float)


def test_attach_input_never_overwrites_and_keeps_the_pixels(tmp_path):
    from jupyter_sd.painting.store import attach_input, png_info, read_parameters, save_image

    picture = _circle()
    request = PaintRequest(prompt="a fox", init="x.png", mask="<object>", seed=3)
    path = save_image(picture, tmp_path, 3, png_info("a fox\nSteps: 20, Seed: 3", request, {"seed": 3}))
    mask = Image.new("L", (16, 16), 255)
    beside = attach_input(path, "mask", _png(mask))
    assert beside == tmp_path / "00001-3-mask.png" and beside.read_bytes() == _png(mask)
    with Image.open(path) as image:
        assert np.array_equal(np.asarray(image.convert("RGB")), np.asarray(picture))
        payload = json.loads(image.text[REQUEST_KEY])
    assert payload["seed"] == 3 and payload["request"]["init"] == "x.png"
    assert payload["mask"]["path"] == str(beside.resolve()) and read_parameters(path) == "a fox\nSteps: 20, Seed: 3"
    with pytest.raises(FileExistsError):
        attach_input(path, "mask", _png(Image.new("L", (16, 16), 0)))
    assert beside.read_bytes() == _png(mask)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["00001-3-mask.png", "00001-3.png"]  # no temp files left


def test_an_init_path_given_or_typed_shows_the_picture(tiny_model_dir, tmp_path, fresh_settings):
    path = tmp_path / "start.png"
    _circle(24).save(path)
    made = Panel(model=str(tiny_model_dir), init=str(path), strength=0.5, user_ns={})
    assert made.controls.sections["img2img"].on and not made.controls.sections["hires"].on
    assert made.images.painter.width == 24 and "start.png" in made.images.about.value
    made.controls.widgets["init"].value = str(tmp_path / "missing.png")  # typed: not a file (yet)
    assert made.images.picture is None and made.images.thumb.layout.display == "none"
    made.controls.widgets["init"].value = str(path)
    assert made.images.picture.size == (24, 24) and made.request().strength == 0.5


def test_an_upload_that_cannot_be_kept_is_one_line(panel, tmp_path):
    (tmp_path / "out").write_text("a file where the output folder should be")
    _upload(panel, "c.png", _png(_circle()))
    assert "init: could not keep the picture in" in html.unescape(panel.live.error.value)
    assert panel.controls.widgets["init"].value == "" and panel.images.picture is None
