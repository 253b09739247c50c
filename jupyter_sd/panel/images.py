"""The panel's img2img / inpaint section: the init picture (upload, last picture, a gallery item), its mask, outpaint.

An uploaded picture (or an unsaved gallery one) is written once into the output folder as ``init-HASH.png``
(`store.save_input`, named by content), so the *Init image* box and every recipe name a real file. The painted
mask goes to the request as an object (``mask = <object>``, the picture handed to `painter.render`); after each
picture is saved, the mask is written beside it as ``NNNNN-SEED-mask.png`` and recorded in its JSON chunk
(`store.attach_input`), so `load_request` paints it again. Nothing in the notebook's namespace is touched.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ipywidgets as widgets
from PIL import Image, UnidentifiedImageError

from ..painting.inputs import OBJECT
from ..painting.store import save_input
from ..recipe.result import png_bytes
from .controls import Controls, set_tooltip
from .mask import MaskPainter
from .outpaint_control import OutpaintControl

THUMB_WIDTH = "128"


def uploaded_files(value: Any) -> list[tuple[str, bytes]]:
    """(name, content) of each file a `FileUpload` holds.

    ipywidgets 8 keeps a tuple of dicts (``name``, ``content`` as a memoryview, …); ipywidgets 7 a dict from file
    name to ``{"metadata": {...}, "content": bytes}``.
    """
    if isinstance(value, dict):
        return [(str(name), bytes(entry["content"])) for name, entry in value.items()]
    return [(str(entry.get("name", "upload")), bytes(entry["content"])) for entry in value or ()]


def read_picture(data: bytes, name: str) -> Image.Image:
    """Decode an uploaded picture.

    Raises
    ------
    ValueError
        If the bytes are not a picture PIL can read, naming the file.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return image.copy()
    except (UnidentifiedImageError, OSError):
        kind = "PNG, JPEG, WebP"
        msg = f"init: cannot read the uploaded file '{name}' as a picture (allowed: {kind}; got {len(data)} bytes)"
        raise ValueError(msg) from None


def last_uploaded_picture(upload: widgets.FileUpload) -> Image.Image | None:
    """The picture of the last file `upload` holds, or None when it holds none.

    Raises
    ------
    ValueError
        If that file is not a picture (`read_picture`).
    """
    files = uploaded_files(upload.value)
    if not files:
        return None
    name, data = files[-1]
    return read_picture(data, name)


def loaded_picture(value: Any) -> tuple[Image.Image | None, Path | None]:
    """A loaded recipe's picture and its file: from a path, a picture or an array; (None, None) for none.

    Raises
    ------
    OSError
        If the path cannot be read as a picture.
    """
    if value is None or value == "":
        return None, None
    if not isinstance(value, (str, Path)):
        import numpy as np

        return (value if isinstance(value, Image.Image) else Image.fromarray(np.asarray(value))), None
    path = Path(value).expanduser()
    try:
        with Image.open(path) as opened:
            opened.load()
            return opened.copy(), path
    except UnidentifiedImageError as error:
        raise OSError(str(error)) from error


