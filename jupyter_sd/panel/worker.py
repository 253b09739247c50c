"""The panel's worker thread and its live view.

Jobs run one after another on a daemon thread, so the kernel stays free for other cells while a picture is
painted; the GPU itself is shared with ``%%paint`` cells through the engine's lock. The worker never prints
(text printed from a thread lands in whichever cell ran last): it only sets widget traits, which travel as comm
messages addressed to their widget, from any thread, on ipykernel 6 and 7 alike.
"""

from __future__ import annotations

import html
import io
import itertools
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import ipywidgets as widgets
from PIL import Image

from ..engine import Fanout, Progress
from ..painting import session as painter
from ..painting.store import attach_input
from ..painting.views import STATUS_INTERVAL, StepRate, detected_html, phase_text, status_text, summary_text
from ..recipe.request import PaintRequest
from ..recipe.result import PaintResult, image_grid, png_bytes

PREVIEW_WIDTH = "384"


def background_default() -> bool:
    """Whether the panel paints in the background (the kernel stays free) by default: everywhere but Colab.

    Colab's front end drops widget updates a kernel sends while it is idle (googlecolab/colabtools#3373), so a
    background worker's previews would not show there. In Colab, Generate waits for its picture instead (the
    updates then belong to the button's click, which Colab shows), and Runtime → Interrupt stops it.
    """
    return "google.colab" not in sys.modules


