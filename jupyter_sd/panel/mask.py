"""The mask painter: draw the inpainting mask with the mouse over the init picture (an anywidget canvas).

The kernel side holds the truth: the picture, the mask (a greyscale PNG at the picture's size, white = repaint)
and the undo history. The browser side (``mask.js`` beside this file) draws strokes and sends the whole mask back
after each one; undo, clear and invert run here, so code and the toolbar's buttons do the same thing. anywidget
enables Colab's custom widget manager itself, so the canvas shows there as in JupyterLab, Notebook 7 and VS Code.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import anywidget
import traitlets
from PIL import Image, ImageChops

UNDO_DEPTH = 50
"""Mask states kept for undo."""


def _bytes_from_json(value: Any, widget: Any) -> bytes:
    # a binary trait arrives as a memoryview (ipywidgets 7 and 8 alike); bytes stay bytes
    return b"" if value is None else bytes(value)


_BYTES = {"from_json": _bytes_from_json}


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class MaskPainter(anywidget.AnyWidget):
    """Paint a mask over a picture: brush size, eraser, clear, invert and undo.

    Parameters
    ----------
    image
        The picture to paint over (the init image); None shows a hint until `set_image` is called.
    display_width
        How wide the canvas shows, in screen pixels (the mask itself is always at the picture's size).
    """

    _esm = Path(__file__).with_name("mask.js")
    _css = """
    .jupyter-sd-mask-toolbar { display: flex; gap: 4px; align-items: center; margin-bottom: 4px; flex-wrap: wrap; }
    .jupyter-sd-mask-button { padding: 2px 8px; cursor: pointer; }
    .jupyter-sd-mask-active { font-weight: bold; outline: 2px solid #1976d2; }
    .jupyter-sd-mask-stage { position: relative; user-select: none; }
    .jupyter-sd-mask-picture, .jupyter-sd-mask-canvas {
      position: absolute; left: 0; top: 0; width: 100%; height: 100%; image-rendering: pixelated;
    }
    .jupyter-sd-mask-canvas { opacity: 0.55; cursor: crosshair; touch-action: none; }
    .jupyter-sd-mask-empty { color: #777; font-style: italic; padding: 4px 0; }
    """

    image = traitlets.Bytes(b"", help="The picture painted over, as PNG bytes.").tag(sync=True, **_BYTES)
    width = traitlets.Int(0, help="The picture's width in pixels (the mask's too).").tag(sync=True)
    height = traitlets.Int(0, help="The picture's height in pixels.").tag(sync=True)
    mask = traitlets.Bytes(b"", help="The mask as a greyscale PNG, white = repaint; empty = nothing painted.").tag(
        sync=True, **_BYTES
    )
    brush = traitlets.Int(16, help="Brush diameter in picture pixels.").tag(sync=True)
    erase = traitlets.Bool(False, help="Whether strokes erase instead of paint.").tag(sync=True)
    display_width = traitlets.Int(384, help="Shown width in screen pixels.").tag(sync=True)

    def __init__(self, image: Image.Image | None = None, display_width: int = 384, **kwargs: Any) -> None:
        super().__init__(display_width=display_width, **kwargs)
        self.history: list[bytes] = []
        self._restoring = False
        self.add_class("jupyter-sd-mask-painter")
        self.observe(self._remember, names="mask")
        self.on_msg(self._on_action)
        if image is not None:
            self.set_image(image)

    # -- the picture ------------------------------------------------------------------------------------------

    def set_image(self, image: Image.Image | None) -> None:
        """Paint over a new picture (or none): the mask and its history start empty, the brush fits the size."""
        with self.hold_sync():
            self._restoring = True
            try:
                self.mask = b""
            finally:
                self._restoring = False
            self.history = []
            if image is None:
                self.width = self.height = 0
                self.image = b""
                return
            self.width, self.height = image.size
            self.image = _png(image.convert("RGB"))
            self.brush = max(1, round(min(image.size) / 12))

    # -- the mask ---------------------------------------------------------------------------------------------

    @property
    def painted(self) -> bool:
        """Whether any pixel of the mask is painted."""
        image = self.mask_image()
        return image is not None and image.getbbox() is not None

    def mask_image(self) -> Image.Image | None:
        """The mask at the picture's size, mode ``L`` (255 = repaint); None when nothing was ever painted."""
        if not self.mask or not self.width:
            return None
        with Image.open(io.BytesIO(self.mask)) as image:
            mask = image.convert("L")
        if mask.size != (self.width, self.height):  # a mask from an older picture: not this picture's
            return None
        return mask

    def set_mask(self, mask: Image.Image | None) -> None:
        """Replace the mask (undo brings the old one back); it is fitted to the picture's size."""
        if mask is None:
            self.mask = b""
            return
        mask = mask.convert("L")
        if mask.size != (self.width, self.height):
            mask = mask.resize((self.width, self.height), Image.Resampling.NEAREST)
        self.mask = _png(mask)

    def clear(self) -> None:
        """Nothing painted (undo brings the strokes back)."""
        if self.mask:
            self.mask = b""

    def invert(self) -> None:
        """Swap painted and unpainted areas."""
        if not self.width:
            return
        mask = self.mask_image() or Image.new("L", (self.width, self.height), 0)
        self.set_mask(ImageChops.invert(mask))

    def undo(self) -> bool:
        """Go back to the mask before the last stroke or change; False when there is nothing to undo."""
        if not self.history:
            return False
        self._restoring = True
        try:
            self.mask = self.history.pop()
        finally:
            self._restoring = False
        return True

    def _remember(self, change: dict[str, Any]) -> None:
        if not self._restoring:
            self.history = [*self.history, change["old"]][-UNDO_DEPTH:]

    def _on_action(self, widget: Any, content: Any, buffers: Any) -> None:
        action = content.get("action") if isinstance(content, dict) else None
        handler = {"undo": self.undo, "clear": self.clear, "invert": self.invert}.get(action)
        if handler is not None:
            handler()
