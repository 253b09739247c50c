"""The panel in a real kernel, driven the way a browser drives it: comm ``update`` and ``click`` messages in,
widget state read back from the comm messages the kernel sends (including those sent from the worker thread).

``JUPYTER_SD_TEST_PYTHON=/tmp/colab-venv/bin/python`` runs the same test under Colab's versions
(ipywidgets 7.7.1, ipykernel 6.17, IPython 7.34).
"""

from __future__ import annotations

import pytest

pytest.importorskip("jupyter_client")

from helpers.panel_helpers import WidgetKernel, kernel_python  # noqa: E402

from jupyter_sd.painting.store import load_request, read_parameters

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def kernel(tmp_path_factory, tiny_model_dir):
    workdir = tmp_path_factory.mktemp("kernel")
    notebook = workdir / "notebook.ipynb"
    notebook.write_text("{}")
    started = WidgetKernel(kernel_python(), workdir, env={"JPY_SESSION_NAME": str(notebook)})
    started.workdir, started.model = workdir, str(tiny_model_dir)
    try:
        started.execute("%load_ext jupyter_sd")
        yield started
    finally:
        started.shutdown()


def _status(kernel, root):
    return kernel.state(kernel.one("jupyter-sd-status", root))["value"]


def test_panel_generate_stop_queue_and_errors(kernel):
    outputs = kernel.execute(f"%paint panel --model {kernel.model} --steps 3")
    panel = kernel.displayed(outputs)
    streams_before = len(kernel.streams)
    find = lambda css: kernel.one(css, panel)  # noqa: E731
    steps, guidance, seed = find("jupyter-sd-steps"), find("jupyter-sd-guidance"), find("jupyter-sd-seed")
    assert kernel.state(steps)["value"] == 3 and (kernel.state(steps)["min"], kernel.state(steps)["max"]) == (1, 1000)
    assert kernel.state(guidance)["max"] == 30.0 and kernel.state(guidance)["step"] == 0.5

    # 1. move the controls, press Generate: preview frames, progress, a saved picture, a thumbnail
    kernel.set(find("jupyter-sd-prompt"), value="a red <b>circle</b>")
    kernel.set(steps, value=5)
    kernel.set(guidance, value=6.5)
    kernel.set(seed, value=42)
    image, bar, gallery = find("jupyter-sd-image"), find("jupyter-sd-progress"), find("jupyter-sd-gallery")
    kernel.click(find("jupyter-sd-generate"))
    kernel.wait_for(lambda: kernel.children(gallery), 60, "a thumbnail in the gallery")
    kernel.wait_for(lambda: "1 image" in _status(kernel, panel), 10, "the summary line")
    frames = [state for model, state in kernel.updates if model == image and state.get("format") == "jpeg"]
    assert frames and frames[0]["value"][:2] == b"\xff\xd8"  # a live JPEG preview came first…
    assert kernel.state(image)["format"] == "png" and kernel.state(image)["value"][:4] == b"\x89PNG"  # …then the PNG
    assert kernel.state(bar)["value"] == kernel.state(bar)["max"] == 5
    assert kernel.state(bar)["bar_style"] == "success"
    saved = sorted((kernel.workdir / "notebook-paint").glob("*.png"))  # beside the notebook, as %%paint saves
    assert len(saved) == 1 and saved[0].name.endswith("-42.png")
    recipe = load_request(saved[0])
    assert (recipe.steps, recipe.guidance, recipe.seed, recipe.prompt) == (5, 6.5, 42, "a red <b>circle</b>")
    assert "Steps: 5, Sampler: DPM++ 2M" in read_parameters(saved[0])
    assert "<b>" not in _status(kernel, panel)  # the prompt is shown as text

    # 2. the thumbnail shows the picture large with its recipe; "reuse" loads it back into the controls
    kernel.set(seed, value=-1)
    kernel.set(steps, value=9)
    thumb_button = kernel.find("jupyter-sd-thumb", gallery)[0]
    kernel.click(thumb_button)
    info = find("jupyter-sd-detail-info")
    kernel.wait_for(lambda: "Seed: 42" in kernel.state(info)["value"], 10, "the detail view")
    assert "a red &lt;b&gt;circle&lt;/b&gt;" in kernel.state(info)["value"]
    kernel.click(find("jupyter-sd-reuse"))
    kernel.wait_for(lambda: kernel.state(seed)["value"] == 42 and kernel.state(steps)["value"] == 5, 10, "reuse")

    # 3. a long run: the kernel stays free, Generate again queues, the queued job is removed, Stop keeps a picture
    kernel.execute(
        "import time as _t\n"
        "from jupyter_sd.painting import session as _p\n"
        f"_pipe = _p.get_engine().pipeline(_p.new_request(model={kernel.model!r}))\n"
        "_hook = _pipe.unet.register_forward_pre_hook(lambda *a: _t.sleep(0.05))"
    )
    kernel.set(steps, value=150)
    kernel.click(find("jupyter-sd-generate"))
    kernel.wait_for(lambda: 2 <= kernel.state(bar)["value"] < 150 and kernel.state(bar)["max"] == 150, 30, "steps")
    assert kernel.execute("print(6 * 7)")[0]["text"] == "42\n"  # another cell runs while the panel paints
    queue = find("jupyter-sd-queue")
    kernel.click(find("jupyter-sd-generate"))
    remove = kernel.wait_for(lambda: kernel.find("jupyter-sd-remove", queue), 10, "a queued job")
    kernel.click(remove[0])
    kernel.wait_for(
        lambda: len(kernel.children(queue)) == 1,
        10,
        lambda: (
            f"the queue to shrink: {[kernel.state(row).get('value') for row in kernel.children(queue)]}"
            f" {kernel.state(bar)} {_status(kernel, panel)}"
        ),
    )
    kernel.click(find("jupyter-sd-stop"))
    kernel.wait_for(lambda: "stopped at step" in _status(kernel, panel), 30, "the stop")
    kernel.wait_for(lambda: not kernel.children(queue), 10, "an empty queue")
    assert kernel.state(bar)["bar_style"] == "warning" and kernel.state(bar)["value"] < 150
    assert len(kernel.children(gallery)) == 2  # the stopped run's last x0 picture is kept
    assert kernel.state(find("jupyter-sd-stop"))["disabled"] is True
    kernel.execute("_hook.remove()")

    # 4. an error is one line in the panel, and the panel keeps working
    model = find("jupyter-sd-model")
    kernel.set(model, value="/no/such/model")
    kernel.click(find("jupyter-sd-generate"))
    error = find("jupyter-sd-error")
    kernel.wait_for(lambda: "model: no such file or folder" in kernel.state(error)["value"], 30, "the error line")
    kernel.set(model, value=kernel.model)
    kernel.set(steps, value=2)
    kernel.click(find("jupyter-sd-generate"))
    kernel.wait_for(lambda: len(kernel.children(gallery)) == 3, 30, "a picture after the error")
    assert kernel.state(error)["value"] == ""

    # the worker never printed: nothing went to a cell's output from the thread
    assert kernel.streams[streams_before:] == [s for s in kernel.streams[streams_before:] if s["text"] == "42\n"]