def error_line(error: BaseException) -> str:
    """One readable line for an error: our own messages as they are, others prefixed by their type."""
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else ""
    if isinstance(error, (ValueError, MemoryError)) and text:
        return text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def jpeg_bytes(image: Image.Image, quality: int = 85) -> bytes:
    """Encode a preview frame as JPEG (a third of the PNG's bytes; frames are transient)."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


class LiveArea(widgets.VBox):
    """Progress bar, status line, error line and the picture (previews, then the result), the detected maps beside."""

    def __init__(self) -> None:
        self.bar = widgets.IntProgress(value=0, min=0, max=1, layout=widgets.Layout(width="24em"))
        self.bar.add_class("jupyter-sd-progress")
        self.status = widgets.HTML(value="")
        self.status.add_class("jupyter-sd-status")
        self.error = widgets.HTML(value="")
        self.error.add_class("jupyter-sd-error")
        self.image = widgets.Image(format="png", width=PREVIEW_WIDTH, layout=widgets.Layout(display="none"))
        self.image.add_class("jupyter-sd-image")
        self.maps = widgets.HTML(value="")  # the ControlNet units' detected maps (painting.views.detected_html)
        super().__init__([self.bar, self.status, self.error, widgets.HBox([self.image, self.maps])])

    def say(self, text: str) -> None:
        """Show a status line (always escaped: it may quote the prompt)."""
        self.status.value = f"<code>{html.escape(text)}</code>"

    def fail(self, text: str) -> None:
        """Show an error line; an empty text clears it."""
        self.error.value = f'<span style="color:#c62828">⚠ {html.escape(text)}</span>' if text else ""

    def show(self, image: Image.Image, preview: bool) -> None:
        """Show a preview frame (JPEG) or a finished picture (PNG)."""
        with self.image.hold_sync():
            if preview:
                self.image.format, self.image.value = "jpeg", jpeg_bytes(image)
            else:
                self.image.format, self.image.value = "png", png_bytes(image)
            self.image.layout.display = ""


class LiveView(Progress):
    """A `Progress` that only touches the widgets of a `LiveArea` (safe from the worker thread)."""

    def __init__(self, area: LiveArea) -> None:
        self.area = area
        self._rate = StepRate()
        self._last_status = 0.0
        self._batch, self._batches = 0, 1
        self._phase = ""
        self.frames = 0
        self._maps: dict[str, Image.Image] = {}

    def notice(self, text: str) -> None:  # noqa: D102
        self.area.say(text)

    def detected(self, maps: list[Image.Image], labels: list[str]) -> None:  # noqa: D102
        self._maps.update(zip(labels, maps))  # a hires pass's units replace their own first-pass maps
        self.area.maps.value = detected_html(self._maps)

    def start(self, request: PaintRequest, batch: int, batches: int) -> None:  # noqa: D102
        self._batch, self._batches = batch, batches
        self._rate = StepRate()
        self._maps = {}  # each batch detects its maps again; the last ones stay with the result
        if batch == 0:
            self.area.maps.value = ""
        with self.area.bar.hold_sync():
            self.area.bar.max, self.area.bar.value = request.steps, 0
            self.area.bar.bar_style = ""
        self.area.say(f"painting {request.prompt[:60]!r}…")

    def phase(self, label: str, index: int, count: int, steps: int) -> None:
        """A pass begins (the hires pass after the first): the bar restarts for its steps, the line names it."""
        self._phase = phase_text(label, index, count)
        self._rate = StepRate()
        with self.area.bar.hold_sync():
            self.area.bar.max, self.area.bar.value = max(1, steps), 0

    def step(self, step: int, total: int, previews: list[Image.Image] | None) -> None:  # noqa: D102
        if previews:
            self.area.show(image_grid(previews), preview=True)
            self.frames += 1
        if total != self.area.bar.max:  # a pass of another length began (the hires pass)
            self._rate = StepRate()
            with self.area.bar.hold_sync():
                self.area.bar.max, self.area.bar.value = total, 0
        rate, eta = self._rate.update(step, total)
        now = time.perf_counter()
        if step == total or now - self._last_status >= STATUS_INTERVAL:
            self._last_status = now
            self.area.bar.value = min(step, self.area.bar.max)
            self.area.say(status_text(step, total, rate, eta, self._batch, self._batches, self._phase))

    def finish(self, result: PaintResult) -> None:  # noqa: D102
        with self.area.bar.hold_sync():
            self.area.bar.value = result.interrupted_at if result.interrupted else self.area.bar.max
            self.area.bar.bar_style = "warning" if result.interrupted else "success"
        if result.images:
            self.area.show(result.grid(), preview=False)
        self.area.say(summary_text(result))


_numbers = itertools.count(1)


class InputSaver(Progress):
    """Write a job's pictures handed in as objects (the painted mask) beside each picture just saved.

    Each picture's recipe then names that file (`store.attach_input`).
    """

    def __init__(self, pictures: dict[str, Image.Image], area: LiveArea) -> None:
        self.pngs = {role: png_bytes(image) for role, image in pictures.items()}
        self.area = area
        self._seen = 0

    def batch(self, images: list[Image.Image], seeds: list[int], result: PaintResult) -> None:  # noqa: D102
        saved, self._seen = result.paths[self._seen :], len(result.paths)
        for path in saved:
            for role, png in self.pngs.items():
                try:
                    attach_input(path, role, png)
                except (OSError, ValueError) as error:  # the picture itself is saved: say so, keep going
                    self.area.fail(f"{role}: not saved beside {path.name} ({error})")


class Job:
    """One queued request, with its own stop flag and, once run, its result or error.

    ``pictures`` are the request's pictures handed in as objects (``{"mask": image}`` for the painted mask, its
    option reading ``<object>``): each is saved beside every picture painted.
    """

    def __init__(self, request: PaintRequest, pictures: dict[str, Image.Image] | None = None) -> None:
        self.number = next(_numbers)
        self.request = request
        self.pictures = dict(pictures or {})
        self.stop = threading.Event()
        self.result: PaintResult | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()

    def describe(self) -> str:
        """A short line for the queue: number, prompt start, steps and size."""
        r = self.request
        prompt = r.prompt if len(r.prompt) <= 50 else r.prompt[:49] + "…"
        return f"#{self.number} {prompt!r} · {r.steps} steps · {r.size or 'native size'} · ×{r.n * r.repeat}"


class Worker:
    """Run jobs one at a time on a daemon thread, started when work arrives and ended when the queue is empty.

    Parameters
    ----------
    area
        Where the running job's progress shows.
    user_ns
        The notebook's namespace (to save images beside the notebook, as ``%%paint`` does).
    on_change
        Called (from either thread) whenever the queue or the running job changes.
    on_result
        Called on the worker thread with each finished job (``job.result`` or ``job.error`` set).
    """

    def __init__(
        self,
        area: LiveArea,
        user_ns: Mapping[str, Any] | None,
        on_change: Callable[[], None] | None = None,
        on_result: Callable[[Job], None] | None = None,
    ) -> None:
        self.area = area
        self.user_ns = user_ns
        self.on_change = on_change or (lambda: None)
        self.on_result = on_result or (lambda job: None)
        self._lock = threading.RLock()
        self._queue: list[Job] = []
        self._thread: threading.Thread | None = None
        self.current: Job | None = None

    @property
    def busy(self) -> bool:
        """Whether a job is running or waiting."""
        with self._lock:
            return self.current is not None or bool(self._queue)

    @property
    def queued(self) -> list[Job]:
        """The jobs waiting their turn (a copy)."""
        with self._lock:
            return list(self._queue)

    def submit(self, request: PaintRequest, wait: bool = False, pictures: dict[str, Image.Image] | None = None) -> Job:
        """Queue a request; it runs as soon as the jobs before it are done.

        Parameters
        ----------
        pictures
            The request's pictures handed in as objects (see `Job`).
        wait
            Block until the job is done (the foreground mode, see `background_default`). A kernel interrupt
            while waiting stops the picture at its next step, keeping it.
        """
        job = Job(request, pictures)
        with self._lock:
            self._queue.append(job)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="jupyter_sd-panel", daemon=True)
                self._thread.start()
        self.on_change()
        if wait:
            try:
                while not job.done.wait(0.1):
                    pass
            except KeyboardInterrupt:
                job.stop.set()
                job.done.wait()
        return job

    def remove(self, job: Job) -> bool:
        """Take a job out of the queue before it starts; False if it already started."""
        with self._lock:
            if job not in self._queue:
                return False
            self._queue.remove(job)
        job.done.set()
        self.on_change()
        return True

    def cancel(self) -> None:
        """Drop every queued job and stop the running one."""
        with self._lock:
            dropped, self._queue = self._queue, []
        for job in dropped:
            job.done.set()
        self.stop()
        self.on_change()

    def stop(self) -> None:
        """Stop the running job at its next step (the queue carries on)."""
        with self._lock:
            if self.current is not None:
                self.current.stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the queue is empty and nothing runs; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                thread = self._thread
            if thread is None:
                return True
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            thread.join(left)

    def _loop(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._thread = None
                    self.current = None
                    break
                job = self.current = self._queue.pop(0)
            self.on_change()
            self._run(job)
            with self._lock:
                self.current = None
            job.done.set()
        self.on_change()

    def _run(self, job: Job) -> None:
        self.area.fail("")
        if painter.get_engine().busy:  # a %%paint cell (or another panel) has the GPU: say why nothing moves
            self.area.say("waiting for the picture being painted elsewhere to finish…")
        try:
            view = LiveView(self.area)
            if job.pictures:
                view = Fanout(InputSaver(job.pictures, self.area), view)
            job.result = painter.render(
                job.request,
                view,
                stop=job.stop,
                user_ns=self.user_ns,
                reraise_interrupt=False,
                pictures=job.pictures or None,
            )
        except Exception as error:  # shown as one line; the panel keeps working
            job.error = error
            self.area.bar.bar_style = "danger"
            self.area.say("")
            self.area.fail(error_line(error))
        try:
            self.on_result(job)
        except Exception as error:  # pragma: no cover - a widget failure must not kill the worker
            job.error = job.error or error
            self.area.fail(error_line(error))
