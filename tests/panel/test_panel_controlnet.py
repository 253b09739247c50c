"""The panel's ControlNet section (tabs, the request's units, preview map) and img2img's outpaint control."""

from __future__ import annotations

import dataclasses
import hashlib
import html
import io

import cv2
import numpy as np
import pytest

pytest.importorskip("ipywidgets")
pytest.importorskip("anywidget")
import ipywidgets as widgets  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from jupyter_sd import library
from jupyter_sd.painting.store import load_request
from jupyter_sd.panel import Panel
from jupyter_sd.panel.outpaint_control import OutpaintControl
from jupyter_sd.recipe.control_units import ControlUnit, units_infotext


@pytest.fixture()
def controlnet_models(tmp_path):
    """A models folder whose ``ControlNet/`` holds one single-file model, one diffusers folder and annotator weights."""
    root = tmp_path / "models"
    (root / "ControlNet" / "annotators").mkdir(parents=True)
    (root / "ControlNet" / "control_v11p_sd15_canny.safetensors").write_bytes(b"0" * 64)
    (root / "ControlNet" / "annotators" / "hed.pth").write_bytes(b"0" * 64)
    (root / "ControlNet" / "depth_folder").mkdir()
    (root / "ControlNet" / "depth_folder" / "config.json").write_text("{}")
    before = library.models_dir()
    library.set_models_dir(root)
    yield root
    library.set_models_dir(before)


