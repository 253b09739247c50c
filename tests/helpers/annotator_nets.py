"""Tiny annotator weights with the key names and layouts lllyasviel/Annotators publishes, and their forward passes
written out with torch.nn.functional on the tensors alone: the references the annotator preprocessors must equal.

Only the widths are smaller (the files' layouts say the widths, so the package reads them from the tensors).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812


def _random(shapes: dict[str, tuple[int, ...]], seed: int, scale: float = 1.0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in shapes.items():
        fan_in = max(1, int(torch.tensor(shape[1:]).prod())) if len(shape) > 1 else 1
        state[name] = torch.randn(shape, generator=generator) * scale / fan_in**0.5
    return state


# -- HED: ControlNetHED.pth ------------------------------------------------------------------------------------------

HED_WIDTHS, HED_LAYERS = (4, 4, 8, 8, 8), (2, 2, 3, 3, 3)


def hed_state() -> dict[str, torch.Tensor]:
    shapes: dict[str, tuple[int, ...]] = {"norm": (1, 3, 1, 1)}
    cin = 3
    for i, (width, layers) in enumerate(zip(HED_WIDTHS, HED_LAYERS), start=1):
        for j in range(layers):
            shapes[f"block{i}.convs.{j}.weight"] = (width, cin if j == 0 else width, 3, 3)
            shapes[f"block{i}.convs.{j}.bias"] = (width,)
        shapes[f"block{i}.projection.weight"] = (1, width, 1, 1)
        shapes[f"block{i}.projection.bias"] = (1,)
        cin = width
    state = _random(shapes, 1, scale=1.0)
    state["norm"] = torch.tensor([120.0, 110.0, 100.0]).view(1, 3, 1, 1)
    return state


def hed_reference(state: dict[str, torch.Tensor], x: torch.Tensor) -> list[torch.Tensor]:
    """The five side outputs of HED for `x` (1×3×H×W, 0..255)."""
    h, sides = x - state["norm"], []
    for i, layers in enumerate(HED_LAYERS, start=1):
        if i > 1:
            h = F.max_pool2d(h, 2, 2)
        for j in range(layers):
            h = F.relu(F.conv2d(h, state[f"block{i}.convs.{j}.weight"], state[f"block{i}.convs.{j}.bias"], padding=1))
        sides.append(F.conv2d(h, state[f"block{i}.projection.weight"], state[f"block{i}.projection.bias"]))
    return sides


# -- PiDiNet: table5_pidinet.pth (carv4) ---------------------------------------------------------------------------

PIDI_WIDTH, PIDI_DIL = 4, 4
_STAGES = ((1, 3), (2, 4), (3, 4), (4, 4))
KINDS = ["cd", "ad", "rd", "cv"] * 4


def _stage_width(stage: int) -> int:
    return PIDI_WIDTH * (1, 2, 4, 4)[stage - 1]


def pidinet_state() -> dict[str, torch.Tensor]:
    """Keys as the published file has them, ``module.``-prefixed (it was saved from a DataParallel)."""
    c, d = PIDI_WIDTH, PIDI_DIL
    shapes: dict[str, tuple[int, ...]] = {"init_block.weight": (c, 3, 3, 3)}
    cin = c
    for stage, count in _STAGES:
        cout = _stage_width(stage)
        for i in range(1, count + 1):
            block = f"block{stage}_{i}"
            first = cin if i == 1 else cout
            if stage > 1 and i == 1:
                shapes[f"{block}.shortcut.weight"], shapes[f"{block}.shortcut.bias"] = (cout, first, 1, 1), (cout,)
            shapes[f"{block}.conv1.weight"] = (first, 1, 3, 3)
            shapes[f"{block}.conv2.weight"] = (cout, first, 1, 1)
        cin = cout
    for i, (stage, _) in enumerate(_STAGES):
        shapes[f"dilations.{i}.conv1.weight"], shapes[f"dilations.{i}.conv1.bias"] = (
            (d, _stage_width(stage), 1, 1),
            (d,),
        )
        for k in range(1, 5):
            shapes[f"dilations.{i}.conv2_{k}.weight"] = (d, d, 3, 3)
        shapes[f"attentions.{i}.conv1.weight"], shapes[f"attentions.{i}.conv1.bias"] = (4, d, 1, 1), (4,)
        shapes[f"attentions.{i}.conv2.weight"] = (1, 4, 3, 3)
        shapes[f"conv_reduces.{i}.conv.weight"], shapes[f"conv_reduces.{i}.conv.bias"] = (1, d, 1, 1), (1,)
    shapes["classifier.weight"], shapes["classifier.bias"] = (1, 4, 1, 1), (1,)
    return {f"module.{k}": v for k, v in _random(shapes, 2, scale=1.0).items()}


_RING = [0, 1, 2, 5, 8, 7, 6, 3]  # the 3×3 neighbours clockwise from the top left
_OUTER = [0, 2, 4, 10, 14, 20, 22, 24]  # radial: the 5×5 ring's corners and edge middles …
_INNER = [6, 7, 8, 11, 13, 16, 17, 18]  # … and the 3×3 ring inside them


def _differences(x: torch.Tensor, kind: str) -> torch.Tensor:
    """B×C×9×L: what each of the nine weights multiplies, per pixel, for a pixel-difference type."""
    b, c, h, w = x.shape
    if kind == "rd":
        p5 = F.unfold(x, 5, padding=2).view(b, c, 25, h * w)
        out = torch.zeros(b, c, 9, h * w)
        out[:, :, 1:] = p5[:, :, _OUTER] - p5[:, :, _INNER]  # weights 1..8 (the centre's too) go radial
        return out
    p = F.unfold(x, 3, padding=1).view(b, c, 9, h * w)
    if kind == "cv":
        return p
    if kind == "cd":
        return p - p[:, :, 4:5]
    out = torch.zeros_like(p)  # ad: each neighbour minus the next one clockwise
    for i, k in enumerate(_RING):
        out[:, :, k] = p[:, :, k] - p[:, :, _RING[(i + 1) % 8]]
    return out


def pdc_reference(x: torch.Tensor, weight: torch.Tensor, kind: str, depthwise: bool) -> torch.Tensor:
    b, _, h, w = x.shape
    diff = _differences(x, kind)
    flat = weight.flatten(2)
    if depthwise:
        return torch.einsum("ck,bckl->bcl", flat[:, 0], diff).view(b, -1, h, w)
    return torch.einsum("ock,bckl->bol", flat, diff).view(b, -1, h, w)


def pidinet_reference(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """PiDiNet's fused edge probability for `x` (1×3×H×W, 0..1)."""
    s = {k.removeprefix("module."): v for k, v in state.items()}
    h, layer, edges = pdc_reference(x, s["init_block.weight"], KINDS[0], False), 1, []
    for index, (stage, count) in enumerate(_STAGES):
        for i in range(1, count + 1):
            block = f"block{stage}_{i}"
            if stage > 1 and i == 1:
                h = F.max_pool2d(h, 2, 2)
            y = F.conv2d(
                F.relu(pdc_reference(h, s[f"{block}.conv1.weight"], KINDS[layer], True)), s[f"{block}.conv2.weight"]
            )
            h = y + (
                F.conv2d(h, s[f"{block}.shortcut.weight"], s[f"{block}.shortcut.bias"]) if i == 1 and stage > 1 else h
            )
            layer += 1
        g = F.conv2d(F.relu(h), s[f"dilations.{index}.conv1.weight"], s[f"dilations.{index}.conv1.bias"])
        dilated = [s[f"dilations.{index}.conv2_{k}.weight"] for k in range(1, 5)]
        g = sum(F.conv2d(g, w, padding=d, dilation=d) for w, d in zip(dilated, (5, 7, 9, 11)))
        a = F.conv2d(F.relu(g), s[f"attentions.{index}.conv1.weight"], s[f"attentions.{index}.conv1.bias"])
        g = g * torch.sigmoid(F.conv2d(a, s[f"attentions.{index}.conv2.weight"], padding=1))
        e = F.conv2d(g, s[f"conv_reduces.{index}.conv.weight"], s[f"conv_reduces.{index}.conv.bias"])
        edges.append(F.interpolate(e, x.shape[2:], mode="bilinear", align_corners=False))
    return torch.sigmoid(F.conv2d(torch.cat(edges, 1), s["classifier.weight"], s["classifier.bias"]))


