"""Take the README's screenshot: a %%paint cell in a real JupyterLab, painted by the bundled model.

    python tools/readme_screenshot.py [docs/screenshot.png]

Needs jupyterlab, playwright (Python) and Debian's chromium (or chromium-headless-shell).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from lab_server import notebook_json, running_lab  # noqa: E402
from test_panel_browser import CHROMIUM_ARGS, _chromium, _run_cell  # noqa: E402

CELLS = [
    "%load_ext jupyter_sd",
    "%%paint --steps 20 --seed 3 -n 4\na yellow triangle on a purple background\nNegative prompt: a green square",
]


def main(target: Path) -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        notebooks = tmp / "notebooks"
        notebooks.mkdir()
        (notebooks / "shapes.ipynb").write_text(notebook_json(*CELLS))
        with running_lab(notebooks, tmp) as url, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1000, "height": 560}, device_scale_factor=1.5)
            page.set_default_timeout(120_000)
            page.goto(f"{url}/lab/tree/shapes.ipynb")
            page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first.wait_for()
            # fold the file browser: the notebook is the picture
            page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current").first.click()
            for index in range(len(CELLS)):
                _run_cell(page, index)
            page.locator(".jp-OutputArea-output img").last.wait_for()
            time.sleep(1)
            page.screenshot(path=str(target))
            browser.close()
    print(target)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "screenshot.png")
