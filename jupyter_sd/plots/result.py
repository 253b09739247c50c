"""`PlotResult`: what an X/Y/Z plot made — its cells, the labelled grid — rendering as the grid in any notebook."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from ..recipe.result import Outcome, PaintResult, png_bytes
from .axes import AxisValues

Index = tuple[int, int, int]


@dataclass
class PlotResult(Outcome):
    """The cells of an X/Y/Z plot, indexable by axis values, and the grid they make.

    ``plot[20, 7.0]`` is the `PaintResult` of the cell at X value 20 and Y value 7.0 (values as typed, their text,
    or their grid label); ``plot.table()`` lists every painted cell.
    """

    axes: list[AxisValues]
    """The axes given, in x, y, z order."""
    cells: dict[Index, PaintResult] = field(default_factory=dict)
    """Painted cells by (x, y, z) value index; a stopped plot has fewer than `total`."""
    total: int = 0
    grid: Image.Image | None = None
    infotext: str = ""
    """A1111's grid generation data: the first cell's, plus ``Script: X/Y/Z plot, X Type, X Values, …``."""
    path: Path | None = None
    """The saved grid (``NNNNN-xyz.png``), or None when not saved."""
    stopped_by: str | None = None
    """``"stop"``, ``"interrupt"`` or ``"error"`` (a cell failed) when the plot ended before its last cell."""
    elapsed: float = 0.0

    @property
    def images(self) -> list[Image.Image]:
        """The first picture of every painted cell, in x, y, z order (the grid is `grid`)."""
        return [result.images[0] for _, result in self._ordered() if result.images]

    @property
    def model_name(self) -> str:
        """The short name of the model that painted the first cell (empty before any cell)."""
        ordered = self._ordered()
        return ordered[0][1].model_name if ordered else ""

    @property
    def paths(self) -> list[Path]:
        """Every cell's saved files, in grid order."""
        return [path for _, result in self._ordered() for path in result.paths]

    def _ordered(self) -> list[tuple[Index, PaintResult]]:
        return sorted(self.cells.items(), key=lambda item: (item[0][2], item[0][1], item[0][0]))

    def index_of(self, key: Any) -> Index:
        """The cell index of axis values (one per axis given, x first).

        Raises
        ------
        KeyError
            For a value that is not on its axis, or the wrong number of values.
        """
        keys = key if isinstance(key, tuple) and not self._is_size_key(key) else (key,)
        if len(keys) != len(self.axes):
            msg = f"plot: give one value per axis ({', '.join(a.axis.label for a in self.axes)}), got {len(keys)}"
            raise KeyError(msg)
        index = [0, 0, 0]
        for axis, wanted in zip(self.axes, keys):
            index["xyz".index(axis.which)] = self._position(axis, wanted)
        return (index[0], index[1], index[2])

    def _is_size_key(self, key: tuple) -> bool:
        return len(self.axes) == 1 and self.axes[0].axis.kind == "size" and len(key) == 2

    @staticmethod
    def _position(axis: AxisValues, wanted: Any) -> int:
        for i, (value, text, label) in enumerate(zip(axis.values, axis.texts, axis.labels)):
            if wanted == value or (isinstance(wanted, str) and wanted in (text, label)):
                return i
            if isinstance(wanted, (int, float)) and not isinstance(wanted, bool) and not isinstance(value, tuple):
                try:
                    if float(value) == float(wanted):
                        return i
                except (TypeError, ValueError):
                    pass
        msg = f"plot: {wanted!r} is not a value of {axis.which} ({axis.axis.label}: {', '.join(axis.texts)})"
        raise KeyError(msg)

    def __getitem__(self, key: Any) -> PaintResult:
        index = self.index_of(key)
        if index not in self.cells:
            msg = f"plot: the cell {key!r} was not painted (the plot stopped first)"
            raise KeyError(msg)
        return self.cells[index]

    def __len__(self) -> int:
        return len(self.cells)

    def rows(self) -> list[dict[str, Any]]:
        """One dict per painted cell: each axis's value (by axis name), seed, path and seconds."""
        rows = []
        for index, result in self._ordered():
            row: dict[str, Any] = {}
            for axis in self.axes:
                value = axis.values[index["xyz".index(axis.which)]]
                row[axis.axis.label] = "x".join(map(str, value)) if isinstance(value, tuple) else value
            row["seed"] = result.seeds[0] if result.seeds else None
            row["path"] = str(result.paths[0]) if result.paths else None
            row["seconds"] = round(result.elapsed, 3)
            rows.append(row)
        return rows

    def _repr_png_(self) -> bytes | None:
        return png_bytes(self.grid) if self.grid is not None else None

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        bundle: dict[str, Any] = {"text/plain": repr(self)}
        if self.grid is not None:
            bundle["image/png"] = base64.b64encode(png_bytes(self.grid)).decode("ascii")
        return bundle

    def __repr__(self) -> str:
        shape = " × ".join(f"{len(a)} {a.axis.label}" for a in self.axes)
        parts = [f"{len(self.cells)}/{self.total} cells ({shape})"]
        if self.interrupted:
            parts.append({"stop": "stopped", "interrupt": "interrupted"}.get(self.stopped_by, "failed"))
        if self.path is not None:
            parts.append(f"grid {self.path.name}")
        return f"<PlotResult: {'; '.join(parts)}>"
