"""The panel in a real JupyterLab, in Debian's Chromium driven by Playwright.

Opens a notebook, runs ``%load_ext jupyter_sd`` and ``%paint panel``, types a prompt, moves the steps slider, presses
Generate and sees the preview and the final picture; then presses Stop on a long run. A screenshot is saved as
``artifacts/panel-browser.png``. Skips (saying why) without Chromium, JupyterLab or Playwright.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest
from lab_server import notebook_json, running_lab

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-headless-shell")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium() -> str:
    for path in (os.environ.get("JUPYTER_SD_CHROMIUM", ""), *CHROMIUM):
        if path and os.access(path, os.X_OK):
            return path
    found = shutil.which("chromium") or shutil.which("chromium-headless-shell")
    if not found:
        pytest.skip("no Chromium: apt-get install -y chromium (or chromium-headless-shell)")
    return found


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


def _poll(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def _accept_dialogs(page) -> None:
    """Accept a dialog JupyterLab may put up while the session starts ("Select Kernel": the notebook's own)."""
    accept = page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept")
    if accept.count():
        accept.first.click()
        page.locator(".jp-Dialog").first.wait_for(state="detached")


def _run_cell(page, index: int) -> None:
    """Run one cell and wait until it has run (retrying the key press: the first may land before the editor)."""
    cell = page.locator(".jp-Notebook .jp-Cell").nth(index)
    prompt = cell.locator(".jp-InputPrompt")
    for _ in range(5):
        _accept_dialogs(page)
        cell.locator(".jp-InputArea-editor").click()
        page.keyboard.press("Shift+Enter")
        if not _poll(lambda: re.search(r"\[(\*|\d+)\]", prompt.first.text_content() or ""), 5):
            continue  # the key press was lost (the editor was not ready yet): press again
        if _poll(lambda: re.search(r"\[\d+\]", prompt.first.text_content() or ""), 120):
            return
    raise AssertionError(f"cell {index} did not run")


def test_panel_in_jupyterlab(lab):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (uses the system Chromium)")
    chromium = _chromium()
    url, notebooks = lab
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
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
        _run_cell(page, index)
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