def test_cell_controls_paint_again(kernel):
    outputs = kernel.execute(f"%%paint --ui --model {kernel.model} --steps 2 --seed 7\na green fox")
    controls = kernel.displayed(outputs)
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the cell's own result, shown first
    steps = kernel.one("jupyter-sd-steps", controls)
    assert kernel.state(steps)["value"] == 2 and kernel.state(kernel.one("jupyter-sd-seed", controls))["value"] == 7
    kernel.set(steps, value=3)
    kernel.click(kernel.one("jupyter-sd-again", controls))
    kernel.wait_for(lambda: "1 image" in _status(kernel, controls), 60, "the new picture")
    image = kernel.one("jupyter-sd-image", controls)
    assert kernel.state(image)["value"][:4] == b"\x89PNG"
    latest = max((kernel.workdir / "notebook-paint").glob("*-7.png"))
    assert load_request(latest).steps == 3


def test_panel_stop_during_the_hires_pass(kernel):
    """Stop pressed while the hires pass runs: its last x0 is kept at the hires size, nothing is saved, and the
    next cell paints without loading anything."""
    folder = kernel.workdir / "notebook-paint"
    before = set(folder.glob("*.png")) if folder.is_dir() else set()
    outputs = kernel.execute(
        f"%paint panel --model {kernel.model} --steps 2 --seed 3 --hires 2 --hires-steps 150 --hires-denoise 0.99"
    )
    panel = kernel.displayed(outputs)
    find = lambda css: kernel.one(css, panel)  # noqa: E731
    assert kernel.state(find("jupyter-sd-hires-toggle"))["value"] is True  # the options used open their section
    kernel.set(find("jupyter-sd-prompt"), value="a red circle")
    kernel.execute(
        "import time as _t\n"
        "from jupyter_sd.painting import session as _p\n"
        f"_pipe = _p.get_engine().pipeline(_p.new_request(model={kernel.model!r}))\n"
        "_loads = _p.get_engine().load_count\n"
        "_hook = _pipe.unet.register_forward_pre_hook(lambda *a: _t.sleep(0.05))"
    )
    bar, gallery = find("jupyter-sd-progress"), find("jupyter-sd-gallery")
    tiles = len(kernel.children(gallery))
    kernel.click(find("jupyter-sd-generate"))
    kernel.wait_for(
        lambda: "hires 2/2 · step" in _status(kernel, panel) and kernel.state(bar)["value"] >= 2,
        60,
        lambda: f"the hires pass: {_status(kernel, panel)}",
    )
    assert kernel.state(bar)["max"] == 150  # the bar counts the hires pass's own steps
    kernel.click(find("jupyter-sd-stop"))
    kernel.wait_for(lambda: "stopped at step" in _status(kernel, panel), 30, "the stop")
    kernel.execute("_hook.remove()")
    kernel.wait_for(lambda: len(kernel.children(gallery)) == tiles + 1, 10, "the kept picture in the gallery")
    from io import BytesIO

    from PIL import Image

    shown = Image.open(BytesIO(kernel.state(find("jupyter-sd-image"))["value"]))
    assert shown.size == (32, 32)  # the hires pass's x0 (16×16 doubled), not the first pass's picture
    after = set(folder.glob("*.png")) if folder.is_dir() else set()
    assert after == before  # stopped, and --save-incomplete is off: nothing written
    outputs = kernel.execute(f"%%paint --model {kernel.model} --steps 2 --seed 4\na blue square")
    assert any("image/png" in o.get("data", {}) for o in outputs)
    assert kernel.execute("print(_p.get_engine().load_count - _loads)")[0]["text"] == "0\n"


