"""Take the README's screenshot: a %%paint cell in a real JupyterLab, painted by the bundled model.

    python tools/readme_screenshot.py [docs/screenshot.png]

Needs jupyterlab, playwright (Python) and Debian's chromium (or chromium-headless-shell).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_panel_browser import CHROMIUM_ARGS, _chromium, _free_port, _run_cell  # noqa: E402

CELLS = [
    "%load_ext jupyter_sd",
    "%%paint --steps 20 --seed 3 -n 4\na yellow triangle on a purple background\nNegative prompt: a green square",
]


def main(target: Path) -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cells = [
            {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": s} for s in CELLS
        ]
        notebook = {
            "cells": cells,
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
            "nbformat": 4,
            "nbformat_minor": 5,
        }
        (tmp / "shapes.ipynb").write_text(json.dumps(notebook))
        port = _free_port()
        env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp / "cfg"), "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "ws")}
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyter",
                "lab",
                "--allow-root",
                "--no-browser",
                "--ServerApp.token=",
                "--ServerApp.password=",
                f"--port={port}",
                f"--notebook-dir={tmp}",
                "--ServerApp.ip=127.0.0.1",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(200):
                try:
                    urllib.request.urlopen(f"{url}/api/status", timeout=2)
                    break
                except OSError:
                    time.sleep(0.3)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1000, "height": 560}, device_scale_factor=1.5)
                page.set_default_timeout(120_000)
                page.goto(f"{url}/lab/tree/shapes.ipynb")
                page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first.wait_for()
                page.locator("#jp-left-stack").first.wait_for()
                page.locator(
                    ".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current"
                ).first.click()  # fold the file browser
                for index in range(len(CELLS)):
                    _run_cell(page, index)
                page.locator(".jp-OutputArea-output img").last.wait_for()
                no_news = page.locator(".jp-Notification-Toast-Close, .jp-toast-buttonBar button:has-text('No')")
                if no_news.count():
                    no_news.first.click()
                time.sleep(1)
                page.screenshot(path=str(target))
                browser.close()
        finally:
            server.terminate()
            server.wait(20)
    print(target)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "screenshot.png")
