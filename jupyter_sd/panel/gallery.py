"""The panel's gallery strip: finished pictures, newest first; a click shows one large with its recipe."""

from __future__ import annotations

import html
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import ipywidgets as widgets
from PIL import Image

from ..painting.store import load_request
from ..recipe.request import PaintRequest
from ..recipe.result import PaintResult, png_bytes
from .controls import set_tooltip
from .upscale_bar import UpscaleBar

THUMB_SIDE = 96
MAX_ITEMS = 32
"""Thumbnails kept in the strip; older ones drop out (their files stay on disk)."""


@dataclass
class Item:
    """One finished picture: the image, its A1111 infotext, its file (if saved) and its own recipe."""

    number: int
    image: Image.Image
    infotext: str
    path: Path | None
    request: PaintRequest

    def recipe(self) -> PaintRequest:
        """The recipe that paints this picture again: from its file's metadata when saved, else from memory."""
        if self.path is not None and self.path.is_file():
            try:
                return load_request(self.path)
            except (OSError, ValueError):
                pass
        return self.request


def _thumbnail(image: Image.Image) -> bytes:
    thumb = image.copy()
    thumb.thumbnail((THUMB_SIDE, THUMB_SIDE))
    return png_bytes(thumb)


def info_html(item: Item) -> str:
    """The picture's generation data as escaped, preformatted text, with its file."""
    where = f"<br><small>{html.escape(str(item.path))}</small>" if item.path else "<br><small>not saved</small>"
    return f'<pre style="white-space:pre-wrap;margin:0">{html.escape(item.infotext)}</pre>{where}'


SEND_MODES = ("img2img", "inpaint")
"""Where a picture can be sent: start an img2img run from it, or paint a mask over it."""


def _send_button(mode: str, compact: bool) -> widgets.Button:
    button = widgets.Button(
        description="" if compact else f"send to {mode}",
        icon="image" if mode == "img2img" else "paint-brush",
        layout=widgets.Layout(width=f"{THUMB_SIDE // 2}px" if compact else "auto", padding="0"),
    )
    button.add_class(f"jupyter-sd-send-{mode}")
    set_tooltip(button, f"Send this picture to {mode}" + (" (paint a mask over it)" if mode == "inpaint" else ""))
    return button


