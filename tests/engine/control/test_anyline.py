"""``softedge_anyline``: MistoLine's ``MTEED.pth`` (TEED's layout, random weights here) in ``TEED/``, its map
combined with ``lineart_standard``'s faint lines as sd-webui-controlnet's ``PreprocessorAnyline`` does.

The reference below is the extension's sequence written out on numpy: the picture scaled and edge-padded, TEED's
soft edges (the network is ``TeedNet``, which ``test_teed.py`` checks layer by layer; mean, sigmoid and Safe Steps
written here), ``lineart_standard`` (σ 6, median of the pixels above 8 to 127), its intensity mask (bounds 0..1,
three channels), skimage's ``remove_small_objects(min_size=36, connectivity=1)`` as a flood fill over the three
channels' voxels, ``combine_layers`` in uint8, the padding cropped.
"""

from __future__ import annotations

import io
from collections import deque

import cv2
import numpy as np
import pytest
import torch
from helpers.annotator_nets import annotator_files, offline_refusal
from helpers.fake_web import FakeWebServer

from jupyter_sd.engine.control.anyline import remove_small_objects
from jupyter_sd.engine.control.modules import find_module, module_params
from jupyter_sd.engine.control.preprocessors import preprocess
from jupyter_sd.engine.control.teed import TeedNet
from jupyter_sd.engine.control.unit_maps import unit_map
from jupyter_sd.recipe.control_units import parse_unit_text


def mteed_state(seed: int) -> dict[str, torch.Tensor]:
    """Random weights in TEED's published layout, scaled so the map spans 0..255 on 0..255 input."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, tensor in TeedNet().state_dict().items():
        gain = 4.5 if name.startswith(("up_block", "block_cat")) else 1.5
        fan_in = int(np.prod(tensor.shape[1:])) if tensor.ndim > 1 else 0
        state[name] = torch.randn(tensor.shape, generator=generator) * (gain / fan_in**0.5 if fan_in else 0.1)
    state["block_1.conv1.weight"] /= 100.0
    return state


def faint_bands(height: int = 64, width: int = 100) -> np.ndarray:
    """A flat picture with two faint bands (3 levels darker, 2 wide), a dark line and a circle: at processor
    resolution 64 its ``lineart_standard`` has value-1 groups of 11, 12 and 23 pixels (36 voxels: the boundary)."""
    image = np.full((height, width, 3), 200, np.uint8)
    image[:, 30:32] -= 3
    image[10:50, 70:72] -= 3
    cv2.line(image, (2, height - 3), (width - 3, 2), (20, 20, 20), 1)
    cv2.circle(image, (20, 20), 8, (60, 60, 60), 1)
    return image


def colours(height: int = 50, width: int = 75) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 255 // width, y * 255 // height, np.full_like(x, 90)], axis=2).astype(np.uint8)
    cv2.circle(image, (width // 2, height // 2), height // 3, (250, 240, 20), 3)
    cv2.line(image, (4, height - 6), (width - 4, 6), (10, 10, 220), 2)
    return image


# -- the reference ---------------------------------------------------------------------------------------------------


def flood_fill_removal(voxels: np.ndarray, min_size: int) -> np.ndarray:
    """skimage's remove_small_objects on a bool array of any rank, connectivity 1 (face neighbours): brute force."""
    seen, out = np.zeros_like(voxels), voxels.copy()
    steps = [tuple(d if axis == k else 0 for k in range(voxels.ndim)) for axis in range(voxels.ndim) for d in (-1, 1)]
    for start in zip(*np.nonzero(voxels)):
        if seen[start]:
            continue
        group, todo = [], deque([start])
        seen[start] = True
        while todo:
            here = todo.popleft()
            group.append(here)
            for step in steps:
                there = tuple(h + s for h, s in zip(here, step))
                inside = all(0 <= t < n for t, n in zip(there, voxels.shape))
                if inside and voxels[there] and not seen[there]:
                    seen[there] = True
                    todo.append(there)
        if len(group) < min_size:
            for voxel in group:
                out[voxel] = False
    return out