def test_panel_upload_and_mask_painter_messages(kernel):
    """The upload and the mask painter driven by the messages a browser sends, in either widget API (8's tuple of
    file dicts, 7's metadata + data lists): the painted mask is what the inpainted picture's saved mask holds."""
    from io import BytesIO

    import numpy as np
    from PIL import Image, ImageDraw

    def png(image):
        buffer = BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()

    picture = Image.new("RGB", (16, 16), (20, 40, 200))
    ImageDraw.Draw(picture).ellipse((4, 4, 12, 12), fill=(220, 30, 30))
    mask = Image.new("L", (16, 16), 0)
    mask.paste(255, (4, 4, 12, 12))
    outputs = kernel.execute(f"%paint panel --model {kernel.model} --steps 2 --seed 9 --mask-blur 0")
    panel = kernel.displayed(outputs)
    find = lambda css: kernel.one(css, panel)  # noqa: E731
    kernel.set(find("jupyter-sd-prompt"), value="a yellow circle")
    kernel.set(find("jupyter-sd-img2img-toggle"), value=True)
    upload = find("jupyter-sd-upload")
    major = kernel.execute("import ipywidgets; print(ipywidgets.__version__)")[0]["text"].split(".")[0]
    data = png(picture)
    if major == "7":
        meta = {"name": "c.png", "type": "image/png", "size": len(data), "lastModified": 0}
        kernel.set_binary(upload, {"metadata": [meta], "data": [None], "_counter": 1}, {("data", 0): data})
    else:
        meta = {"name": "c.png", "type": "image/png", "size": len(data), "last_modified": 0}
        kernel.set_binary(upload, {"value": [meta]}, {("value", 0, "content"): data})
    about, mask_about = find("jupyter-sd-init-about"), find("jupyter-sd-mask-about")
    kernel.wait_for(lambda: "16×16" in kernel.state(about)["value"], 10, "the uploaded picture")
    kernel.set(find("jupyter-sd-inpaint-toggle"), value=True)
    painter = find("jupyter-sd-mask-painter")
    assert kernel.state(painter)["width"] == 16 and kernel.state(painter)["image"][:4] == b"\x89PNG"

    def painted(text):
        return lambda: text in kernel.state(mask_about)["value"]

    kernel.set_binary(painter, {}, {("mask",): png(mask)})  # a stroke, as the canvas sends it
    kernel.wait_for(painted("painted: 25%"), 10, "the stroke")
    kernel.custom(painter, {"action": "invert"})  # the toolbar's buttons
    kernel.wait_for(painted("painted: 75%"), 10, "the inverted mask")
    kernel.custom(painter, {"action": "undo"})
    kernel.wait_for(painted("painted: 25%"), 10, "undo")
    gallery = find("jupyter-sd-gallery")
    kernel.click(find("jupyter-sd-generate"))
    kernel.wait_for(lambda: kernel.children(gallery), 60, lambda: f"the picture: {_status(kernel, panel)}")
    saved = max((kernel.workdir / "notebook-paint").glob("*-9-mask.png"))
    assert np.array_equal(np.asarray(Image.open(saved).convert("L")), np.asarray(mask))
    recipe = load_request(saved.with_name(saved.name.replace("-mask", "")))
    assert recipe.mode == "inpaint" and recipe.mask == str(saved.resolve())


