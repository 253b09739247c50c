"""jupyter_sd: Stable Diffusion inside the notebook.

``%load_ext jupyter_sd`` registers ``%%paint``. Importing the package is light: torch and diffusers load on the
first picture (JupyterLab imports the package just to find its lab extension).
"""

from __future__ import annotations

from typing import Any

from .version import __version__

__all__ = [
    "BatchResult",
    "Panel",
    "PaintRequest",
    "PaintResult",
    "PlotResult",
    "__version__",
    "batch",
    "download",
    "get_engine",
    "load_ipython_extension",
    "load_request",
    "paint",
    "plot",
    "upscale",
    "xyz",
]

from .api import batch, paint, plot, xyz
from .batches.result import BatchResult
from .downloads.download import download
from .extras.run import upscale
from .painting.session import get_engine
from .painting.store import load_request
from .plots.result import PlotResult
from .recipe import prompts as prompts  # documented: jupyter_sd.prompts.parse_attention and friends
from .recipe.request import PaintRequest
from .recipe.result import PaintResult


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%%paint`` and ``%paint`` in an IPython kernel."""
    from .magics import load_ipython_extension as register

    register(ipython)


def __getattr__(name: str) -> Any:
    if name == "Panel":  # ipywidgets is imported only when the panel is asked for
        from .panel import Panel

        return Panel
    raise AttributeError(f"module 'jupyter_sd' has no attribute {name!r}")


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "jupyter-sd"}]
