"""The mask painter in a real JupyterLab, in Debian's Chromium driven by Playwright.

Opens the panel on the bundled model, uploads a picture through the panel's upload button, switches inpaint on,
draws a stroke with the mouse across the middle of the canvas, erases its left part (undo, and erase again) and
presses Generate: the picture saved beside the notebook has its mask saved beside it (``NNNNN-SEED-mask.png``),
white along what is left of the stroke and black elsewhere, and its JSON chunk names that file. A screenshot is
saved as ``artifacts/mask-browser.png``. Skips (saying why) without Chromium, JupyterLab or Playwright.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers.browser import ARTIFACTS, CHROMIUM_ARGS, chromium, run_cell
from helpers.lab_server import notebook_json, running_lab

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SIDE = 64
"""The bundled model's size: the uploaded picture's and so the mask's."""
STROKE_Y = 0.5
STROKE_X = (0.2, 0.8)
"""The stroke, as fractions of the canvas: a horizontal line across the middle."""
ERASE_TO = 0.4
"""The eraser then takes the line's left part, up to here."""


@pytest.fixture()
def lab(tmp_path):
    pytest.importorskip("jupyterlab", reason="pip install 'jupyterlab>=4,<5'")
    from PIL import Image, ImageDraw

    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    picture = Image.new("RGB", (SIDE, SIDE), (20, 40, 200))
    ImageDraw.Draw(picture).ellipse((16, 16, 48, 48), fill=(220, 30, 30))
    upload = tmp_path / "circle.png"
    picture.save(upload)
    source = notebook_json("%load_ext jupyter_sd", "%paint panel --model tiny --steps 2 --seed 5 --sampler Euler")
    (notebooks / "mask.ipynb").write_text(source)
    try:
        with running_lab(notebooks, tmp_path) as url:
            yield url, notebooks, upload
    except RuntimeError as error:
        pytest.fail(str(error))


def test_mask_painter_stroke_is_the_saved_mask(lab):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (uses the system Chromium)")
    chromium_path = chromium()
    url, notebooks, upload = lab
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 2200})
        try:
            _drive(page, url, upload)
        finally:
            page.screenshot(path=str(ARTIFACTS / "mask-browser.png"), full_page=True)
            browser.close()
    _check_saved(notebooks / "mask-paint")


def _drive(page, url: str, upload: Path) -> None:
    page.set_default_timeout(60_000)
    page.goto(f"{url}/lab/tree/mask.ipynb")
    page.locator(".jp-Notebook .jp-Cell").first.wait_for()
    page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first.wait_for()
    for index in range(2):
        run_cell(page, index)
    panel = page.locator(".jupyter-sd-panel")
    panel.wait_for()
    panel.locator(".jupyter-sd-prompt textarea").fill("a yellow circle on a blue background")

    # img2img: upload the picture with the panel's own upload button
    panel.locator(".jupyter-sd-img2img-toggle").click()
    with page.expect_file_chooser() as chooser:  # the widget's file input lives outside the page's DOM
        panel.locator(".jupyter-sd-upload").click()
    chooser.value.set_files(str(upload))
    page.wait_for_function(
        "() => (document.querySelector('.jupyter-sd-init-about')?.textContent || '').includes('64×64')"
    )
    # inpaint: the painter shows the picture; draw one stroke across the middle
    panel.locator(".jupyter-sd-inpaint-toggle").click()
    canvas = panel.locator(".jupyter-sd-mask-canvas")
    canvas.wait_for(state="visible")
    page.wait_for_function("() => document.querySelector('.jupyter-sd-mask-canvas').width === 64")
    box = canvas.bounding_box()

    def stroke(x0: float, x1: float) -> None:
        y = box["y"] + box["height"] * STROKE_Y
        page.mouse.move(box["x"] + box["width"] * x0, y)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * x1, y, steps=12)
        page.mouse.up()

    def painted_share(other_than: str | None) -> str:
        """The kernel's own count of the mask, once it differs from `other_than` (the mask reached it)."""
        page.wait_for_function(
            """(old) => {
                const text = document.querySelector('.jupyter-sd-mask-about')?.textContent || '';
                return text.includes('% of the picture') && text !== old;
            }""",
            arg=other_than,
        )
        return panel.locator(".jupyter-sd-mask-about").text_content()

    stroke(*STROKE_X)  # paint the whole line
    whole = painted_share(None)
    panel.locator(".jupyter-sd-mask-erase").click()
    stroke(STROKE_X[0] - 0.05, ERASE_TO)  # erase its left part
    erased = painted_share(whole)
    panel.locator(".jupyter-sd-mask-undo").click()  # the kernel undoes, the canvas redraws its mask
    assert painted_share(erased) == whole
    stroke(STROKE_X[0] - 0.05, ERASE_TO)  # the same erase on the redrawn canvas gives the same mask
    assert painted_share(whole) == erased
    panel.locator(".jupyter-sd-generate").click()
    page.wait_for_function(
        "() => /1 image|⚠/.test(document.querySelector('.jupyter-sd-panel').textContent)", timeout=120_000
    )
    error = panel.locator(".jupyter-sd-error").text_content()
    assert not error.strip(), error
    panel.locator(".jupyter-sd-gallery img").first.wait_for()


def _check_saved(folder: Path) -> None:
    from PIL import Image

    from jupyter_sd.painting.store import REQUEST_KEY, load_request

    pictures = sorted(p for p in folder.glob("*.png") if re.fullmatch(r"\d{5}-\d+", p.stem))
    assert len(pictures) == 1, sorted(folder.iterdir())
    picture = pictures[0]
    mask_file = picture.with_name(f"{picture.stem}-mask.png")
    assert mask_file.is_file()
    with Image.open(mask_file) as image:
        mask = image.convert("L")
    assert mask.size == (SIDE, SIDE)
    row = round(SIDE * STROKE_Y)
    start, end = round(SIDE * ERASE_TO), round(SIDE * STROKE_X[1])
    stroke = [mask.getpixel((x, row)) for x in range(start + 4, end - 2)]
    assert min(stroke) >= 200, stroke  # white along the stroke's part left after the eraser
    erased = [mask.getpixel((x, row)) for x in range(round(SIDE * STROKE_X[0]) - 2, start - 4)]
    assert max(erased) == 0, erased  # and black where the eraser went
    for x, y in ((2, 2), (SIDE - 3, 2), (SIDE // 2, 4), (SIDE // 2, SIDE - 5), (2, row), (SIDE - 3, row)):
        assert mask.getpixel((x, y)) == 0, (x, y)  # black away from it
    with Image.open(picture) as image:
        payload = json.loads(image.text[REQUEST_KEY])
    assert payload["mask"]["path"] == str(mask_file.resolve())
    assert load_request(picture).mask == str(mask_file.resolve())  # the recipe re-runs with the saved mask
