"""Driving Debian's headless Chromium against a real JupyterLab: where it is, its flags, running a cell."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
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


def chromium() -> str:
    for path in (os.environ.get("JUPYTER_SD_CHROMIUM", ""), *CHROMIUM):
        if path and os.access(path, os.X_OK):
            return path
    found = shutil.which("chromium") or shutil.which("chromium-headless-shell")
    if not found:
        pytest.skip("no Chromium: apt-get install -y chromium (or chromium-headless-shell)")
    return found


def poll(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def accept_dialogs(page) -> None:
    """Accept a dialog JupyterLab may put up while the session starts ("Select Kernel": the notebook's own)."""
    accept = page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept")
    if accept.count():
        accept.first.click()
        page.locator(".jp-Dialog").first.wait_for(state="detached")


def run_cell(page, index: int) -> None:
    """Run one cell and wait until it has run (retrying the key press: the first may land before the editor)."""
    cell = page.locator(".jp-Notebook .jp-Cell").nth(index)
    prompt = cell.locator(".jp-InputPrompt")
    for _ in range(5):
        accept_dialogs(page)
        cell.locator(".jp-InputArea-editor").click()
        page.keyboard.press("Shift+Enter")
        if not poll(lambda: re.search(r"\[(\*|\d+)\]", prompt.first.text_content() or ""), 5):
            continue  # the key press was lost (the editor was not ready yet): press again
        if poll(lambda: re.search(r"\[\d+\]", prompt.first.text_content() or ""), 120):
            return
    raise AssertionError(f"cell {index} did not run")