class ImageInput(widgets.VBox):
    """Upload or pick the init picture, set strength and resize mode, and paint the inpainting mask.

    Parameters
    ----------
    controls
        The panel's controls: this section shows their img2img and inpaint fields and switches.
    folder
        Returns the output folder of the request the controls describe (where an upload is kept).
    last_picture
        Returns the panel's last picture and its file (None for the file when it was not saved), or None.
    on_error
        Shows a one-line error in the panel.
    """

    def __init__(
        self,
        controls: Controls,
        folder: Callable[[], Path],
        last_picture: Callable[[], tuple[Image.Image, Path | None] | None],
        on_error: Callable[[str], None],
    ) -> None:
        self.controls = controls
        self.folder = folder
        self.last_picture = last_picture
        self.on_error = on_error
        self.picture: Image.Image | None = None
        self._loading = False
        self.upload = widgets.FileUpload(accept="image/*", multiple=False, description="upload")
        self.upload.add_class("jupyter-sd-upload")
        set_tooltip(self.upload, "Upload the picture to start from (PNG, JPEG, WebP)")
        self.use_last = widgets.Button(description="use last picture", icon="history")
        self.use_last.add_class("jupyter-sd-use-last")
        set_tooltip(self.use_last, "Start from the panel's last picture")
        self.forget = widgets.Button(description="clear", icon="times", layout=widgets.Layout(width="auto"))
        self.forget.add_class("jupyter-sd-init-clear")
        set_tooltip(self.forget, "No init picture")
        self.thumb = widgets.Image(format="png", width=THUMB_WIDTH, layout=widgets.Layout(display="none"))
        self.thumb.add_class("jupyter-sd-init-image")
        self.about = widgets.HTML(value="")
        self.about.add_class("jupyter-sd-init-about")
        self.painter = MaskPainter()
        self.mask_about = widgets.HTML(value="")
        self.mask_about.add_class("jupyter-sd-mask-about")
        w = controls.widgets
        img2img = [w[n] for n in controls.section_fields("img2img") if not n.startswith("outpaint")]
        if "outpaint" in w:  # the four directions replace the generated text box (blend and noise go with them)
            text, extras = w["outpaint"], tuple(w[n] for n in ("outpaint_blend", "outpaint_noise") if n in w)
            w["outpaint"] = OutpaintControl(text.value, extras)
            text.close()
            img2img.append(w["outpaint"])
            for box in w["outpaint"].sides.values():
                box.observe(self._outpaint_changed, names="value")
        inpaint = controls.sections["inpaint"]
        inpaint.box.children = (self.painter, self.mask_about, *[w[n] for n in controls.section_fields("inpaint")])
        super().__init__(
            [
                widgets.HBox([self.upload, self.use_last, self.forget]),
                widgets.HBox([self.thumb, widgets.VBox([self.about, *img2img], layout=widgets.Layout(flex="1"))]),
                inpaint.toggle,
                inpaint.box,
            ]
        )
        self.upload.observe(self._uploaded, names="value")
        self.painter.observe(self._mask_changed, names="mask")
        self.use_last.on_click(lambda _: self.use_last_picture())
        self.forget.on_click(lambda _: self.use(None))
        if "init" in w:
            w["init"].observe(self._typed, names="value")
            if w["init"].value:
                self._typed()

    # -- choosing the picture ---------------------------------------------------------------------------------

    def use(self, image: Image.Image | None, path: Path | None = None, inpaint: bool | None = None) -> None:
        """Start from `image` (its file `path`, else it is kept as ``init-HASH.png``); None for no init picture.

        The section switches on, the size follows the picture when it is a valid size, and the mask painter
        starts empty over it; `inpaint` switches the mask painter on (True) or off (False).
        """
        sections = self.controls.sections
        if image is not None and path is None:
            try:
                path = Path(save_input(image, self.folder(), "init")["path"])
            except OSError as error:  # e.g. a read-only output folder: say so, change nothing
                self.on_error(f"init: could not keep the picture in {self.folder()} ({error})")
                return
        self._show(image, path)
        if "init" in self.controls.widgets:
            self._loading = True
            try:
                self.controls.widgets["init"].value = str(path) if path is not None else ""
            finally:
                self._loading = False
        if image is not None:
            sections["img2img"].toggle.value = True
            self._fit_size(image)
        if inpaint is not None:
            sections["inpaint"].toggle.value = inpaint
        if inpaint and "mask" in self.controls.widgets:
            self.controls.widgets["mask"].value = ""

    def use_last_picture(self) -> None:
        """Start from the panel's last picture."""
        last = self.last_picture()
        if last is None:
            self.on_error("init: no picture painted yet; paint one, upload one, or send one from the gallery")
            return
        self.use(*last)

    def _show(self, image: Image.Image | None, path: Path | None) -> None:
        self.picture = image
        self.painter.set_image(image)
        self._mask_changed()
        if image is None:
            self.thumb.layout.display = "none"
            self.about.value = ""
            return
        with self.thumb.hold_sync():
            self.thumb.value = png_bytes(_thumbnail(image))
            self.thumb.layout.display = ""
        where = f" · {path.name}" if path is not None else ""
        self.about.value = f"<small>{image.width}×{image.height}{where}</small>"

    def _fit_size(self, image: Image.Image) -> None:
        """Paint at the picture's size when it is a valid one; when outpainting, at the grown picture's (native)."""
        if "outpaint" in self.controls.widgets and self.controls.widgets["outpaint"].value:
            self.controls.size.set(None, None)
            return
        low, high = self.controls.fields["width"].metadata["range"]
        width, height = image.size
        if all(low <= side <= high and side % 8 == 0 for side in (width, height)):
            self.controls.size.set(width, height)

    def _outpaint_changed(self, change: Any = None) -> None:
        if self.picture is not None:
            self._fit_size(self.picture)

    def _uploaded(self, change: Any = None) -> None:
        try:
            image = last_uploaded_picture(self.upload)
        except ValueError as error:
            self.on_error(str(error))
            return
        if image is None:
            return
        self.use(image)

    def _typed(self, change: Any = None) -> None:
        """A path typed into the init box: show it (and paint over it) when it is a readable local file."""
        if self._loading:
            return
        text = self.controls.widgets["init"].value.strip()
        path = Path(text).expanduser()
        if text and path.is_file():
            try:
                with Image.open(path) as image:
                    image.load()
                    self._show(image.copy(), path)
                    return
            except (UnidentifiedImageError, OSError):
                pass
        self._show(None, None)

    def _mask_changed(self, change: Any = None) -> None:
        """Say how much is painted: the kernel's own view of the mask, so the user sees it arrived."""
        mask = self.painter.mask_image()
        if mask is None or mask.getbbox() is None:
            self.mask_about.value = "<small>nothing painted: paint over the picture where it should change</small>"
            return
        share = sum(mask.histogram()[128:]) / (mask.width * mask.height)
        self.mask_about.value = f"<small>painted: {share:.0%} of the picture is repainted</small>"

    # -- handing the mask to a request ------------------------------------------------------------------------

    def prepare(self, values: dict[str, Any]) -> dict[str, Image.Image]:
        """Put the painted mask into a request's option values; return the pictures handed in as objects.

        Raises
        ------
        ValueError
            When inpaint is on with nothing painted and no mask file named.
        """
        if not self.controls.section_on("inpaint") or "mask" not in values:
            return {}
        if self.painter.painted:
            values["mask"] = OBJECT
            return {"mask": self.painter.mask_image()}
        if not str(values.get("mask") or "").strip():
            msg = "mask: inpaint is on but nothing is painted (paint over the picture or name a mask file)"
            raise ValueError(msg)
        return {}


def _thumbnail(image: Image.Image) -> Image.Image:
    thumb = image.convert("RGB")
    thumb.thumbnail((int(THUMB_WIDTH), int(THUMB_WIDTH)))
    return thumb
