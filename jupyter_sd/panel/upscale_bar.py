"""The *upscale* controls of the panel's gallery and of ``%%paint --ui``: upscaler, factor, button (Extras tab)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ipywidgets as widgets

from .controls import set_tooltip


def upscaler_names() -> list[str]:
    """The Extras upscalers on offer: the models in the folder's ``ESRGAN/`` first, then Lanczos and Nearest."""
    from .. import library

    try:
        models = [model.name for model in library.list_models("upscaler")]
    except (OSError, ValueError):
        models = []
    return [*models, "Lanczos", "Nearest"]


class UpscaleBar(widgets.HBox):
    """An upscaler menu (read again from the models folder when shown), a factor and an *upscale* button."""

    def __init__(self) -> None:
        self.upscaler = widgets.Dropdown(options=upscaler_names(), layout=widgets.Layout(width="160px"))
        self.factor = widgets.BoundedFloatText(value=2.0, min=0.05, max=8.0, step=0.05, layout={"width": "64px"})
        self.button = widgets.Button(description="upscale", icon="expand", layout=widgets.Layout(width="auto"))
        self.button.add_class("jupyter-sd-upscale")
        set_tooltip(self.button, "Upscale this picture as A1111's Extras tab (saved beside it)")
        self.output = widgets.Output()
        super().__init__([self.upscaler, widgets.Label("×"), self.factor, self.button, self.output])

    def refresh(self) -> None:
        """Offer the upscalers in the folder now (models may have been added since)."""
        names = upscaler_names()
        if tuple(names) != tuple(self.upscaler.options):
            value = self.upscaler.value
            self.upscaler.options = names
            self.upscaler.value = value if value in names else names[0]

    def run(self, image: Any, path: Path | None) -> Any:
        """Upscale `image` (from its file `path` when saved, then saved beside it); None after a printed refusal."""
        from ..extras.run import upscale

        saved = path is not None and path.is_file()
        with self.output:
            self.output.clear_output()
            try:
                return upscale(
                    str(path) if saved else image,
                    self.upscaler.value,
                    self.factor.value,
                    outdir=str(path.parent) if saved else None,
                    save=saved,
                )
            except (ValueError, MemoryError, OSError) as error:
                print(error)
                return None