# -- lineart: sk_model.pth / sk_model2.pth -------------------------------------------------------------------------

LINE_WIDTH, LINE_BLOCKS = 4, 3


def lineart_state(seed: int = 3) -> dict[str, torch.Tensor]:
    w = LINE_WIDTH
    shapes: dict[str, tuple[int, ...]] = {
        "model0.1.weight": (w, 3, 7, 7),
        "model0.1.bias": (w,),
        "model1.0.weight": (2 * w, w, 3, 3),
        "model1.0.bias": (2 * w,),
        "model1.3.weight": (4 * w, 2 * w, 3, 3),
        "model1.3.bias": (4 * w,),
    }
    for b in range(LINE_BLOCKS):
        for j in (1, 5):
            shapes[f"model2.{b}.conv_block.{j}.weight"] = (4 * w, 4 * w, 3, 3)
            shapes[f"model2.{b}.conv_block.{j}.bias"] = (4 * w,)
    shapes.update(
        {
            "model3.0.weight": (4 * w, 2 * w, 3, 3),  # transposed convolutions: in, out, k, k
            "model3.0.bias": (2 * w,),
            "model3.3.weight": (2 * w, w, 3, 3),
            "model3.3.bias": (w,),
            "model4.1.weight": (1, w, 7, 7),
            "model4.1.bias": (1,),
        }
    )
    return _random(shapes, seed, scale=2.0)


