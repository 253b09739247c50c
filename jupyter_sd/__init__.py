"""jupyter_sd: Stable Diffusion inside the notebook.

``%load_ext jupyter_sd`` registers ``%%paint``. Importing the package is light: torch and diffusers load on the
first picture (JupyterLab imports the package just to find its lab extension).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

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
    "xyz",
]

from .batch import batch  # the function; the module stays importable as ``from jupyter_sd.batch import ...``
from .batch_result import BatchResult
from .downloads import download
from .painter import get_engine, paint
from .request import PaintRequest
from .result import PaintResult
from .store import load_request
from .xyz import xyz
from .xyz_result import PlotResult


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
