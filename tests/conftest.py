"""Shared fixtures: a tiny random pipeline saved as an ordinary diffusers folder, and a clean kernel state."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the tests' shared code: ``from helpers.pixels import ...``

from helpers.tiny_pipeline import make_tiny_pipeline  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random SD pipeline (16×16 images, 8×8×4 latents) saved to a folder, loaded like a user's model."""
    return make_tiny_pipeline(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="module")
def shell():
    """The process's one IPython test shell, with the extension loaded (magic tests run cells in it)."""
    from helpers.ipython_shell import start_shell

    return start_shell()


@pytest.fixture()
def offline(monkeypatch):
    """Nothing may reach the hub: huggingface_hub reads HF_HUB_OFFLINE at import, so patch its constant too."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture()
def fresh_settings():
    """Reset the kernel's defaults around a test."""
    from jupyter_sd.painting import session as painter

    saved = dict(painter.settings)
    painter.settings.clear()
    yield painter.settings
    painter.settings.clear()
    painter.settings.update(saved)


@pytest.fixture()
def esrgan_models(tmp_path) -> Path:
    """A models folder with an empty ``ESRGAN/`` for the test's upscaler files, the kernel's for the test's length."""
    from jupyter_sd import library

    root = tmp_path / "models"
    (root / "ESRGAN").mkdir(parents=True)
    before = library.models_dir()
    library.set_models_dir(root)
    yield root
    library.set_models_dir(before)


@pytest.fixture(autouse=True)
def _no_background_load_left():
    """Wait for a kernel's background warm-up (imports, then the default model) before and after every test.

    The warm-up thread loads the default model with accelerate's empty-weights context, which patches
    ``nn.Module.register_parameter`` process-wide while it runs: a test building a model meanwhile gets meta tensors.
    """
    warmup = sys.modules.get("jupyter_sd.engine.warmup")
    if warmup is not None:
        warmup.wait()
    yield
    warmup = sys.modules.get("jupyter_sd.engine.warmup")
    if warmup is not None:
        warmup.wait()
