"""An X/Y/Z plot's live view shows each cell's ControlNet maps beside its preview (the cell and the panel alike).

A tiny SD1.5 and a tiny ControlNet, one unit, two cells whose ``[ControlNet] Preprocessor`` is canny, then invert:
each cell's map must be that cell's own (OpenCV's Canny of the picture, its negative: computed here), shown before the
cell's first frame and beside every frame of it, and replaced, not joined, by the next cell's.
"""

from __future__ import annotations

import base64
import io
import re

import cv2
import numpy as np
import pytest
from helpers.paint_modes import tiny_request
from helpers.tiny_controlnet import save_folder, tiny_controlnet
from PIL import Image

from jupyter_sd.panel.xyz_section import XYZSection, _WidgetPlotView
from jupyter_sd.plots.run import run_plot
from jupyter_sd.plots.views import InlinePlotView, PlotView
from jupyter_sd.recipe.control_units import read_units

SIZE = 32
MODULES = ("canny", "invert")
PREVIEW = "preview of the running cell"


def _picture() -> np.ndarray:
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    image = np.stack([x * 255 // SIZE, y * 255 // SIZE, np.full_like(x, 90)], axis=2).astype(np.uint8)
    cv2.rectangle(image, (8, 8), (20, 22), (250, 20, 20), -1)
    cv2.circle(image, (22, 10), 5, (20, 220, 60), -1)
    return image


def _map(module: str) -> np.ndarray:
    """The cell's map, by formula: canny's edges (thresholds 50, 120) or the picture's negative."""
    if module == "invert":
        return 255 - _picture()
    return np.repeat(cv2.Canny(_picture(), 50, 120)[:, :, None], 3, axis=2)


class Both(PlotView):
    """The cell's inline view and the panel's widget view, fed the same events (as two front ends would be)."""

    def __init__(self, *views: PlotView) -> None:
        self.views = views

    def _all(self, name: str, *args, **kwargs) -> None:
        for view in self.views:
            getattr(view, name)(*args, **kwargs)

    def start(self, *args):
        self._all("start", *args)

    def status(self, *args, **kwargs):
        self._all("status", *args, **kwargs)

    def preview(self, *args):
        self._all("preview", *args)

    def detected(self, *args):
        self._all("detected", *args)

    def cell(self, *args):
        self._all("cell", *args)

    def finish(self, *args):
        self._all("finish", *args)


class Panelled(_WidgetPlotView):
    """The panel's plot view, keeping what its maps widget held when each cell finished."""

    def __init__(self, section: XYZSection) -> None:
        super().__init__(section)
        self.at_cells: list[str] = []

    def cell(self, index, result, grid, number, total):
        self.at_cells.append(self.section.maps.value)
        super().cell(index, result, grid, number, total)


@pytest.fixture(scope="module")
def plotted(tiny_model_dir, tmp_path_factory):
    """A 2-cell plot with a canny unit, watched inline (display captured) and by the panel's section."""
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(tiny_model_dir, subfolder="unet")
    folder = save_folder(tiny_controlnet(unet, seed=3), tmp_path_factory.mktemp("cn") / "cn")
    unit = {"module": "canny", "model": str(folder), "image": Image.fromarray(_picture()), "pixel_perfect": True}
    unit.update(threshold_a=50, threshold_b=120)
    request = tiny_request(tiny_model_dir, controlnet=read_units([unit]), width=SIZE, height=SIZE, steps=3)
    shown: list[dict] = []
    section = XYZSection(panel=None)
    inline, panel = InlinePlotView(), Panelled(section)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("IPython.display.display", lambda bundle, **kwargs: shown.append(bundle))
        plot = run_plot(request, {"x": "[ControlNet] Preprocessor: canny, invert"}, Both(inline, panel))
    return {"plot": plot, "shown": shown, "panel": panel, "section": section}


def _pictures(html: str) -> list[np.ndarray]:
    data = re.findall(r'src="data:image/(?:png|jpeg);base64,([^"]+)"', html)
    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(d))).convert("RGB")) for d in data]


def _detected_part(html: str) -> str:
    return html[html.index('<div class="jupyter-sd-detected">') :]


def test_each_cell_shows_its_own_map_beside_its_frames(plotted):
    plot, shown = plotted["plot"], plotted["shown"]
    assert len(plot.cells) == 2 and not plot.interrupted
    for cell in plot.cells.values():  # the engine's own record of each cell's map
        assert len(cell.detected_maps) == 1
    expected = [_map(module) for module in MODULES]
    assert expected[0].any() and not expected[0].all()  # a real edge map
    for number, cell in enumerate(plot.cells[(i, 0, 0)] for i in range(2)):
        np.testing.assert_array_equal(np.asarray(cell.detected_maps[0]), expected[number])
    grids = [i for i, bundle in enumerate(shown) if bundle.get("text/plain", "").startswith("X/Y/Z grid, ")]
    previews = [(i, b) for i, b in enumerate(shown) if b.get("text/plain") == PREVIEW and "text/html" in b]
    assert len(grids) == 2 and previews
    for number, (begin, end) in enumerate([(0, grids[0]), (grids[0], grids[1])]):
        own = [b["text/html"] for i, b in previews if begin < i < end]
        assert own and "<img" not in own[0].split('<div class="jupyter-sd-detected">')[0]  # the map before any frame
        framed = [text for text in own if len(_pictures(text)) == 2]  # a frame, then the map beside it
        assert len(framed) == 3  # each of the 3 steps' frames stands beside the map
        for text in own:
            assert _detected_part(text).count("<figure") == 1  # this cell's map alone
            assert f"ControlNet 0 · {MODULES[number]}" in text
            np.testing.assert_array_equal(_pictures(_detected_part(text))[0], expected[number])


def test_the_panel_shows_each_cells_map_and_clears_it_at_the_end(plotted):
    at_cells = plotted["panel"].at_cells
    assert len(at_cells) == 2
    for number, value in enumerate(at_cells):
        assert f"ControlNet 0 · {MODULES[number]}" in value and value.count("<figure") == 1
        np.testing.assert_array_equal(_pictures(value)[0], _map(MODULES[number]))
    assert plotted["section"].maps.value == ""  # the plot ended: the preview and its maps go
