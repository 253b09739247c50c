"""A ControlNet unit's detected map shown while its picture paints: in the cell's live view (beside the preview, from
before the first step, kept when the run ends), in the panel's live area, and as a line in the terminal."""

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

from jupyter_sd.engine import Fanout
from jupyter_sd.painting.session import render
from jupyter_sd.painting.views import ConsoleView, InlineView
from jupyter_sd.panel.worker import LiveArea, LiveView
from jupyter_sd.recipe.control_units import read_units

SIZE = 64


def _picture() -> np.ndarray:
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    image = np.stack([x * 255 // SIZE, y * 255 // SIZE, np.full_like(x, 90)], axis=2).astype(np.uint8)
    cv2.rectangle(image, (16, 16), (40, 44), (250, 20, 20), -1)
    cv2.circle(image, (44, 20), 10, (20, 220, 60), -1)
    return image


class Watched(InlineView):
    """The cell's view, recording the order of the engine's events."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple] = []

    def detected(self, maps, labels):
        self.events.append(("detected", maps, labels))
        super().detected(maps, labels)

    def step(self, step, total, previews):
        self.events.append(("step", step))
        super().step(step, total, previews)


@pytest.fixture(scope="module")
def painted(tiny_model_dir, tmp_path_factory):
    """One picture painted with a canny unit (Pixel Perfect at 64×64), watched by the three views at once."""
    from diffusers import UNet2DConditionModel

    shown: list[dict] = []
    patch = pytest.MonkeyPatch()
    patch.setattr("IPython.display.display", lambda bundle, **kwargs: shown.append(bundle))
    unet = UNet2DConditionModel.from_pretrained(tiny_model_dir, subfolder="unet")
    folder = save_folder(tiny_controlnet(unet, seed=3), tmp_path_factory.mktemp("cn") / "cn")
    unit = {"module": "canny", "model": str(folder), "image": Image.fromarray(_picture()), "pixel_perfect": True}
    unit.update(threshold_a=50, threshold_b=120)
    request = tiny_request(tiny_model_dir, controlnet=read_units([unit]), width=SIZE, height=SIZE, steps=3)
    cell, stream, area = Watched(), io.StringIO(), LiveArea()
    try:
        result = render(request, Fanout(cell, ConsoleView(stream), LiveView(area)), reraise_interrupt=False)
    finally:
        patch.undo()
    edges = cv2.Canny(cv2.resize(_picture(), (SIZE, SIZE), interpolation=cv2.INTER_CUBIC), 50, 120)
    return {"result": result, "cell": cell, "shown": shown, "console": stream.getvalue(), "area": area, "edges": edges}


def _pictures(html: str) -> list[np.ndarray]:
    data = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(d))).convert("RGB")) for d in data]


def _detected_part(html: str) -> str:
    return html[html.index('<div class="jupyter-sd-detected">') :]


def test_the_maps_reach_the_view_before_the_first_step_as_the_preprocessor_made_them(painted):
    events = painted["cell"].events
    kinds = [event[0] for event in events]
    assert kinds.count("detected") == 1 and kinds.index("detected") < kinds.index("step")
    (_, maps, labels) = events[kinds.index("detected")]
    assert labels == ["ControlNet 0 · canny"]
    np.testing.assert_array_equal(np.asarray(maps[0]), np.repeat(painted["edges"][:, :, None], 3, axis=2))
    assert painted["edges"].any() and not painted["edges"].all()  # a real edge map, not a blank one
    np.testing.assert_array_equal(np.asarray(painted["result"].detected_maps[0]), np.asarray(maps[0]))


def test_the_cell_shows_the_map_beside_each_frame_and_keeps_it(painted):
    edges = np.repeat(painted["edges"][:, :, None], 3, axis=2)
    htmls = [bundle.get("text/html", "") for bundle in painted["shown"]]
    with_maps = [i for i, text in enumerate(htmls) if "jupyter-sd-detected" in text]
    first_frame = next(i for i, text in enumerate(htmls) if "preview at step" in text)
    assert with_maps[0] < first_frame  # shown as soon as detected, before any frame
    assert "ControlNet 0 · canny" in htmls[with_maps[0]]
    framed = [htmls[i] for i in with_maps if "preview at step" in htmls[i]]
    assert len(framed) == painted["cell"].frames == 3  # every frame stands beside the map
    for text in (htmls[with_maps[0]], *framed):
        np.testing.assert_array_equal(_pictures(_detected_part(text))[0], edges)
    assert len(_pictures(framed[-1])) == 2  # the frame, then the map
    final = htmls[with_maps[-1]]  # after the run: the map alone stays above the summary line
    assert with_maps[-1] > max(i for i, text in enumerate(htmls) if "preview at step" in text)
    assert len(_pictures(final)) == 1 and "1 image in" in htmls[-1]


def test_the_panel_shows_the_map_and_the_terminal_names_it(painted):
    value = painted["area"].maps.value
    assert "ControlNet 0 · canny" in value
    (shown,) = _pictures(value)
    np.testing.assert_array_equal(shown, np.repeat(painted["edges"][:, :, None], 3, axis=2))
    assert painted["area"].image.value  # the picture beside it
    assert "detected maps: ControlNet 0 · canny (64x64)" in painted["console"]


def test_a_hires_pass_reports_its_maps_again_and_the_view_keeps_one_per_unit(painted, tiny_model_dir):
    folder = painted["result"].request.controlnet[0].model
    unit = {"module": "canny", "model": folder, "image": Image.fromarray(_picture()), "pixel_perfect": True}
    unit.update(threshold_a=50, threshold_b=120)
    hires = {"hires": 2, "hires_steps": 2, "hires_denoise": 0.5, "width": SIZE // 2, "height": SIZE // 2}
    request = tiny_request(tiny_model_dir, controlnet=read_units([unit]), steps=2, **hires)
    stream = io.StringIO()
    shown: list[dict] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("IPython.display.display", lambda bundle, **kwargs: shown.append(bundle))
        cell = Watched()
        result = render(request, Fanout(cell, ConsoleView(stream)), reraise_interrupt=False)
    kinds = [event[0] for event in cell.events]
    assert kinds == ["detected", "step", "step", "detected", "step", "step"]  # once per pass, before its steps
    first, second = cell.events[0][1][0], cell.events[3][1][0]
    assert first.size == second.size == (SIZE // 2, SIZE // 2)  # both detected at the first pass's size
    np.testing.assert_array_equal(np.asarray(result.detected_maps[0]), np.asarray(first))
    final = shown[-2]["text/html"]  # the kept maps, then the summary line
    assert final.count("ControlNet 0 · canny") == 2 and len(_pictures(final)) == 1  # (alt and caption) one map
    assert stream.getvalue().count("detected maps: ControlNet 0 · canny (32x32)") == 2
