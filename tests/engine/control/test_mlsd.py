"""``mlsd``: the published M-LSD large layout loads strictly, its line decoding on hand-made maps gives the known
segments, lines are drawn 1 px white, and the preprocessor runs the network saved as ``mlsd_large_512_fp32.pth``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.annotator_nets import annotator_files, offline_refusal
from helpers.pose_nets import mlsd_shapes, mlsd_state

from jupyter_sd.engine.control.mlsd import MlsdLarge, draw_lines, network_input, segments
from jupyter_sd.engine.control.modules import find_module, module_params
from jupyter_sd.engine.control.preprocessors import preprocess
from jupyter_sd.engine.control.resolution import scale_with_pad


def test_the_published_layout_loads_strictly():
    shapes = mlsd_shapes()
    net = MlsdLarge()
    assert {name: tuple(t.shape) for name, t in net.state_dict().items()} == shapes
    net.load_state_dict(mlsd_state(), strict=True)
    with torch.no_grad():
        assert net(torch.zeros(1, 4, 64, 96)).shape == (1, 9, 32, 48)


def _maps() -> torch.Tensor:
    """32² maps: centre logits −10 but for three centres; displacements only where a line is meant."""
    maps = torch.zeros(1, 9, 32, 32)
    maps[0, 0] = -10.0
    maps[0, 0, 5, 7], maps[0, 1:5, 5, 7] = 2.0, torch.tensor([-4.0, 0.0, 4.5, 0.0])  # score 0.88, 8.5 long
    maps[0, 0, 5, 8], maps[0, 1:5, 5, 8] = 1.5, torch.tensor([0.0, -9.0, 0.0, 9.0])  # not a 3×3 maximum: dropped
    maps[0, 0, 20, 20], maps[0, 1:5, 20, 20] = 0.0, torch.tensor([0.0, -2.0, 0.0, 2.0])  # score 0.5, 4 long
    maps[0, 0, 12, 3], maps[0, 1:5, 12, 3] = -3.0, torch.tensor([-5.0, 0.0, 5.0, 0.0])  # score 0.047
    return maps


def test_segments_are_the_scored_centres_displacements_doubled():
    found = segments(_maps(), 0.1, 0.1)
    np.testing.assert_allclose(found, [[2 * 3, 2 * 5, 2 * 11.5, 2 * 5], [2 * 20, 2 * 18, 2 * 20, 2 * 22]])
    np.testing.assert_allclose(segments(_maps(), 0.1, 5.0), found[:1])  # the 4-long one is under the distance
    np.testing.assert_allclose(segments(_maps(), 0.6, 0.1), found[:1])  # the 0.5 one is under the value
    np.testing.assert_allclose(segments(_maps(), 0.01, 0.1)[2], [2 * -2, 2 * 12, 2 * 8, 2 * 12])
    assert segments(_maps(), 0.95, 0.1).shape == (0, 4)


def test_lines_are_drawn_one_pixel_white_with_ends_truncated():
    lines = draw_lines(np.array([[6.9, 10.2, 22.7, 10.9], [40.0, 36.0, 40.0, 44.0]]), 48, 64)
    expected = np.zeros((48, 64), np.uint8)
    expected[10, 6:23] = 255
    expected[36:45, 40] = 255
    np.testing.assert_array_equal(lines, expected)
    assert not draw_lines(np.zeros((0, 4)), 8, 8).any()


def test_the_network_sees_rgb_and_a_channel_of_ones_in_minus_one_to_one():
    image = np.zeros((2, 3, 3), np.uint8)
    image[0, 0] = (255, 0, 51)
    made = network_input(image)
    assert made.shape == (1, 4, 2, 3) and made.dtype == torch.float32
    torch.testing.assert_close(made[0, :, 0, 0], torch.tensor([1.0, -1.0, 51 / 127.5 - 1, 1 / 127.5 - 1]))


def test_thresholds_are_the_extensions_sliders():
    mlsd = find_module("mlsd")
    assert module_params(mlsd) == (512, 0.1, 0.1)
    assert module_params(mlsd, 256, 2.0, 20.0) == (256, 2.0, 20.0)
    with pytest.raises(ValueError, match=r"MLSD Distance Threshold\) must be 0.01..20"):
        module_params(mlsd, 512, 0.1, 25)


@pytest.fixture()
def mlsd_file(tmp_path):
    with annotator_files(tmp_path / "models", {"mlsd/mlsd_large_512_fp32.pth": mlsd_state(seed=5)}) as folder:
        yield folder / "mlsd"


def _picture() -> np.ndarray:
    rng = np.random.default_rng(1)
    picture = rng.integers(0, 80, (50, 70, 3), dtype=np.uint8)
    picture[10:40, 20] = 250
    return picture


def test_mlsd_draws_the_networks_lines_on_the_padded_picture(mlsd_file):
    made = preprocess("mlsd", _picture(), 64, 0.1, 0.1)
    padded, (height, width) = scale_with_pad(_picture(), 64)
    net = MlsdLarge()
    net.load_state_dict(mlsd_state(seed=5))
    with torch.no_grad():
        maps = net.eval()(network_input(padded))
    expected = draw_lines(segments(maps, 0.1, 0.1), *padded.shape[:2])[:height, :width]
    assert made.shape == (height, width, 3) and made.any()
    np.testing.assert_array_equal(made, np.repeat(expected[:, :, None], 3, axis=2))
    fewer = preprocess("mlsd", _picture(), 64, 0.1, 20.0)  # longer lines only
    assert fewer.sum() < made.sum() and not (fewer > made).any()


def test_mlsd_without_its_file_offline_is_refused_in_one_line(tmp_path, monkeypatch):
    line = offline_refusal(tmp_path, monkeypatch, "mlsd", _picture(), 64)
    assert "ControlNet/annotators/mlsd/mlsd_large_512_fp32.pth" in line and "offline" in line
    assert "\n" not in line and len(line) < 200


def test_weights_of_another_network_are_refused_in_one_line(mlsd_file):
    torch.save({"conv.weight": torch.zeros(1)}, mlsd_file / "mlsd_large_512_fp32.pth")
    with pytest.raises(ValueError, match=r"mlsd_large_512_fp32\.pth is not mlsd weights"):
        preprocess("mlsd", _picture(), 64)
