"""What painting made: `Outcome`, the face every result shares, and `PaintResult`, what one request made.

A picture's, a plot's (`plots.result.PlotResult`) and a batch's (`batches.result.BatchResult`) results all answer
``images``, ``paths``, ``stopped_by``, ``interrupted``, ``rows()`` and ``table()`` the same way.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from .request import PaintRequest


def image_grid(images: list[Image.Image]) -> Image.Image:
    """Lay images out in a near-square grid (A1111's layout: columns = ceil(sqrt(n)))."""
    if len(images) == 1:
        return images[0]
    columns = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    width = max(image.width for image in images)
    height = max(image.height for image in images)
    grid = Image.new("RGB", (columns * width, rows * height), "white")
    for index, image in enumerate(images):
        grid.paste(image, ((index % columns) * width, (index // columns) * height))
    return grid


def png_bytes(image: Image.Image) -> bytes:
    """Encode an image as PNG bytes (for display messages)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _version() -> str:
    from ..version import __version__

    return __version__


class Outcome:
    """The face every result shares: its pictures, their files, how it ended, and a table of what was made.

    Subclasses give `images`, `paths`, `stopped_by` (``"stop"``, ``"interrupt"``, ``"error"`` or None) and
    `rows`; `table` is then the same type everywhere: a pandas DataFrame when pandas is installed, else the rows.
    """

    stopped_by: str | None

    @property
    def interrupted(self) -> bool:
        """Whether it ended before everything asked for was made."""
        return self.stopped_by is not None

    def rows(self) -> list[dict[str, Any]]:
        """One dict per thing made (a picture, a plot cell, a batch request)."""
        raise NotImplementedError

    def table(self) -> Any:
        """The `rows` as a pandas DataFrame when pandas is installed, else as the list of dicts."""
        rows = self.rows()
        try:
            import pandas
        except ImportError:
            return rows
        return pandas.DataFrame(rows)


@dataclass
class PaintResult(Outcome):
    """The pictures one request made, with the seed and file of each and the request that made them.

    ``request`` is the resolved recipe: the seed actually used, the size painted and the model loaded, so
    ``paint(**result.request.to_dict())`` paints the same pictures again.
    """

    request: PaintRequest
    images: list[Image.Image] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    variation_seeds: list[int] = field(default_factory=list)
    """Each image's variation seed (A1111 counts it up over a batch while the seed stays fixed)."""
    paths: list[Path] = field(default_factory=list)
    detected_maps: list[Image.Image] = field(default_factory=list)
    """Each ControlNet unit's detected map (its preprocessor's output), in unit order; saved with --save-detected."""
    detected_poses: list[dict | None] = field(default_factory=list)
    """Each unit's poses as sd-webui-controlnet's OpenPose JSON (pose modules, or a pose JSON given), else None."""
    interrupted_at: int | None = None
    """The step (1-based) at which a stop or interrupt ended the run, or None when it ran to the end."""
    stopped_by: str | None = None
    """``"stop"`` (Stop button, `Engine.stop`) or ``"interrupt"`` (kernel interrupt) when the run ended early."""
    complete: int = 0
    """How many of `images` ran every step (the rest, from a stopped batch, are its last x0 pictures)."""
    steps_total: int = 0
    elapsed: float = 0.0
    model_name: str = ""
    params: dict[str, str] = field(default_factory=dict)
    """A1111 keys the engine adds to the request's own (``Model hash``, ``VAE hash``, ``Lora hashes``, …)."""

    @property
    def interrupted(self) -> bool:
        """Whether the run was stopped before its last step."""
        return self.interrupted_at is not None

    @property
    def image(self) -> Image.Image | None:
        """The first picture (the usual case: one prompt, one image)."""
        return self.images[0] if self.images else None

    def rows(self) -> list[dict[str, Any]]:
        """One dict per picture: its seed, variation seed, file and whether it ran every step."""
        return [
            {
                "seed": self.seeds[i] if i < len(self.seeds) else None,
                "variation_seed": self.variation_seeds[i] if i < len(self.variation_seeds) else None,
                "path": str(self.paths[i]) if i < len(self.paths) else None,
                "complete": i < self.complete,
            }
            for i in range(len(self.images))
        ]

    def recipe(self, index: int = 0) -> PaintRequest:
        """The request that paints image `index` alone: its own seed and variation seed, one image."""
        changes: dict = {"seed": self.seeds[index], "n": 1, "repeat": 1}
        if index < len(self.variation_seeds):
            changes["variation_seed"] = self.variation_seeds[index]
        return self.request.replace(**changes)

    def infotext(self, index: int = 0) -> str:
        """The A1111 generation data of image `index`: its own seed, and the stop step if it was interrupted."""
        stopped = self.interrupted and index >= self.complete
        extra = {**self.params, "Version": f"jupyter_sd {_version()}"}
        if stopped:
            extra["Interrupted"] = f"at step {self.interrupted_at}/{self.steps_total}"
        return self.recipe(index).to_infotext(model_name=self.model_name, extra=extra)

    def grid(self) -> Image.Image | None:
        """All pictures in one grid image."""
        return image_grid(self.images) if self.images else None

    def _repr_png_(self) -> bytes | None:
        grid = self.grid()
        return png_bytes(grid) if grid is not None else None

    def __repr__(self) -> str:
        count = len(self.images)
        parts = [f"{count} image{'s' if count != 1 else ''}"]
        if self.seeds:
            parts.append(
                "seed " + ", ".join(str(seed) for seed in self.seeds[:8]) + ("…" if len(self.seeds) > 8 else "")
            )
        if self.interrupted:
            parts.append(f"interrupted at step {self.interrupted_at}/{self.steps_total}")
        if self.paths:
            parts.append(
                "saved " + ", ".join(path.name for path in self.paths[:4]) + ("…" if len(self.paths) > 4 else "")
            )
        return f"<PaintResult: {'; '.join(parts)}>"
