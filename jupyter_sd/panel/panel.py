"""The widget panel (``%paint panel``, ``jupyter_sd.Panel()``) and the controls under a ``%%paint --ui`` cell.

Both are plain ipywidgets containers built with API that ipywidgets 7.7 (Colab) and 8 share, so displaying them
works in Colab, JupyterLab, Notebook and VS Code without a custom widget manager. They build the same
`PaintRequest` as ``%%paint`` and paint it through the same `painter.render` (same engine, saving and
metadata), on a worker thread so the kernel stays free.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ipywidgets as widgets
from PIL import Image

from ..painting import session as painter
from ..recipe.request import PaintRequest
from ..recipe.result import PaintResult
from ..recipe.values import option_fields
from .control_section import ControlSection
from .controls import Controls, control_for, set_tooltip
from .gallery import Gallery, Item
from .images import ImageInput
from .upscale_bar import UpscaleBar
from .worker import Job, LiveArea, Worker, background_default, error_line
from .xyz_section import XYZSection

__all__ = ["CellControls", "Panel"]

_IGNORED = ("help", "ui")
KEEP_RESULTS = 16
"""Results a panel keeps in memory (`Panel.results`); the gallery keeps its own pictures, files stay on disk."""


def _user_ns(user_ns: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    if user_ns is not None:
        return user_ns
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return None
    shell = get_ipython()
    return shell.user_ns if shell is not None else None


def _button(description: str, icon: str, css: str, tip: str, style: str = "") -> widgets.Button:
    button = widgets.Button(description=description, icon=icon, button_style=style)
    button.add_class(css)
    set_tooltip(button, tip)
    return button


class Panel(widgets.VBox):
    """The notebook's control room: every option, Generate/Stop, a job queue, live preview and a gallery.

    Parameters
    ----------
    user_ns
        The notebook's namespace, used to save pictures beside the notebook (default: the running shell's).
    background
        Paint on a worker thread so the kernel stays free (default: yes, except in Colab, whose front end does not
        show widget updates sent while the kernel is idle; there Generate waits for its picture).
    **options
        Starting values for the controls, on top of the kernel's defaults (``%paint config``), e.g.
        ``Panel(steps=30, model="org/name", size="512x768")``.

    Raises
    ------
    ValueError
        For an unknown option or an invalid value.
    """

    def __init__(
        self, *, user_ns: Mapping[str, Any] | None = None, background: bool | None = None, **options: Any
    ) -> None:
        self.background = background_default() if background is None else background
        for name in _IGNORED:
            options.pop(name, None)
        self.defaults = painter.new_request(**options).validate()
        self.user_ns = _user_ns(user_ns)
        self.controls = Controls(self.defaults)
        self.results: list[PaintResult] = []
        self.last_error: BaseException | None = None
        self._refresh_lock = threading.Lock()

        self.generate_button = _button(
            "Generate", "paint-brush", "jupyter-sd-generate", "Paint with these settings (queued if busy)", "primary"
        )
        self.stop_button = _button(
            "Stop", "stop", "jupyter-sd-stop", "Stop at the next step, keeping the picture", "danger"
        )
        self.stop_button.disabled = True
        if not self.background:
            set_tooltip(self.stop_button, "Runtime → Interrupt execution stops the picture here (Colab)")
        self.generate_button.on_click(lambda _: self.generate())
        self.stop_button.on_click(lambda _: self.stop())
        self.live = LiveArea()
        self.queue_box = widgets.VBox()
        self.queue_box.add_class("jupyter-sd-queue")
        self.gallery = Gallery(on_reuse=self.load, on_send=self.send_to)
        self.worker = Worker(self.live, self.user_ns, on_change=self._refresh, on_result=self._finished)
        self.images = ImageInput(self.controls, self._folder, self._last_picture, self.live.fail)
        sections = self.controls.sections
        sections["img2img"].box.children = (self.images,)
        sections["hires"].box.children = tuple(self.controls.widgets[n] for n in self.controls.section_fields("hires"))
        self.control_units = ControlSection(self.controls, self._folder)
        sections["controlnet"].box.children = (self.control_units,)
        title = widgets.HTML(value="<b>jupyter_sd</b> · panel")
        super().__init__(
            [
                title,
                *self.controls.main_rows(),
                widgets.HBox([sections["img2img"].toggle, sections["hires"].toggle, sections["controlnet"].toggle]),
                sections["img2img"].box,
                sections["hires"].box,
                sections["controlnet"].box,
                self.controls.more(),
                widgets.HBox([self.generate_button, self.stop_button]),
                self.live,
                self.queue_box,
                self.gallery,
                XYZSection(self),
            ]
        )
        self.add_class("jupyter-sd-panel")

    # -- actions (the buttons call these; so can code) ---------------------------------------------------------

    def request(self) -> PaintRequest:
        """The request the controls describe, validated (a painted mask shows as ``mask = <object>``).

        Raises
        ------
        ValueError
            For an invalid value (one line, naming the option).
        """
        return self._prepare()[0]

    def _prepare(self) -> tuple[PaintRequest, dict[str, Image.Image]]:
        values = self.controls.values()
        pictures = self.images.prepare(values)
        return self.defaults.replace(**self.controls.changes(values)).validate(), pictures

    def generate(self) -> Job | None:
        """Queue a picture with the controls' settings; None (and an error line) when they are invalid."""
        try:
            request, pictures = self._prepare()
        except ValueError as error:
            self.last_error = error
            self.live.fail(error_line(error))
            return None
        self.live.fail("")
        return self.worker.submit(request, wait=not self.background, pictures=pictures)

    def send_to(self, item: Item, mode: str = "img2img") -> None:
        """Start from a gallery picture: its recipe goes into the controls and it becomes the init picture.

        ``mode="inpaint"`` also opens the mask painter over it. Hires fix is switched off (the picture already
        has its final size).
        """
        self.load(item.recipe())
        self.controls.sections["hires"].toggle.value = False
        path = item.path if item.path is not None and item.path.is_file() else None
        self.images.use(item.image, path, inpaint=mode == "inpaint")
        if mode == "img2img" and "mask" in self.controls.widgets:
            self.controls.widgets["mask"].value = ""

    def stop(self) -> None:
        """Stop the running picture at its next step (the queued ones still run)."""
        self.worker.stop()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every queued picture is done; False on timeout."""
        return self.worker.wait(timeout)

    def close(self) -> None:
        """Close the panel: drop its queue and stop its running picture, then close the widget."""
        worker = getattr(self, "worker", None)  # absent when __init__ refused its options
        if worker is not None:
            worker.cancel()
        super().close()

    def load(self, request: PaintRequest) -> None:
        """Put a request's settings (e.g. a gallery picture's) into the controls."""
        self.controls.load(request)

    def _folder(self) -> Path:
        """The output folder of the request the controls describe (where an uploaded picture is kept)."""
        outdir = self.controls.widgets["outdir"].value if "outdir" in self.controls.widgets else self.defaults.outdir
        return painter.output_folder(self.defaults.replace(outdir=outdir), self.user_ns)

    def _last_picture(self) -> tuple[Image.Image, Path | None] | None:
        for result in reversed(self.results):
            if result.images:
                path = result.paths[0] if result.paths else None
                return result.images[0], path
        return None

    @property
    def last_result(self) -> PaintResult | None:
        """The last finished (or stopped) run."""
        return self.results[-1] if self.results else None

    # -- worker callbacks ----------------------------------------------------------------------------------------

    def _finished(self, job: Job) -> None:
        result = job.result
        if result is None:
            self.last_error = job.error
            return
        self.results = [*self.results, result][-KEEP_RESULTS:]
        if result.seeds:
            self.controls.seed.remember(result.seeds[0])
        native = (result.request.width, result.request.height)
        if job.request.width is None and native[0] and self.controls.size.native != native:
            self.controls.size.set_native(*native)
        if result.images:
            self.gallery.add(result)

    def _refresh(self) -> None:
        """Show the queue and the buttons' state (called from either thread).

        Reading the worker's state and showing it happen under one lock, so a refresh that read an older state
        can never overwrite a newer one.
        """
        with self._refresh_lock:
            current, queued = self.worker.current, self.worker.queued
            rows: list[widgets.Widget] = []
            if current is not None:
                rows.append(widgets.HTML(value=f"painting {html.escape(current.describe())}"))
            for job in queued:
                remove = widgets.Button(icon="times", description="remove", layout=widgets.Layout(width="auto"))
                remove.add_class("jupyter-sd-remove")
                remove.on_click(lambda _, job=job: self.worker.remove(job))
                label = widgets.HTML(value=f"queued {html.escape(job.describe())}")
                rows.append(widgets.HBox([remove, label]))
            old = self.queue_box.children
            self.queue_box.children = tuple(rows)
            for row in old:
                for child in getattr(row, "children", ()):
                    child.close()
                row.close()
            self.stop_button.disabled = current is None


class CellControls(widgets.VBox):
    """Steps, guidance and seed controls under a ``%%paint --ui`` result, "again" to paint it anew, and "upscale".

    The new picture shows in this widget's own image (painted on the worker thread, so the kernel stays free),
    and is saved like the cell's.

    Parameters
    ----------
    result
        The cell's result: its resolved request is the recipe "again" starts from.
    user_ns
        The notebook's namespace (for saving beside the notebook).
    background
        Paint on a worker thread (default: yes, except in Colab; see `Panel`).
    """

    _FIELDS = ("steps", "guidance", "seed")

    def __init__(
        self, result: PaintResult, user_ns: Mapping[str, Any] | None = None, background: bool | None = None
    ) -> None:
        self.background = background_default() if background is None else background
        self.base = result.request
        self.user_ns = _user_ns(user_ns)
        self.results: list[PaintResult] = [result]
        self.last_error: BaseException | None = None
        self._refresh_lock = threading.Lock()
        fields = {f.name: f for f in option_fields()}
        seed = result.seeds[0] if result.seeds else self.base.seed
        start = {"steps": self.base.steps, "guidance": self.base.guidance, "seed": seed}
        self.inputs = {name: control_for(fields[name], start[name]) for name in self._FIELDS}
        self.inputs["seed"].layout = widgets.Layout(width="16em")
        random = _button("random", "random", "jupyter-sd-seed-random", "Seed -1: a new one each time")
        random.layout = widgets.Layout(width="auto")
        random.on_click(lambda _: setattr(self.inputs["seed"], "value", -1))
        self.again_button = _button(
            "again", "refresh", "jupyter-sd-again", "Paint this prompt again with these values", "primary"
        )
        self.stop_button = _button("Stop", "stop", "jupyter-sd-stop", "Stop at the next step", "danger")
        self.stop_button.disabled = True
        self.again_button.on_click(lambda _: self.again())
        self.stop_button.on_click(lambda _: self.worker.stop())
        self.live = LiveArea()
        self.worker = Worker(self.live, self.user_ns, on_change=self._refresh, on_result=self._finished)
        self.upscaling = UpscaleBar()
        self.upscaling.button.on_click(lambda _: self.upscale())
        super().__init__(
            [
                widgets.HBox([self.inputs["steps"], self.inputs["guidance"]]),
                widgets.HBox([self.inputs["seed"], random, self.again_button, self.stop_button]),
                self.live,
                self.upscaling,
            ]
        )
        self.add_class("jupyter-sd-cell-controls")

    def request(self) -> PaintRequest:
        """The cell's recipe with the controls' steps, guidance and seed."""
        return self.base.replace(**{name: w.value for name, w in self.inputs.items()}).validate()

    def again(self) -> Job | None:
        """Paint the cell's prompt again with the controls' values (queued behind a running one)."""
        try:
            request = self.request()
        except ValueError as error:
            self.last_error = error
            self.live.fail(error_line(error))
            return None
        return self.worker.submit(request, wait=not self.background)

    def upscale(self) -> Any:
        """Upscale the newest picture as the Extras tab does (saved beside it) and show it under the controls."""
        latest = self.results[-1]
        if not latest.images:
            return None
        path = latest.paths[0] if latest.paths else None
        self.upscaling.refresh()
        result = self.upscaling.run(latest.images[0], path)
        if result is not None:
            with self.upscaling.output:
                from IPython.display import display

                display(result)
        return result

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the painting is done; False on timeout."""
        return self.worker.wait(timeout)

    def _finished(self, job: Job) -> None:
        if job.result is not None:
            self.results = [*self.results, job.result][-KEEP_RESULTS:]
        else:
            self.last_error = job.error

    def _refresh(self) -> None:
        with self._refresh_lock:
            current, waiting = self.worker.current, len(self.worker.queued)
            self.stop_button.disabled = current is None
            self.again_button.description = f"again (+{waiting} queued)" if waiting else "again"