class Gallery(widgets.VBox):
    """A strip of thumbnails (newest first) over a detail view with the picture, its recipe and "reuse".

    Parameters
    ----------
    on_reuse
        Called with the picture's recipe when "reuse" is pressed (the panel loads it into its controls).
    on_send
        Called with the item and ``"img2img"`` or ``"inpaint"`` when a *send to* button is pressed (on a
        thumbnail or in the detail view).
    """

    def __init__(
        self,
        on_reuse: Callable[[PaintRequest], None] | None = None,
        on_send: Callable[[Item, str], None] | None = None,
    ) -> None:
        self.on_reuse = on_reuse
        self.on_send = on_send
        self.items: list[Item] = []
        self.selected: Item | None = None
        self._count = 0
        self._lock = threading.Lock()
        self._tiles: dict[int, widgets.Widget] = {}
        self.strip = widgets.HBox(layout=widgets.Layout(overflow="auto", width="100%"))
        self.strip.add_class("jupyter-sd-gallery")
        self.image = widgets.Image(format="png", width="384")
        self.image.add_class("jupyter-sd-detail-image")
        self.info = widgets.HTML(value="")
        self.info.add_class("jupyter-sd-detail-info")
        self.reuse = widgets.Button(description="reuse", icon="reply", layout=widgets.Layout(width="auto"))
        self.reuse.add_class("jupyter-sd-reuse")
        set_tooltip(self.reuse, "Load this picture's settings (and its seed) into the controls")
        self.close_button = widgets.Button(description="close", icon="times", layout=widgets.Layout(width="auto"))
        self.reuse.on_click(lambda _: self._reuse())
        self.close_button.on_click(lambda _: self.hide())
        self.send_buttons = {mode: _send_button(mode, compact=False) for mode in SEND_MODES}
        for mode, send in self.send_buttons.items():
            send.on_click(lambda _, mode=mode: self.selected is not None and self.send(self.selected, mode))
        actions = widgets.HBox([self.reuse, *self.send_buttons.values(), self.close_button])
        self.upscaling = UpscaleBar()
        self.upscaler, self.upscale_by, self.upscale_button = (
            self.upscaling.upscaler,
            self.upscaling.factor,
            self.upscaling.button,
        )
        self.upscale_button.on_click(lambda _: self.selected is not None and self.upscale(self.selected))
        self.detail = widgets.HBox(
            [self.image, widgets.VBox([self.info, actions, self.upscaling])],
            layout=widgets.Layout(display="none"),
        )
        self.detail.add_class("jupyter-sd-detail")
        self.download_all = widgets.Button(description="download all", icon="download")
        self.download_all.layout.width = "auto"
        self.download_all.add_class("jupyter-sd-download-all")
        set_tooltip(self.download_all, "A zip of every picture in this folder (metadata intact), to download")
        self.download_all.on_click(lambda _: self._download_all())
        self.download_output = widgets.Output()
        super().__init__([self.strip, widgets.HBox([self.download_all, self.download_output]), self.detail])

    def add(self, result: PaintResult) -> list[Item]:
        """Add a result's pictures at the front of the strip."""
        new = []
        for index, (image, seed) in enumerate(zip(result.images, result.seeds)):
            self._count += 1
            path = result.paths[index] if index < len(result.paths) else None
            new.append(Item(self._count, image, result.infotext(index), path, result.request.replace(seed=seed)))
        return self._insert(new)

    def upscale(self, item: Item) -> Item | None:
        """Upscale a picture as the Extras tab does (saved beside it when it has a file) and show the result."""
        result = self.upscaling.run(item.image, item.path)
        if result is None:
            return None
        self._count += 1
        path = result.paths[0] if result.paths else None
        new = Item(self._count, result.images[0], f"{item.infotext}\n{result.infotext(0)}", path, item.request)
        self._insert([new])
        self.show(new)
        return new

    def _insert(self, new: list[Item]) -> list[Item]:
        with self._lock:
            for item in new:
                self._tiles[item.number] = self._tile(item)
            self.items = (new[::-1] + self.items)[:MAX_ITEMS]
            for number in set(self._tiles) - {item.number for item in self.items}:
                _close_all(self._tiles.pop(number))
            self.strip.children = tuple(self._tiles[item.number] for item in self.items)
        return new

    def _tile(self, item: Item) -> widgets.Widget:
        thumb = widgets.Image(value=_thumbnail(item.image), format="png", width=str(THUMB_SIDE))
        button = widgets.Button(description=f"#{item.number}", layout=widgets.Layout(width=f"{THUMB_SIDE}px"))
        button.add_class("jupyter-sd-thumb")
        set_tooltip(button, item.infotext.splitlines()[0][:200] if item.infotext else "")
        button.on_click(lambda _: self.show(item))
        sends = []
        for mode in SEND_MODES:
            send = _send_button(mode, compact=True)
            send.on_click(lambda _, mode=mode: self.send(item, mode))
            sends.append(send)
        return widgets.VBox(
            [thumb, button, widgets.HBox(sends)], layout=widgets.Layout(margin="2px", min_width=f"{THUMB_SIDE + 4}px")
        )

    def show(self, item: Item) -> None:
        """Show a picture large, with its generation data and file."""
        self.selected = item
        self.upscaling.refresh()  # models added to ESRGAN/ since
        with self.image.hold_sync():
            self.image.value = png_bytes(item.image)
        self.info.value = info_html(item)
        self.detail.layout.display = ""

    def hide(self) -> None:
        """Close the detail view."""
        self.selected = None
        self.detail.layout.display = "none"

    def send(self, item: Item, mode: str) -> None:
        """Send a picture to img2img or inpaint (the panel makes it the init picture)."""
        if self.on_send is not None:
            self.on_send(item, mode)

    def _reuse(self) -> None:
        if self.selected is not None and self.on_reuse is not None:
            self.on_reuse(self.selected.recipe())

    def _download_all(self) -> None:
        """Zip the folder of the newest saved picture and offer it (``%paint zip`` for the panel)."""
        from ..library.drive import offer_download, zip_pictures

        folder = next((item.path.parent for item in self.items if item.path is not None), None)
        with self.download_output:
            self.download_output.clear_output()
            if folder is None:
                print("nothing saved yet")
                return
            try:
                offer_download(zip_pictures(folder))
            except (ValueError, OSError) as error:
                print(error)


def _close_all(widget: widgets.Widget) -> None:
    for child in getattr(widget, "children", ()):
        _close_all(child)
    widget.close()
