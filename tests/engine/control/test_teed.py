"""``softedge_teed``: TEED in ``7_model.pth``'s layout (the key list below, written from sd-webui-controlnet's
``annotator/teed/ted.py``) loads strictly; the preprocessor's map equals a forward pass written here in plain torch
ops on the same random weights, followed by the extension's arithmetic (mean of the four maps, sigmoid, Safe Steps).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from helpers.annotator_nets import annotator_files, offline_refusal
from helpers.fake_web import FakeWebServer

from jupyter_sd.engine.control.modules import find_module, module_params
from jupyter_sd.engine.control.preprocessors import preprocess
from jupyter_sd.engine.control.teed import TeedNet
from jupyter_sd.engine.control.unit_maps import unit_map
from jupyter_sd.recipe.control_units import parse_unit_text


def _conv(name: str, cout: int, cin: int, kernel: int) -> dict[str, tuple[int, ...]]:
    return {f"{name}.weight": (cout, cin, kernel, kernel), f"{name}.bias": (cout,)}


SHAPES: dict[str, tuple[int, ...]] = {
    **_conv("block_1.conv1", 16, 3, 3),
    **_conv("block_1.conv2", 16, 16, 3),
    **_conv("block_2.conv1", 32, 16, 3),
    **_conv("block_2.conv2", 32, 32, 3),
    **_conv("dblock_3.denselayer1.conv1", 48, 32, 3),
    **_conv("dblock_3.denselayer1.conv2", 48, 48, 3),
    **_conv("side_1.conv", 32, 16, 1),
    **_conv("pre_dense_3.conv", 48, 32, 1),
    **_conv("up_block_1.features.0", 1, 16, 1),
    **_conv("up_block_1.features.2", 1, 1, 2),  # ConvTranspose2d: (in, out, k, k)
    **_conv("up_block_2.features.0", 1, 32, 1),
    **_conv("up_block_2.features.2", 1, 1, 2),
    **_conv("up_block_3.features.0", 16, 48, 1),
    **_conv("up_block_3.features.2", 16, 16, 4),
    **_conv("up_block_3.features.3", 1, 16, 1),
    **_conv("up_block_3.features.5", 1, 1, 4),
    **_conv("block_cat.DWconv1", 24, 1, 3),  # depthwise: 3 groups, ×8
    **_conv("block_cat.DWconv2", 24, 1, 3),  # depthwise: 24 groups
}
"""``7_model.pth``'s tensors: TED() of sd-webui-controlnet's ``annotator/teed/ted.py`` (58,910 parameters)."""


def teed_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights in the published layout: the first convolution scaled for 0..255 input, the up blocks and the
    fusion 3× stronger, so the map spans nearly 0..255 instead of sitting at the sigmoid's middle."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in SHAPES.items():
        gain = 4.5 if name.startswith(("up_block", "block_cat")) else 1.5
        scale = gain / int(np.prod(shape[1:])) ** 0.5 if len(shape) > 1 else 0.1
        state[name] = torch.randn(shape, generator=generator) * scale
    state["block_1.conv1.weight"] /= 100.0
    return state


def _smish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.tanh(torch.log(1 + torch.sigmoid(x)))


def teed_reference(s: dict[str, torch.Tensor], x: torch.Tensor) -> list[torch.Tensor]:
    """TED's forward on the tensors alone (ted.py's TED.forward, layer by layer)."""

    def conv(h, name, **kw):
        return F.conv2d(h, s[f"{name}.weight"], s[f"{name}.bias"], **kw)

    def up(h, name, steps):
        pad = {1: 0, 2: 1}[steps]
        for i in range(steps):
            h = _smish(conv(h, f"{name}.features.{3 * i}"))
            key = f"{name}.features.{3 * i + 2}"
            h = F.conv_transpose2d(h, s[f"{key}.weight"], s[f"{key}.bias"], stride=2, padding=pad)
        return h

    b1 = _smish(conv(_smish(conv(x, "block_1.conv1", stride=2, padding=1)), "block_1.conv2", padding=1))
    b2 = conv(_smish(conv(b1, "block_2.conv1", padding=1)), "block_2.conv2", padding=1)
    down = F.max_pool2d(b2, 3, 2, 1)
    added = down + conv(b1, "side_1.conv", stride=2)
    dense = conv(_smish(conv(_smish(added), "dblock_3.denselayer1.conv1", padding=2)), "dblock_3.denselayer1.conv2")
    b3 = 0.5 * (dense + conv(down, "pre_dense_3.conv"))
    sides = [up(b1, "up_block_1", 1), up(b2, "up_block_2", 1), up(b3, "up_block_3", 2)]
    first = conv(_smish(torch.cat(sides, 1)), "block_cat.DWconv1", padding=1, groups=3)
    second = conv(_smish(first), "block_cat.DWconv2", padding=1, groups=24)
    return [*sides, _smish((first + second).sum(1, keepdim=True))]


def _picture(height: int = 50, width: int = 75) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 255 // width, y * 255 // height, np.full_like(x, 90)], axis=2).astype(np.uint8)
    cv2.circle(image, (width // 2, height // 2), height // 3, (250, 240, 20), 3)
    cv2.line(image, (4, height - 6), (width - 4, 6), (10, 10, 220), 2)
    return image


def _expected(image: np.ndarray, steps: int, seed: int = 1) -> np.ndarray:
    """The extension's pipeline: short side to 64 (cubic up), edge pad to 64, TEED, mean, sigmoid, safe_step, crop."""
    height, width = image.shape[:2]
    k = 64 / min(height, width)
    size = (round(width * k), round(height * k))
    scaled = cv2.resize(image, size, interpolation=cv2.INTER_CUBIC)
    padded = np.pad(scaled, [[0, -size[1] % 64], [0, -size[0] % 64], [0, 0]], mode="edge")
    x = torch.from_numpy(padded.astype(np.float32)).permute(2, 0, 1)[None]
    with torch.no_grad():
        maps = [m[0, 0].numpy() for m in teed_reference(teed_state(seed), x)]
    edge = 1 / (1 + np.exp(-np.mean(np.stack(maps, 2), axis=2).astype(np.float64)))
    if steps:
        edge = (edge.astype(np.float32) * (steps + 1)).astype(np.int32).astype(np.float32) / steps
    return (edge * 255).clip(0, 255).astype(np.uint8)[: size[1], : size[0]]


