"""What a generation tells the front ends: the `Progress` events, and `Fanout` to several listeners.

Views show the events; the store saves on ``batch``. The engine only ever talks to a `Progress`, so it knows
nothing of widgets, displays or files.
"""

from __future__ import annotations

from PIL import Image

from ..recipe.request import PaintRequest
from ..recipe.result import PaintResult


class Progress:
    """Receives the events of a generation. Views show them; the store saves on `batch`. All no-ops here."""

    def notice(self, text: str) -> None:
        """A one-line message for the user (model loading, the demo model in use)."""

    def start(self, request: PaintRequest, batch: int, batches: int) -> None:
        """A batch is about to be denoised (`batch` counts from 0)."""

    def phase(self, label: str, index: int, count: int, steps: int) -> None:
        """A denoising pass starts: `label` (txt2img, img2img, inpaint, hires) is pass `index` (from 0) of `count`.

        Steps are then reported per pass (``step(i, steps)``). Listeners written before passes existed ignore it.
        """

    def detected(self, maps: list[Image.Image], labels: list[str]) -> None:
        """A pass's ControlNet units made their maps (before its first step): one picture and caption per unit.

        Each caption names the unit's number among all units and its module (``ControlNet 0 · canny``).
        """

    def step(self, step: int, total: int, previews: list[Image.Image] | None) -> None:
        """A step finished; `previews` holds one picture per image when this step shows a frame."""

    def batch(self, images: list[Image.Image], seeds: list[int], result: PaintResult) -> None:
        """A batch finished (or stopped, see ``result.interrupted_at``) with these pictures."""

    def finish(self, result: PaintResult) -> None:
        """The whole request is done."""


class Fanout(Progress):
    """Send every event to several listeners in order (e.g. the store, then the view)."""

    def __init__(self, *listeners: Progress | None) -> None:
        self.listeners = [listener for listener in listeners if listener is not None]

    def notice(self, text: str) -> None:  # noqa: D102
        for listener in self.listeners:
            listener.notice(text)

    def start(self, request: PaintRequest, batch: int, batches: int) -> None:  # noqa: D102
        for listener in self.listeners:
            listener.start(request, batch, batches)

    def phase(self, label: str, index: int, count: int, steps: int) -> None:  # noqa: D102
        for listener in self.listeners:
            phase = getattr(listener, "phase", None)  # listeners that predate passes may not have it
            if phase is not None:
                phase(label, index, count, steps)

    def detected(self, maps: list[Image.Image], labels: list[str]) -> None:  # noqa: D102
        for listener in self.listeners:
            detected = getattr(listener, "detected", None)  # listeners that predate detected maps may not have it
            if detected is not None:
                detected(maps, labels)

    def step(self, step: int, total: int, previews: list[Image.Image] | None) -> None:  # noqa: D102
        for listener in self.listeners:
            listener.step(step, total, previews)

    def batch(self, images: list[Image.Image], seeds: list[int], result: PaintResult) -> None:  # noqa: D102
        for listener in self.listeners:
            listener.batch(images, seeds, result)

    def finish(self, result: PaintResult) -> None:  # noqa: D102
        for listener in self.listeners:
            listener.finish(result)


class Recorded(Progress):
    """Keep the notices of work nobody watches yet (a load in the warm-up thread), to tell them later."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def notice(self, text: str) -> None:  # noqa: D102
        self.lines.append(text)
