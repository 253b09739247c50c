"""A ControlNet tab's *Effective Region Mask* upload, as sd-webui-controlnet offers one per unit.

The mask (white: where the unit applies) is kept once in the output folder as ``control-mask-HASH.png``, as the
unit's picture is, so the request and its recipe name a real file (the unit's ``effective_region_mask``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import ipywidgets as widgets
from PIL import Image

from ..painting.store import save_input
from ..recipe.result import png_bytes
from .controls import css_class, set_tooltip
from .images import last_uploaded_picture, loaded_picture

THUMB = 64


class RegionMask(widgets.HBox):
    """Upload, show and clear a unit's effective region mask.

    Parameters
    ----------
    index
        The unit's number, for its messages.
    folder
        Returns the output folder, where an uploaded mask is kept.
    say
        Shows a one-line error in the unit's tab.
    """

    def __init__(self, index: int, folder: Callable[[], Path], say: Callable[[str], None]) -> None:
        self.index, self.folder, self.say = index, folder, say
        self.path: Path | None = None
        self.upload = widgets.FileUpload(accept="image/*", multiple=False, description="region mask")
        self.upload.add_class(css_class("cn-mask-upload"))
        set_tooltip(self.upload, "Effective Region Mask: the unit applies where the mask is white")
        self.clear = widgets.Button(description="", icon="times", layout=widgets.Layout(width="3em"))
        self.clear.add_class(css_class("cn-mask-clear"))
        set_tooltip(self.clear, "Drop the region mask: the unit applies everywhere")
        self.thumb = widgets.Image(format="png", width=str(THUMB), layout=widgets.Layout(display="none"))
        self.thumb.add_class(css_class("cn-mask"))
        super().__init__([self.upload, self.clear, self.thumb])
        self.upload.observe(self._uploaded, names="value")
        self.clear.on_click(lambda _: self.use(None))

    def use(self, image: Image.Image | None, path: Path | None = None) -> None:
        """Make `image` the mask (kept as ``control-mask-HASH.png`` unless `path` is its file); None drops it."""
        if image is not None and path is None:
            try:
                path = Path(save_input(image, self.folder(), "control-mask")["path"])
            except OSError as error:
                self.say(f"controlnet unit {self.index}: could not keep the mask in {self.folder()} ({error})")
                return
        self.path = path if image is not None else None
        if image is None:
            self.thumb.layout.display = "none"
            return
        thumb = image.convert("L")
        thumb.thumbnail((THUMB, THUMB))
        with self.thumb.hold_sync():
            self.thumb.value, self.thumb.layout.display = png_bytes(thumb), ""

    def load(self, mask: Any) -> None:
        """A loaded unit's mask: a file path (shown when it can be read), a picture, or None."""
        try:
            self.use(*loaded_picture(mask))
        except OSError:
            self.use(None)
            self.say(f"controlnet unit {self.index}: cannot read its region mask {str(mask)!r}; upload it again")

    def _uploaded(self, change: Any = None) -> None:
        try:
            image = last_uploaded_picture(self.upload)
        except ValueError as error:
            self.say(str(error).replace("init:", f"controlnet unit {self.index} mask:", 1))
            return
        if image is not None:
            self.use(image)
