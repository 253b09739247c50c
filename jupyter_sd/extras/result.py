"""`UpscaleResult`: what ``%paint upscale`` made, with the same face as every other result (`recipe.result.Outcome`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from ..recipe.result import Outcome, image_grid, png_bytes


@dataclass
class UpscaleResult(Outcome):
    """The upscaled pictures, their files, where each came from and the ``Postprocess …`` text it carries."""

    images: list[Image.Image] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    infotexts: list[str] = field(default_factory=list)
    stopped_by: str | None = None

    @property
    def image(self) -> Image.Image | None:
        """The first picture (the usual case: one picture upscaled)."""
        return self.images[0] if self.images else None

    def infotext(self, index: int = 0) -> str:
        """The Extras text of picture `index` (``Postprocess upscale by: 2, Postprocess upscaler: …``)."""
        return self.infotexts[index]

    def rows(self) -> list[dict[str, Any]]:
        """One dict per picture: where it came from, its file, its size and its Extras text."""
        return [
            {
                "source": self.sources[i] if i < len(self.sources) else None,
                "path": str(self.paths[i]) if i < len(self.paths) else None,
                "size": f"{image.width}x{image.height}",
                "postprocessing": self.infotexts[i] if i < len(self.infotexts) else "",
            }
            for i, image in enumerate(self.images)
        ]

    def _repr_png_(self) -> bytes | None:
        return png_bytes(image_grid(self.images)) if self.images else None

    def __repr__(self) -> str:
        sizes = ", ".join(f"{image.width}x{image.height}" for image in self.images[:4])
        more = f" (+{len(self.images) - 4})" if len(self.images) > 4 else ""
        return f"UpscaleResult({len(self.images)} picture(s): {sizes}{more})"