def test_panel_controlnet_unit_upload_and_preview_map(kernel):
    """A ControlNet unit driven by a browser's messages: its picture uploaded, canny chosen with its sliders, and
    *preview map* sends back the detected map, which is OpenCV's Canny of the picture (a 64-pixel picture at
    Processor Res 64 is not rescaled)."""
    from io import BytesIO

    import cv2
    import numpy as np
    from PIL import Image, ImageDraw

    picture = Image.new("RGB", (64, 64), (20, 40, 200))
    ImageDraw.Draw(picture).rectangle((12, 20, 40, 52), fill=(240, 220, 30))
    buffer = BytesIO()
    picture.save(buffer, format="PNG")
    data = buffer.getvalue()
    outputs = kernel.execute(f"%paint panel --model {kernel.model} --steps 2")
    panel = kernel.displayed(outputs)
    first = lambda css: kernel.find(css, panel)[0]  # noqa: E731  (unit 0's control of each kind)
    kernel.set(kernel.one("jupyter-sd-controlnet-toggle", panel), value=True)
    upload = first("jupyter-sd-cn-upload")
    if kernel.execute("import ipywidgets; print(ipywidgets.__version__)")[0]["text"].startswith("7"):
        meta = {"name": "p.png", "type": "image/png", "size": len(data), "lastModified": 0}
        kernel.set_binary(upload, {"metadata": [meta], "data": [None], "_counter": 1}, {("data", 0): data})
    else:
        meta = {"name": "p.png", "type": "image/png", "size": len(data), "last_modified": 0}
        kernel.set_binary(upload, {"value": [meta]}, {("value", 0, "content"): data})
    enable = first("jupyter-sd-cn-enable")
    kernel.wait_for(lambda: kernel.state(enable)["value"], 10, "the unit switched on by its upload")
    module = first("jupyter-sd-cn-module")
    kernel.set(module, index=list(kernel.state(module)["_options_labels"]).index("canny"))
    low = first("jupyter-sd-cn-threshold-a")
    kernel.wait_for(lambda: kernel.state(low)["description"] == "Low Threshold", 10, "canny's sliders")
    kernel.set(first("jupyter-sd-cn-processor-res"), value=64.0)
    kernel.set(low, value=40.0)
    kernel.set(first("jupyter-sd-cn-threshold-b"), value=90.0)
    shown = first("jupyter-sd-cn-map")
    kernel.click(first("jupyter-sd-cn-preview"))
    kernel.wait_for(lambda: kernel.state(shown).get("value", b"")[:4] == b"\x89PNG", 30, "the detected map")
    detected = np.asarray(Image.open(BytesIO(bytes(kernel.state(shown)["value"]))))
    np.testing.assert_array_equal(detected[:, :, 0], cv2.Canny(np.asarray(picture), 40, 90))
    units = kernel.execute("print(_.control_units.value[0]['module'], len(_.control_units.value))")
    assert units[0]["text"].split() == ["canny", "1"]
