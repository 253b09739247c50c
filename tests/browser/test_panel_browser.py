"""The panel in a real JupyterLab, in Debian's Chromium driven by Playwright.

Opens a notebook, runs ``%load_ext jupyter_sd`` and ``%paint panel``, types a prompt, moves the steps slider, presses
Generate and sees the preview and the final picture; then presses Stop on a long run. A screenshot is saved as
``artifacts/panel-browser.png``. Skips (saying why) without Chromium, JupyterLab or Playwright.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.browser import ARTIFACTS, CHROMIUM_ARGS, chromium, run_cell
from helpers.lab_server import notebook_json, running_lab

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def _notebook(model: Path) -> str:
    slow = (
        "import time\n"
        "from jupyter_sd.painting import session as painter\n"
        f"pipe = painter.get_engine().pipeline(painter.new_request(model={str(model)!r}))\n"
        "hook = pipe.unet.register_forward_pre_hook(lambda *a: time.sleep(0.05))  # a long run, to press Stop on"
    )
    return notebook_json("%load_ext jupyter_sd", slow, f"%paint panel --model {model} --steps 3")


@pytest.fixture()
def lab(tmp_path, tiny_model_dir):
    pytest.importorskip("jupyterlab", reason="pip install 'jupyterlab>=4,<5'")
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    (notebooks / "panel.ipynb").write_text(_notebook(tiny_model_dir))
    try:
        with running_lab(notebooks, tmp_path) as url:
            yield url, notebooks
    except RuntimeError as error:
        pytest.fail(str(error))


def test_panel_in_jupyterlab(lab):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (uses the system Chromium)")
    chromium_path = chromium()
    url, notebooks = lab
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 2000})
        try:
            _drive(page, url, notebooks)
        finally:
            page.screenshot(path=str(ARTIFACTS / "panel-browser.png"), full_page=True)
            browser.close()


def _drive(page, url: str, notebooks: Path) -> None:
    page.set_default_timeout(60_000)
    page.goto(f"{url}/lab/tree/panel.ipynb")
    page.locator(".jp-Notebook .jp-Cell").first.wait_for()
    page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first.wait_for()
    for index in range(3):
        run_cell(page, index)
    panel = page.locator(".jupyter-sd-panel")
    panel.wait_for()

    # type a prompt, move the steps slider with the keyboard (3 → 5), watch the picture element change
    panel.locator(".jupyter-sd-prompt textarea").fill("a red circle")
    steps = panel.locator(".jupyter-sd-steps")
    steps.locator(".noUi-handle, .ui-slider-handle").first.focus()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    page.wait_for_function(
        "() => document.querySelector('.jupyter-sd-steps .widget-readout').textContent.trim() === '5'"
    )
    # ipywidgets keeps one update per widget in flight and buffers the next: a click on another widget can overtake
    # the slider's last value, so let the buffered update reach the kernel before Generate
    page.wait_for_timeout(1000)
    page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first.wait_for()
    page.evaluate(
        """() => {
            window.jsdFrames = 0;
            const img = document.querySelector('.jupyter-sd-image img, img.jupyter-sd-image');
            new MutationObserver(() => window.jsdFrames++).observe(img, {attributes: true, attributeFilter: ['src']});
        }"""
    )
    panel.locator(".jupyter-sd-generate").click()
    page.wait_for_function("() => document.querySelector('.jupyter-sd-status').textContent.includes('1 image')")
    assert page.evaluate("window.jsdFrames") >= 2  # a preview frame, then the final picture
    panel.locator(".jupyter-sd-gallery img").first.wait_for()
    saved = sorted((notebooks / "panel-paint").glob("*.png"))
    assert len(saved) == 1
    from jupyter_sd.painting.store import load_request

    assert load_request(saved[0]).steps == 5

    # a long run: Stop keeps the last preview
    readout = steps.locator(".widget-readout")
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type("150")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "() => document.querySelector('.jupyter-sd-steps .widget-readout').textContent.trim() === '150'"
    )
    panel.locator(".jupyter-sd-generate").click()
    page.wait_for_function(
        "() => /step ([2-9]|\\d\\d+)\\/150/.test(document.querySelector('.jupyter-sd-status').textContent)"
    )
    panel.locator(".jupyter-sd-stop").click()
    page.wait_for_function("() => document.querySelector('.jupyter-sd-status').textContent.includes('stopped at step')")
    panel.locator(".jupyter-sd-gallery img").nth(1).wait_for()  # the stopped run's last preview, kept
    assert panel.locator(".jupyter-sd-gallery img").count() == 2

    # a thumbnail opens the picture large with its generation data
    panel.locator(".jupyter-sd-thumb").last.click()
    info = panel.locator(".jupyter-sd-detail-info")
    info.wait_for()
    page.wait_for_function(
        "() => document.querySelector('.jupyter-sd-detail-info').textContent.includes('Steps: 5, Sampler: DPM++ 2M')"
    )
    assert "a red circle" in info.text_content()
