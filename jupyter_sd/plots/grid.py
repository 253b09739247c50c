"""Drawing X/Y/Z grids: A1111's layout (X labels on top, Y labels on the left, Z sub-grids side by side with titles).

The labelled canvas is laid out once, with a placeholder in every cell; finished cells are pasted into their
slots, so a live grid costs one paste and one PNG encode per cell. Fonts come from Pillow (its default font is
scalable from Pillow 10.1 on) and grow with the cell, so labels are legible on 64 px and on 1024 px cells alike.
Imports only Pillow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from PIL import Image, ImageDraw, ImageFont

PLACEHOLDER = (224, 224, 224)
"""The colour of a cell that is not painted yet (or was stopped)."""
BACKGROUND = (255, 255, 255)
TEXT = (0, 0, 0)
MIN_FONT = 12
"""The smallest label font in pixels: A1111's (w + h) / 25 would be 5 px on 64 px cells."""


@lru_cache(maxsize=16)
def label_font(size: int) -> Any:
    """A font of `size` pixels that needs no network: Pillow's scalable default, else DejaVu, else the bitmap one."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: no size argument
        pass
    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        return ImageFont.load_default()


def font_size(width: int, height: int) -> int:
    """A1111's label size, (w + h) / 25, but never below `MIN_FONT`."""
    return max(MIN_FONT, (width + height) // 25)


def wrap(draw: ImageDraw.ImageDraw, text: str, font: Any, width: float) -> list[str]:
    """Break `text` into lines no wider than `width` (a longer single word keeps its own line)."""
    lines = [""]
    for word in text.split():
        line = f"{lines[-1]} {word}".strip()
        if draw.textlength(line, font=font) <= width or not lines[-1]:
            lines[-1] = line
        else:
            lines.append(word)
    return lines


@dataclass
class _Labels:
    """Wrapped label lines and their block heights, for one annotated sub-grid."""

    lines: list[list[str]]
    heights: list[int] = field(default_factory=list)


def _measure(draw: ImageDraw.ImageDraw, texts: list[str], font: Any, width: float, spacing: int) -> _Labels:
    labels = _Labels([wrap(draw, text, font, width) for text in texts])
    height = _line_height(font)
    labels.heights = [len(lines) * height + (len(lines) - 1) * spacing for lines in labels.lines]
    return labels


def _line_height(font: Any) -> int:
    box = font.getbbox("Hg") if hasattr(font, "getbbox") else (0, 0, 0, 11)
    return int(box[3] - box[1]) + 2


def _draw_block(draw: ImageDraw.ImageDraw, center_x: float, top: float, lines: list[str], font: Any, gap: int) -> None:
    height = _line_height(font)
    for line in lines:
        draw.text((center_x, top + height / 2), line, font=font, fill=TEXT, anchor="mm")
        top += height + gap


@dataclass
class GridLayout:
    """Where every cell of a plot goes on the labelled canvas, and the canvas itself.

    Parameters
    ----------
    cell
        The size of one cell's box (the largest picture; smaller ones are centred in it).
    x_labels, y_labels, z_labels
        One label per value; an axis that is not used has one empty label.
    """

    cell: tuple[int, int]
    x_labels: list[str]
    y_labels: list[str]
    z_labels: list[str]
    canvas: Image.Image = field(init=False)
    offsets: dict[tuple[int, int, int], tuple[int, int]] = field(init=False, default_factory=dict)
    label_boxes: dict[str, list[tuple[int, int, int, int]]] = field(init=False, default_factory=dict)
    """Regions the labels were drawn in (``x``, ``y``, ``z``), as (left, top, right, bottom)."""

    def __post_init__(self) -> None:
        sub, sub_offsets, sub_boxes = self._sub_grid()
        z_titled = any(self.z_labels)
        size = font_size(*self.cell) if not z_titled else min(font_size(*sub.size), 2 * font_size(*self.cell))
        font, spacing = label_font(size), size // 2
        measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
        titles = _measure(measure, self.z_labels, font, sub.width, spacing) if z_titled else None
        pad_top = max(titles.heights) + 2 * spacing if titles else 0
        canvas = Image.new("RGB", (sub.width * len(self.z_labels), sub.height + pad_top), BACKGROUND)
        draw = ImageDraw.Draw(canvas)
        self.label_boxes = {"x": [], "y": [], "z": []}
        for iz in range(len(self.z_labels)):
            left = iz * sub.width
            canvas.paste(sub, (left, pad_top))
            for (ix, iy), (x, y) in sub_offsets.items():
                self.offsets[(ix, iy, iz)] = (left + x, pad_top + y)
            for key, boxes in sub_boxes.items():
                self.label_boxes[key] += [(a + left, b + pad_top, c + left, d + pad_top) for a, b, c, d in boxes]
            if titles:
                top = pad_top / 2 - titles.heights[iz] / 2
                _draw_block(draw, left + sub.width / 2, top, titles.lines[iz], font, spacing)
                self.label_boxes["z"].append((left, 0, left + sub.width, pad_top))
        self.canvas = canvas

    def _sub_grid(self) -> tuple[Image.Image, dict, dict]:
        """One Z value's grid: the cells with X labels above and Y labels to the left (A1111's annotation)."""
        width, height = self.cell
        size = font_size(width, height)
        font, spacing = label_font(size), size // 2
        measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
        has_y = any(self.y_labels)
        words = [word for text in self.y_labels for word in text.split()]
        widest_word = max((measure.textlength(word, font=font) for word in words), default=0)
        widest_label = max((measure.textlength(text, font=font) for text in self.y_labels), default=0)
        # A1111 gives Y labels 3/4 of a cell; small cells get room for a label's words (wrapped within a cell width)
        pad_left = max(width * 3 // 4, int(min(widest_label, width)), int(widest_word)) + 2 * spacing if has_y else 0
        tops = _measure(measure, self.x_labels, font, width, spacing) if any(self.x_labels) else None
        sides = _measure(measure, self.y_labels, font, pad_left - spacing, spacing) if has_y else None
        pad_top = max(tops.heights) + 2 * spacing if tops else 0
        columns, rows = len(self.x_labels), len(self.y_labels)
        sub = Image.new("RGB", (pad_left + columns * width, pad_top + rows * height), BACKGROUND)
        draw = ImageDraw.Draw(sub)
        offsets, boxes = {}, {"x": [], "y": []}
        for iy in range(rows):
            for ix in range(columns):
                offsets[(ix, iy)] = (pad_left + ix * width, pad_top + iy * height)
                draw.rectangle(
                    [*offsets[(ix, iy)], offsets[(ix, iy)][0] + width - 1, offsets[(ix, iy)][1] + height - 1],
                    fill=PLACEHOLDER,
                    outline=BACKGROUND,
                )
        for ix in range(columns if tops else 0):
            left = pad_left + ix * width
            _draw_block(draw, left + width / 2, pad_top / 2 - tops.heights[ix] / 2, tops.lines[ix], font, spacing)
            boxes["x"].append((left, 0, left + width, pad_top))
        for iy in range(rows if sides else 0):
            top = pad_top + iy * height
            _draw_block(draw, pad_left / 2, top + height / 2 - sides.heights[iy] / 2, sides.lines[iy], font, spacing)
            boxes["y"].append((0, top, pad_left, top + height))
        return sub, offsets, boxes

    def paste(self, index: tuple[int, int, int], image: Image.Image) -> None:
        """Put a finished cell's picture into its slot (centred when smaller than the box)."""
        x, y = self.offsets[index]
        width, height = self.cell
        if image.width > width or image.height > height:
            image = image.copy()
            image.thumbnail((width, height))
        self.canvas.paste(image.convert("RGB"), (x + (width - image.width) // 2, y + (height - image.height) // 2))

    def cell_box(self, index: tuple[int, int, int]) -> tuple[int, int, int, int]:
        """The (left, top, right, bottom) box of a cell on the canvas."""
        x, y = self.offsets[index]
        return (x, y, x + self.cell[0], y + self.cell[1])