def lineart_reference(s: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The generator's output (0..1) for `x` (1×3×H×W, 0..1)."""

    def conv(h, name, pad):
        return F.conv2d(F.pad(h, (pad,) * 4, mode="reflect"), s[f"{name}.weight"], s[f"{name}.bias"])

    h = F.relu(F.instance_norm(conv(x, "model0.1", 3)))
    for name in ("model1.0", "model1.3"):
        h = F.relu(F.instance_norm(F.conv2d(h, s[f"{name}.weight"], s[f"{name}.bias"], stride=2, padding=1)))
    for b in range(LINE_BLOCKS):
        r = F.relu(F.instance_norm(conv(h, f"model2.{b}.conv_block.1", 1)))
        h = h + F.instance_norm(conv(r, f"model2.{b}.conv_block.5", 1))
    for name in ("model3.0", "model3.3"):
        up = F.conv_transpose2d(h, s[f"{name}.weight"], s[f"{name}.bias"], stride=2, padding=1, output_padding=1)
        h = F.relu(F.instance_norm(up))
    return torch.sigmoid(conv(h, "model4.1", 3))


# -- lineart_anime: netG.pth (a pix2pix U-Net of eight skip blocks) -------------------------------------------------

ANIME_WIDTH = 2


def _anime_levels() -> list[tuple[int, int, int]]:
    """(outer, inner, input channels) from the outermost block in."""
    w = ANIME_WIDTH
    return [(1, w, 3), (w, 2 * w, w), (2 * w, 4 * w, 2 * w), (4 * w, 8 * w, 4 * w)] + [(8 * w, 8 * w, 8 * w)] * 4


def _anime_prefix(level: int) -> str:
    """The outermost block holds its inner block at index 1, every other block at index 3."""
    return "model.model." + ("1.model." if level else "") + "3.model." * max(0, level - 1)


def anime_state() -> dict[str, torch.Tensor]:
    """Keys as ``netG.pth`` has them (``model.model.1.model.1.weight`` …)."""
    levels, shapes = _anime_levels(), {}
    for k, (outer, inner, cin) in enumerate(levels):
        prefix, innermost = _anime_prefix(k), k == len(levels) - 1
        down, up = (0, 3) if k == 0 else (1, 3 if innermost else 5)
        shapes[f"{prefix}{down}.weight"], shapes[f"{prefix}{down}.bias"] = (inner, cin, 4, 4), (inner,)
        shapes[f"{prefix}{up}.weight"] = (inner if innermost else inner * 2, outer, 4, 4)
        shapes[f"{prefix}{up}.bias"] = (outer,)
    return _random(shapes, 6, scale=1.0)


def anime_reference(s: dict[str, torch.Tensor], x: torch.Tensor, level: int = 0) -> torch.Tensor:
    """The U-Net's output (-1..1) for `x` in -1..1. A block's skip is leaky(x): the original's in-place LeakyReLU."""
    levels, p = _anime_levels(), _anime_prefix(level)
    if level == 0:
        h = anime_reference(s, F.conv2d(x, s[f"{p}0.weight"], s[f"{p}0.bias"], stride=2, padding=1), 1)
        return torch.tanh(F.conv_transpose2d(F.relu(h), s[f"{p}3.weight"], s[f"{p}3.bias"], stride=2, padding=1))
    skip = F.leaky_relu(x, 0.2)
    h = F.conv2d(skip, s[f"{p}1.weight"], s[f"{p}1.bias"], stride=2, padding=1)
    if level == len(levels) - 1:
        up = F.conv_transpose2d(F.relu(h), s[f"{p}3.weight"], s[f"{p}3.bias"], stride=2, padding=1)
    else:
        h = anime_reference(s, F.instance_norm(h), level + 1)
        up = F.conv_transpose2d(F.relu(h), s[f"{p}5.weight"], s[f"{p}5.bias"], stride=2, padding=1)
    return torch.cat([skip, F.instance_norm(up)], 1)


def tiny_depth_anything(seed: int) -> Any:
    """A tiny Depth Anything (Dinov2 backbone, patch 14) built from config, for the depth preprocessors."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    torch.manual_seed(seed)
    backbone = Dinov2Config(
        image_size=28,
        patch_size=14,
        hidden_size=16,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=32,
        out_features=["stage1", "stage2", "stage3", "stage4"],
        reshape_hidden_states=False,
    )
    config = DepthAnythingConfig(
        backbone_config=backbone,
        fusion_hidden_size=8,
        neck_hidden_sizes=[4, 8, 8, 16],
        head_hidden_size=4,
        reassemble_hidden_size=16,
        patch_size=14,
    )
    return DepthAnythingForDepthEstimation(config).eval()


# -- a models folder holding annotator files -------------------------------------------------------------------------


@contextlib.contextmanager
def annotator_files(root: Path, files: dict[str, Any]) -> Iterator[Path]:
    """A models folder at `root` whose ``ControlNet/annotators/`` holds `files` (path inside it → what to
    ``torch.save``), in use (no annotator loaded) until the block ends; yields the annotators folder."""
    from jupyter_sd import library
    from jupyter_sd.engine.control.annotator_nets import unload_annotators

    folder = root / "ControlNet" / "annotators"
    for name, state in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, folder / name)
    before = library.models_dir()
    library.set_models_dir(root)
    unload_annotators()
    try:
        yield folder
    finally:
        unload_annotators()
        library.set_models_dir(before)


def offline_refusal(root: Path, monkeypatch: Any, module: str, *args: Any, **kwargs: Any) -> str:
    """The one line `preprocess(module, *args, **kwargs)` raises offline with the models folder at `root`."""
    import huggingface_hub.constants as constants
    import pytest

    from jupyter_sd import library
    from jupyter_sd.engine.control.annotator_nets import unload_annotators
    from jupyter_sd.engine.control.preprocessors import preprocess

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "is_offline_mode", lambda: True, raising=False)
    before = library.models_dir()
    library.set_models_dir(root)
    try:
        with pytest.raises(ValueError) as refused:
            preprocess(module, *args, **kwargs)
    finally:
        library.set_models_dir(before)
        unload_annotators()
    line = str(refused.value)
    assert "\n" not in line and len(line) < 200, line
    return line
