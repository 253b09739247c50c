"""X/Y/Z grid drawing: A1111's layout, label regions, and fonts that grow with the cell."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.pixels import dark_rows

from jupyter_sd.plots.grid import PLACEHOLDER, GridLayout

# -- the grid -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", [64, 256, 1024])
def test_labels_are_legible_at_every_cell_size(cell):
    layout = GridLayout((cell, cell), ["Steps: 10", "Steps: 20"], ["CFG Scale: 3", "CFG Scale: 7"], [""])
    pad_left, pad_top = layout.offsets[(0, 0, 0)]
    assert layout.canvas.size == (pad_left + 2 * cell, pad_top + 2 * cell)
    for box in layout.label_boxes["x"] + layout.label_boxes["y"]:
        rows = dark_rows(layout.canvas, box)
        assert len(rows), box  # text was drawn in each label region
        text_height = rows[-1] - rows[0] + 1
        assert text_height >= 8  # at least a 12 px font on 64 px cells
        assert text_height >= cell // 40  # and growing with the cell
    # the label regions of a 1024 px grid hold text about (w + h) / 25 px high, as A1111's
    if cell == 1024:
        rows = dark_rows(layout.canvas, layout.label_boxes["x"][0])
        assert rows[-1] - rows[0] > 40


def test_z_titles_and_sub_grids_side_by_side():
    layout = GridLayout((64, 64), ["a", "b"], ["c"], ["Euler a", "DPM++ 2M"])
    first, second = layout.offsets[(0, 0, 0)], layout.offsets[(0, 0, 1)]
    assert second[1] == first[1] and second[0] - first[0] == layout.canvas.width // 2
    assert len(layout.label_boxes["z"]) == 2
    for box in layout.label_boxes["z"]:
        assert len(dark_rows(layout.canvas, box))
    assert np.asarray(layout.canvas.crop(layout.cell_box((1, 0, 1))))[32, 32].tolist() == list(PLACEHOLDER)