@pytest.fixture()
def teed_file(tmp_path):
    with annotator_files(tmp_path / "models", {"TEED/7_model.pth": teed_state(1)}) as folder:
        yield folder / "TEED" / "7_model.pth"


def test_the_published_key_list_loads_strictly():
    net = TeedNet()
    assert {name: tuple(t.shape) for name, t in net.state_dict().items()} == SHAPES
    assert sum(t.numel() for t in net.state_dict().values()) == 58910
    TeedNet.from_state_dict({f"module.{k}": v for k, v in teed_state().items()})
    with pytest.raises(RuntimeError, match="Missing key"):
        TeedNet.from_state_dict({k: v for k, v in teed_state().items() if not k.startswith("block_cat.")})


def test_the_network_matches_the_layer_by_layer_reference():
    state = teed_state(2)
    x = torch.rand(1, 3, 64, 128, generator=torch.Generator().manual_seed(0)) * 255
    with torch.no_grad():
        made, expected = TeedNet.from_state_dict(state)(x), teed_reference(state, x)
    assert [tuple(m.shape) for m in made] == [(1, 1, 64, 128)] * 4
    for ours, theirs in zip(made, expected):
        assert theirs.std() > 1e-3
        torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_safe_steps_is_threshold_a_0_to_10_default_2():
    assert module_params(find_module("softedge_teed")) == (512, 2.0, None)
    assert find_module("softedge_teed").threshold_a.label == "Safe Steps"
    with pytest.raises(ValueError, match=r"Threshold A \(Safe Steps\) must be 0\.\.10, not 11") as refused:
        preprocess("softedge_teed", _picture(), 64, 11)
    assert "\n" not in str(refused.value) and len(str(refused.value)) < 200


@pytest.mark.parametrize("steps", [-1, 0, 5])
def test_the_map_is_the_extensions_arithmetic_on_teed(teed_file, steps):
    image = _picture()
    made = preprocess("softedge_teed", image, 64, steps)
    expected = _expected(image, 2 if steps == -1 else steps)
    assert made.shape == (64, 96, 3) and made.dtype == np.uint8
    np.testing.assert_allclose(made.astype(int), np.repeat(expected[:, :, None], 3, axis=2).astype(int), atol=1)
    levels = len(np.unique(made))
    if steps == 0:
        assert levels > 20  # a grey map, not quantized
    else:
        allowed = {min(255, int(255 * i / (2 if steps == -1 else steps))) for i in range(12)}
        assert set(np.unique(made)) <= allowed and levels >= 2


def test_a_unit_gets_the_map_with_its_threshold_a(teed_file):
    image = _picture(64, 64)
    unit = parse_unit_text("Module: softedge_teed, Model: m, Processor Res: 64, Threshold A: 0")
    made = unit_map(unit, image, 64, 64)
    np.testing.assert_array_equal(made.detected, preprocess("softedge_teed", image, 64, 0))
    assert not np.array_equal(made.detected, preprocess("softedge_teed", image, 64))


def test_weights_of_another_network_are_refused_in_one_line(teed_file):
    torch.save({"conv.weight": torch.zeros(1)}, teed_file)
    with pytest.raises(ValueError, match=r"7_model\.pth is not teed weights") as refused:
        preprocess("softedge_teed", _picture(), 64)
    assert "\n" not in str(refused.value) and len(str(refused.value)) < 200


def test_missing_weights_offline_are_refused_in_one_line(tmp_path, monkeypatch):
    line = offline_refusal(tmp_path / "empty", monkeypatch, "softedge_teed", _picture(), 64)
    assert "softedge_teed needs ControlNet/annotators/TEED/7_model.pth in the models folder (offline)" in line
    assert "bdsqlsz/qinglong_controlnet-lllite" in line


def test_missing_weights_are_fetched_once_from_the_extensions_url(tmp_path, monkeypatch):
    import io

    import huggingface_hub.constants as constants

    buffer = io.BytesIO()
    torch.save(teed_state(1), buffer)
    with FakeWebServer() as web, annotator_files(tmp_path / "models", {}) as folder:
        monkeypatch.setenv("HF_ENDPOINT", web.base)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        web.add_hub_file("bdsqlsz/qinglong_controlnet-lllite", "Annotators/7_model.pth", buffer.getvalue())
        made = preprocess("softedge_teed", _picture(), 64)
        assert (folder / "TEED" / "7_model.pth").read_bytes() == buffer.getvalue()
    np.testing.assert_allclose(made[:, :, 0].astype(int), _expected(_picture(), 2).astype(int), atol=1)