def _scale_pad(image: np.ndarray, res: int) -> tuple[np.ndarray, tuple[int, int]]:
    height, width = image.shape[:2]
    k = res / min(height, width)
    size = (round(width * k), round(height * k))
    scaled = cv2.resize(image, size, interpolation=cv2.INTER_CUBIC if k > 1 else cv2.INTER_AREA)
    return np.pad(scaled, [[0, -size[1] % 64], [0, -size[0] % 64], [0, 0]], mode="edge"), (size[1], size[0])


def reference(image: np.ndarray, res: int, steps: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(the extension's map, MTEED's map alone, the kept line pixels), cropped; three channels each but the last."""
    padded, (height, width) = _scale_pad(image, res)
    x = torch.from_numpy(padded.astype(np.float32)).permute(2, 0, 1)[None]
    with torch.no_grad():
        sides = [s[0, 0].numpy() for s in TeedNet.from_state_dict(mteed_state(seed))(x)]
    edge = 1 / (1 + np.exp(-np.mean(np.stack(sides, 2), axis=2).astype(np.float64)))
    if steps:
        edge = (edge.astype(np.float32) * (steps + 1)).astype(np.int32).astype(np.float32) / steps
    mteed = np.repeat((edge * 255).clip(0, 255).astype(np.uint8)[:, :, None], 3, axis=2)
    pixels = padded.astype(np.float32)
    darker = np.min(cv2.GaussianBlur(pixels, (0, 0), 6.0) - pixels, axis=2).clip(0, 255)
    lines = darker[darker > 8]
    darker /= max(16, np.median(lines) if lines.size else 16)  # the extension's max(16, nan) of no pixels is 16
    lineart = np.repeat((darker * 127).clip(0, 255).astype(np.uint8)[:, :, None], 3, axis=2)
    first = lineart[:, :, 0]
    masked = np.repeat(np.where((first >= 0) & (first <= 1), first, 0)[:, :, None], 3, axis=2)
    top = masked * flood_fill_removal(masked.astype(bool), 36)
    mask = top.astype(bool)
    screen = 1 - (1 - top) * (1 - mteed)  # uint8, as the extension's combine_layers
    combined = mteed * ~mask + screen * mask
    return combined[:height, :width], mteed[:height, :width], mask[:height, :width, 0]


@pytest.fixture()
def mteed_file(tmp_path):
    with annotator_files(tmp_path / "models", {"TEED/MTEED.pth": mteed_state(1)}) as folder:
        yield folder / "TEED" / "MTEED.pth"


# -- tests -----------------------------------------------------------------------------------------------------------


def test_small_objects_are_removed_as_skimage_does_on_three_channels():
    rng = np.random.default_rng(0)
    for density in (0.3, 0.5, 0.6):
        mask = rng.random((40, 50)) < density
        three = flood_fill_removal(np.repeat(mask[:, :, None], 3, axis=2), 36)
        assert (three == three[:, :, :1]).all()
        np.testing.assert_array_equal(remove_small_objects(mask, 36, channels=3), three[:, :, 0])
        np.testing.assert_array_equal(remove_small_objects(mask, 5), flood_fill_removal(mask, 5))
    line = np.zeros((5, 30), bool)
    line[1, 2:13], line[3, 2:14] = True, True  # 11 and 12 pixels: 33 and 36 voxels
    kept = line.copy()
    kept[1] = False
    np.testing.assert_array_equal(remove_small_objects(line, 36, channels=3), kept)
    stairs = np.eye(14, dtype=bool)  # 14 pixels touching at corners only: 14 objects of 3 voxels
    assert not remove_small_objects(stairs, 36, channels=3).any()


def test_slider_ranges_and_defaults():
    module = find_module("softedge_anyline")
    assert module_params(module) == (1280, 2.0, None)
    assert (module.resolution.minimum, module.resolution.maximum) == (64, 2048)
    assert module.threshold_a.label == "Safe Steps" and module.threshold_b is None
    for args, words in (
        ((2049,), r"Processor Res \(Resolution\) must be 64\.\.2048, not 2049"),
        ((64, 11), r"Threshold A \(Safe Steps\) must be 0\.\.10, not 11"),
    ):
        with pytest.raises(ValueError, match=words) as refused:
            preprocess("softedge_anyline", faint_bands(), *args)
        assert "\n" not in str(refused.value) and len(str(refused.value)) < 200


@pytest.mark.parametrize("steps", [-1, 0, 5])
def test_the_map_is_the_extensions_combination(mteed_file, steps):
    image = faint_bands()
    made = preprocess("softedge_anyline", image, 64, steps)
    expected, mteed, kept = reference(image, 64, 2 if steps == -1 else steps, seed=1)
    assert made.shape == (64, 100, 3) and made.dtype == np.uint8
    np.testing.assert_allclose(made.astype(int), expected.astype(int), atol=1)
    assert kept.sum() == 12 + 23  # the 11-pixel group (33 voxels) went, the 12- and 23-pixel ones stayed
    assert (made[kept] == 1).all() and (np.abs(mteed[kept].astype(int) - 1) > 1).any()
    np.testing.assert_allclose(made[~kept].astype(int), mteed[~kept].astype(int), atol=1)


@pytest.mark.parametrize(("size", "res"), [((50, 75), 72), ((64, 100), 128)])
def test_other_resolutions_combine_on_the_padded_picture(mteed_file, size, res):
    """72 is no multiple of 64: the extension's second lineart scaling fails there; its map where it has one."""
    image = colours(*size) if size == (50, 75) else faint_bands(*size)
    made = preprocess("softedge_anyline", image, res)
    expected, _, _ = reference(image, res, 2, seed=1)
    np.testing.assert_allclose(made.astype(int), expected.astype(int), atol=1)


def test_anyline_reads_mteed_and_teed_its_own_file(tmp_path):
    files = {"TEED/MTEED.pth": mteed_state(1), "TEED/7_model.pth": mteed_state(2)}
    with annotator_files(tmp_path / "models", files):
        anyline = preprocess("softedge_anyline", faint_bands(), 64, 0)
        teed = preprocess("softedge_teed", faint_bands(), 64, 0)
    _, mine, kept = reference(faint_bands(), 64, 0, seed=1)
    _, other, _ = reference(faint_bands(), 64, 0, seed=2)
    np.testing.assert_allclose(anyline[~kept].astype(int), mine[~kept].astype(int), atol=1)
    np.testing.assert_allclose(teed.astype(int), other.astype(int), atol=1)


def test_a_unit_gets_the_map_with_its_threshold_a(mteed_file):
    image = faint_bands()
    unit = parse_unit_text("Module: softedge_anyline, Model: m, Processor Res: 64, Threshold A: 0")
    made = unit_map(unit, image, 64, 64).detected
    np.testing.assert_array_equal(made, preprocess("softedge_anyline", image, 64, 0))
    assert not np.array_equal(made, preprocess("softedge_anyline", image, 64))  # Safe Steps 2


def test_missing_weights_offline_are_refused_in_one_line(tmp_path, monkeypatch):
    line = offline_refusal(tmp_path / "empty", monkeypatch, "softedge_anyline", faint_bands(), 64)
    assert "softedge_anyline needs ControlNet/annotators/TEED/MTEED.pth in the models folder (offline)" in line
    assert line.endswith("hub: TheMistoAI/MistoLine")


def test_missing_weights_are_fetched_once_from_the_extensions_url(tmp_path, monkeypatch):
    import huggingface_hub.constants as constants

    buffer = io.BytesIO()
    torch.save(mteed_state(1), buffer)
    with FakeWebServer() as web, annotator_files(tmp_path / "models", {}) as folder:
        monkeypatch.setenv("HF_ENDPOINT", web.base)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        web.add_hub_file("TheMistoAI/MistoLine", "Anyline/MTEED.pth", buffer.getvalue())
        made = preprocess("softedge_anyline", faint_bands(), 64)
        assert (folder / "TEED" / "MTEED.pth").read_bytes() == buffer.getvalue()
    np.testing.assert_allclose(made.astype(int), reference(faint_bands(), 64, 2, seed=1)[0].astype(int), atol=1)