@pytest.fixture()
def panel(tiny_model_dir, tmp_path, fresh_settings, controlnet_models):
    made = Panel(model=str(tiny_model_dir), outdir=str(tmp_path / "out"), steps=2, seed=5, user_ns={})
    made.controls.widgets["prompt"].value = "a red circle"
    yield made
    made.stop()
    made.wait(30)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _picture(side: int = 128) -> Image.Image:
    picture = Image.new("RGB", (side, side), (30, 60, 190))
    ImageDraw.Draw(picture).rectangle((side // 4, side // 4, side // 2, 3 * side // 4), fill=(230, 200, 40))
    ImageDraw.Draw(picture).ellipse((side // 2, side // 8, 7 * side // 8, side // 2), fill=(200, 20, 20))
    return picture


def _upload(upload: widgets.FileUpload, name: str, data: bytes) -> None:
    """What ipywidgets 8's front end sends for one chosen file, as the comm message arrives."""
    entry = {"name": name, "type": "image/png", "size": len(data), "last_modified": 0, "content": memoryview(data)}
    upload.set_state({"value": [entry]})


# -- the tabs ------------------------------------------------------------------------------------------------------


def test_three_unit_tabs_with_modules_and_the_folders_models(panel):
    section = panel.control_units
    assert panel.controls.widgets["controlnet"] is section
    assert [section.get_title(i) for i in range(3)] == ["Unit 0", "Unit 1", "Unit 2"]
    more = panel.controls.more().children[0].children
    assert section not in more and not any("jupyter-sd-controlnet" in w._dom_classes for w in more)  # no text box
    tab = section.units[0]
    # sd-webui-controlnet's built-in names are offered, and the weighted ones after them
    assert {"none", "canny", "invert", "blur_gaussian", "shuffle", "tile_resample", "inpaint_only"} <= set(
        tab.module.options
    )
    assert list(tab.module.options).index("canny") < list(tab.module.options).index("depth_midas")
    options = list(tab.module.options)  # the normal, OneFormer and UniFormer maps are built
    assert {"normal_bae", "normal_midas", "seg_ofade20k", "seg_ofcoco", "seg_ufade20k"} <= set(options)
    assert options.index("seg_ofcoco") < options.index("seg_ufade20k")
    # IP-Adapter's modules last, as the extension's IP-Adapter control type lists them
    assert list(tab.module.options)[-8:] == [
        "ip-adapter_clip_sd15",
        "ip-adapter_clip_h",
        "ip-adapter_clip_sdxl_plus_vith",
        "ip-adapter_clip_sdxl",
        "ip-adapter_clip_g",
        "ip-adapter_clip_l",
        "ip-adapter_siglip",
        "ip-adapter-auto",
    ]
    # the models folder's ControlNet/: a file by its stem, a diffusers folder by its name; annotators/ is not a model
    assert list(tab.model.options) == ["None", "control_v11p_sd15_canny", "depth_folder"]
    (panel_models := library.models_dir() / "ControlNet" / "control_v11f1p_sd15_depth.pth").write_bytes(b"1")
    tab.refresh.click()
    assert panel_models.stem in tab.model.options
    assert not panel.controls.sections["controlnet"].on and panel.controls.values()["controlnet"] == ()
    xyz_types = panel.children[-1].rows["x"][0].options  # the X/Y/Z section offers the unit axes
    assert {"[ControlNet] Weight", "[ControlNet] Guidance End", "[ControlNet] Model", "[ControlNet 1] Weight"} <= set(
        xyz_types
    )


@pytest.mark.parametrize("allowed", [5, 1])
def test_the_tabs_follow_config_controlnet_units(tiny_model_dir, tmp_path, fresh_settings, controlnet_models, allowed):
    """``%paint config controlnet_units=N`` (set_max_units) opens N tabs, as the extension's unit number does."""
    from jupyter_sd.engine.control.apply import DEFAULT_MAX_UNITS, set_max_units

    set_max_units(allowed)
    try:
        made = Panel(model=str(tiny_model_dir), outdir=str(tmp_path / "out"), steps=2, seed=5, user_ns={})
        section = made.control_units
        assert len(section.units) == len(section.children) == allowed
        assert [section.get_title(i) for i in range(allowed)] == [f"Unit {i}" for i in range(allowed)]
        made.stop()
        made.wait(30)
    finally:
        set_max_units(DEFAULT_MAX_UNITS)


def test_module_sliders_follow_sd_webui_controlnet(panel):
    tab = panel.control_units.units[0]
    shown = {name: s for name, s in tab.sliders.items() if s.layout.display != "none"}
    assert shown == {}  # module none: no sliders
    tab.module.value = "canny"
    res, low, high = (tab.sliders[n] for n in ("processor_res", "threshold_a", "threshold_b"))
    assert (low.description, low.min, low.max, low.value) == ("Low Threshold", 1, 255, 100)
    assert (high.description, high.value, res.value, res.min, res.max) == ("High Threshold", 200, 512, 64, 2048)
    tab.module.value = "blur_gaussian"
    sigma = tab.sliders["threshold_a"]
    assert (sigma.description, sigma.min, sigma.max, sigma.value, sigma.step) == ("Sigma", 0.01, 64, 9, 0.01)
    assert tab.sliders["threshold_b"].layout.display == "none" and tab.fields()["threshold_b"] == -1
    tab.module.value = "tile_resample"  # a rate of 1.0-8.0 moves in hundredths, as in the extension
    rate = tab.sliders["threshold_a"]
    assert (rate.description, rate.min, rate.max, rate.value, rate.step) == ("Down Sampling Rate", 1, 8, 1, 0.01)
    assert tab.sliders["processor_res"].layout.display == "none"
    tab.module.value = "normal_midas"
    background = tab.sliders["threshold_a"]
    assert (background.description, background.min, background.max, background.value) == (
        "Normal Background Threshold",
        0,
        1,
        0.4,
    )
    tab.module.value = "blur_gaussian"
    tab.pixel_perfect.value = True  # Pixel Perfect picks the resolution: its slider goes, its value is -1
    assert res.layout.display == "none" and tab.fields()["processor_res"] == -1 and sigma.value == 9


# -- the request's units -------------------------------------------------------------------------------------------


def test_an_uploaded_unit_becomes_the_requests_controlnet_unit(panel, tmp_path):
    section, picture = panel.control_units, _picture()
    data = _png(picture)
    _upload(section.units[0].upload, "pose.png", data)
    tab = section.units[0]
    kept = tmp_path / "out" / f"control-{hashlib.sha256(data).hexdigest()[:12]}.png"
    assert tab.path == kept.resolve() and kept.read_bytes() == data and tab.enable.value
    assert np.array_equal(np.asarray(Image.open(kept)), np.asarray(picture))
    assert tab.thumb.value and "128×128" in tab.about.value
    tab.module.value, tab.model.value = "canny", "control_v11p_sd15_canny"
    tab.sliders["threshold_a"].value, tab.sliders["threshold_b"].value = 50, 120
    tab.weight.value, tab.guidance_end.value = 0.6, 0.7
    tab.control_mode.value = "ControlNet is more important"
    assert panel.controls.request().controlnet == ()  # the section is off: no units
    panel.controls.sections["controlnet"].toggle.value = True
    units = panel.controls.request().controlnet
    assert units == (
        ControlUnit(
            module="canny",
            model="control_v11p_sd15_canny",
            weight=0.6,
            processor_res=512,
            threshold_a=50,
            threshold_b=120,
            guidance_end=0.7,
            control_mode="ControlNet is more important",
            image=str(kept.resolve()),
        ),
    )
    assert units_infotext(units) == {
        "ControlNet 0": "Module: canny, Model: control_v11p_sd15_canny, Weight: 0.6, Resize Mode: Crop and Resize, "
        "Processor Res: 512, Threshold A: 50, Threshold B: 120, Guidance Start: 0, Guidance End: 0.7, "
        "Pixel Perfect: False, Control Mode: ControlNet is more important"
    }
    dicts = section.value  # sd-webui-controlnet's API dicts, the image as its kept file
    assert dicts[0]["image"] == str(kept.resolve()) and dicts[0]["module"] == "canny" and dicts[0]["enabled"]

    # a second unit: enabled without a picture is refused in one line; with one, both go in order
    section.units[2].enable.value = True
    assert panel.generate() is None
    line = html.unescape(panel.live.error.value)
    assert "controlnet: unit 2 is enabled but has no picture; upload one or untick Enable" in line
    _upload(section.units[2].upload, "edges.png", _png(_picture(64)))
    section.units[2].weight.value = 0.3
    assert [unit.weight for unit in panel.controls.request().controlnet] == [0.6, 0.3]
    section.units[0].enable.value = False
    assert [unit.weight for unit in panel.controls.request().controlnet] == [0.3]


def test_a_units_region_mask_is_kept_and_becomes_its_effective_region_mask(panel, tmp_path):
    """sd-webui-controlnet's Effective Region Mask upload: kept once as control-mask-HASH.png, the unit's field."""
    section = panel.control_units
    tab = section.units[0]
    _upload(tab.upload, "style.png", _png(_picture(64)))
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((0, 0, 31, 63), fill=255)
    data = _png(mask)
    _upload(tab.region.upload, "left.png", data)
    kept = tmp_path / "out" / f"control-mask-{hashlib.sha256(data).hexdigest()[:12]}.png"
    assert tab.region.path == kept.resolve() and kept.read_bytes() == data and tab.region.thumb.value
    panel.controls.sections["controlnet"].toggle.value = True
    (unit,) = panel.controls.request().controlnet
    assert unit.effective_region_mask == str(kept.resolve())
    assert section.value[0]["effective_region_mask"] == str(kept.resolve())  # the extension's API name
    _upload(tab.region.upload, "notes.png", b"not a picture")
    assert "controlnet unit 0 mask:" in html.unescape(tab.error.value) and tab.region.path == kept.resolve()
    tab.region.clear.click()
    assert panel.controls.request().controlnet[0].effective_region_mask is None
    assert tab.region.thumb.layout.display == "none"
    panel.load(panel.defaults.replace(controlnet=[{**section.value[0], "effective_region_mask": str(kept)}]))
    assert section.units[0].region.path == kept and section.units[0].region.thumb.layout.display == ""
    panel.load(panel.defaults)
    assert section.units[0].region.path is None


def test_a_backwards_guidance_window_is_one_line(panel):
    tab = panel.control_units.units[1]
    _upload(tab.upload, "a.png", _png(_picture(64)))
    panel.controls.sections["controlnet"].toggle.value = True
    tab.guidance_start.value, tab.guidance_end.value = 0.8, 0.2
    assert panel.generate() is None
    assert "controlnet: guidance start (0.8) is after guidance end (0.2)" in html.unescape(panel.live.error.value)


def test_loading_a_recipe_fills_the_tabs(panel, tmp_path):
    picture_file = tmp_path / "map.png"
    _picture(64).save(picture_file)
    units = (
        {"image": str(picture_file), "module": "canny", "model": "control_v11p_sd15_canny", "weight": 0.8},
        {"module": "invert", "model": "t2i_sketch [0123abcd]", "guidance_start": 0.2, "pixel_perfect": True},
        {"image": str(picture_file), "module": "none", "model": "depth_folder", "control_mode": 1},  # per-block:
        {"image": str(picture_file), "module": "none", "model": "depth_folder", "advanced_weighting": [0.5, 1, 0]},
        # a union model's unit names its control type: the tab's Union Type shows it and gives it back
        {"image": str(picture_file), "module": "none", "model": "depth_folder", "union_control_type": "Depth"},
        {"image": str(picture_file), "module": "shuffle", "model": "None", "resize_mode": "Just Resize"},
    )
    request = panel.defaults.replace(controlnet=units)
    panel.load(request)
    section = panel.control_units
    assert panel.controls.sections["controlnet"].on and len(section.units) == 6  # tabs added for units 3 to 5
    assert section.get_title(5) == "Unit 5"
    assert (
        section.units[4].union_control_type.value == "Depth" and section.units[0].union_control_type.value == "Unknown"
    )
    assert (
        section.units[3].advanced_weighting.value == "[0.5, 1, 0]" and section.units[0].advanced_weighting.value == ""
    )
    assert section.units[0].image is not None and section.units[0].path == picture_file
    assert section.units[1].model.value == "t2i_sketch [0123abcd]"  # a model not in the folder, with its hash
    assert section.units[1].enable.value and section.units[1].image is None
    with pytest.raises(ValueError, match="unit 1 is enabled but has no picture"):
        panel.controls.request()
    _upload(section.units[1].upload, "sketch.png", _png(_picture(64)))
    loaded = panel.controls.request().controlnet
    # what was loaded comes back; a slider left at -1 shows (and now gives) the module's default, as in the extension
    canny = dataclasses.replace(request.controlnet[0], processor_res=512, threshold_a=100, threshold_b=200)
    assert loaded[0] == canny
    assert loaded[1] == dataclasses.replace(request.controlnet[1], image=str(section.units[1].path))
    assert loaded[1].model_hash == "0123abcd" and loaded[2:] == request.controlnet[2:]
    panel.load(panel.defaults)
    assert not any(t.enable.value or t.image for t in section.units) and panel.controls.request().controlnet == ()


# -- preview map -------------------------------------------------------------------------------------------------


def test_preview_map_shows_the_units_detected_map(panel):
    tab = panel.control_units.units[0]
    assert tab.preview_map() is None and "no picture to preview" in tab.error.value
    picture = _picture(128)
    _upload(tab.upload, "photo.png", _png(picture))
    tab.module.value = "canny"
    tab.sliders["processor_res"].value = 128  # the picture's own side: no scaling before Canny
    tab.sliders["threshold_a"].value, tab.sliders["threshold_b"].value = 60, 140
    tab.preview_button.click()
    edges = cv2.Canny(np.asarray(picture), 60, 140)  # the reference: OpenCV's Canny on the picture itself
    assert tab.detected.shape == (128, 128, 3)
    for channel in range(3):
        np.testing.assert_array_equal(tab.detected[:, :, channel], edges)
    shown = np.asarray(Image.open(io.BytesIO(tab.map.value)))
    assert tab.map.layout.display == "" and np.array_equal(shown[:, :, 0], edges) and tab.error.value == ""

    tab.module.value = "invert"
    tab.preview_map()
    np.testing.assert_array_equal(tab.detected, 255 - np.asarray(picture))

    tab.module.value = "depth_midas"  # needs annotator weights: one line in the tab, no map
    assert tab.preview_map() is None
    assert "depth_midas" in html.unescape(tab.error.value) and "needs" in tab.error.value


# -- outpaint ----------------------------------------------------------------------------------------------------


def test_outpaint_control_has_four_directions_and_paints_the_grown_picture(panel, tmp_path):
    outpaint = panel.controls.widgets["outpaint"]
    assert isinstance(outpaint, OutpaintControl) and outpaint in panel.images.children[1].children[1].children
    assert panel.controls.widgets["outpaint_blend"] in outpaint.children
    assert panel.controls.widgets["outpaint_noise"] in outpaint.children
    assert outpaint not in panel.controls.more().children[0].children
    assert outpaint.value == "" and panel.controls.values()["outpaint"] == ""
    init = tmp_path / "init.png"
    Image.new("RGB", (16, 16), (10, 200, 30)).save(init)
    panel.images.use(Image.open(init), init)
    outpaint.sides["left"].value, outpaint.sides["top"].value = 8, 16
    panel.controls.widgets["outpaint_blend"].value = 4
    assert panel.controls.size.get() == (None, None)  # painted at the grown picture's own size
    request = panel.request()
    assert (request.outpaint, request.outpaint_blend, request.mode) == ("8,0,16,0", 4, "inpaint")
    panel.generate()
    assert panel.wait(120) and panel.last_error is None, panel.last_error
    assert panel.last_result.images[0].size == (16 + 8, 16 + 16)
    assert load_request(panel.last_result.paths[0]).outpaint == "8,0,16,0"

    panel.load(panel.defaults.replace(outpaint="32", init=str(init)))
    assert [outpaint.sides[s].value for s in ("left", "right", "top", "bottom")] == [32, 32, 32, 32]
    panel.controls.sections["img2img"].toggle.value = False
    assert panel.controls.values()["outpaint"] == ""  # the section off: no outpaint
