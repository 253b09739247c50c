"""``densepose`` and ``densepose_parula``: DensePose's body-part map, as sd-webui-controlnet's densepose annotator.

The network is the published TorchScript export (``densepose_r50_fpn_dl.torchscript``: detectron2's R50-FPN
DensePose with DeepLab head), run with ``torch.jit.load``. It takes the padded picture as a 3×H×W uint8 RGB tensor
and gives, per person, a box (x0, y0, x1, y1 in pixels) and the box's coarse segmentation, fine segmentation
(background + 24 parts) and U, V charts at the head's own resolution.

The map (``densepose_map``), as the extension paints it: on a black canvas, for each person in order, the box made
whole (x, y, width, height each truncated, width and height at least 1), the fine segmentation resized to it
(bilinear, corners not aligned), its most likely part kept where the resized coarse segmentation's most likely class
is not background; the part index times 255/24 (truncated to 8 bits) through OpenCV's viridis (``densepose``) or
parula (``densepose_parula``) colour map, painted where a part is (background pixels keep what the canvas has).
A box is clipped to the picture (the extension's painting fails on a box reaching out of it). For viridis, each
channel left at 0 is set to viridis's own background: red 68, green 1, blue 84 (channel by channel, as the
extension does); parula keeps black.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

PARTS = 24
"""DensePose's body parts (the fine segmentation's channels besides the background)."""
VIRIDIS_BACKGROUND = (68, 1, 84)
"""What each channel left at 0 becomes in the viridis map (viridis's colour at 0, RGB)."""
COLORMAPS = ("viridis", "parula")


def load_densepose(path: Path) -> Any:
    """The TorchScript export at `path`, on the CPU, in eval mode.

    Raises
    ------
    ValueError
        One line when the file does not load as TorchScript, or needs torchvision's detection ops and torchvision
        does not import beside this torch.
    """
    import torch

    try:  # the published export calls torchvision::nms; importing torchvision registers it
        import torchvision  # noqa: F401
    except Exception:  # noqa: BLE001 - absent, or a build that does not load beside this torch
        pass
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError) as error:
        text = str(error).strip()
        if "torchvision::" in text:
            msg = f"controlnet: {path.name} needs torchvision's ops (nms): install the torchvision built for this torch"
            raise ValueError(msg) from None
        why = text.splitlines()[0][:60] if text else type(error).__name__
        raise ValueError(f"controlnet: {path.name} is not a TorchScript export of DensePose ({why})") from None
    return module.eval()


def _device(net: Any) -> Any:
    import torch

    parameter = next(iter(net.parameters()), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def part_labels(fine: Any, coarse: Any, width: int, height: int) -> np.ndarray:
    """One person's part index per pixel of its box (height×width uint8, 0 = background).

    `fine` and `coarse` are the person's 1×25×S×S and 1×K×S×S segmentations at the head's resolution.
    """
    import torch.nn.functional as F  # noqa: N812

    size = (height, width)
    body = F.interpolate(coarse.float(), size, mode="bilinear", align_corners=False).argmax(dim=1) > 0
    parts = F.interpolate(fine.float(), size, mode="bilinear", align_corners=False).argmax(dim=1)
    return (parts * body.long())[0].cpu().numpy().astype(np.uint8)


def _box(box: Any) -> tuple[int, int, int, int]:
    """(x, y, width, height) of an (x0, y0, x1, y1) box, each truncated to an integer."""
    xywh = box.float().clone()
    xywh[2:] -= xywh[:2]
    x, y, w, h = (int(v) for v in xywh.long().tolist())
    return x, y, w, h


def paint_person(canvas: np.ndarray, labels: np.ndarray, x: int, y: int, colormap: int) -> None:
    """`labels` (a box's part indices) coloured by `colormap` onto `canvas` (BGR) at (x, y), parts only, clipped."""
    import cv2

    height, width = canvas.shape[:2]
    left, top = max(x, 0), max(y, 0)
    right, bottom = min(x + labels.shape[1], width), min(y + labels.shape[0], height)
    if right <= left or bottom <= top:
        return
    levels = (labels.astype(np.float32) * np.float32(255.0 / PARTS)).clip(0, 255).astype(np.uint8)
    colours = cv2.applyColorMap(levels, colormap)[top - y : bottom - y, left - x : right - x]
    parts = labels[top - y : bottom - y, left - x : right - x] > 0
    canvas[top:bottom, left:right][parts] = colours[parts]


def densepose_map(net: Any, image: np.ndarray, colormap: str = "viridis") -> np.ndarray:
    """The DensePose map of `image` (H×W×3 uint8 RGB): H×W×3 uint8 RGB, parts coloured by `colormap`."""
    import cv2
    import torch

    if colormap not in COLORMAPS:
        raise ValueError(f"controlnet: densepose colour map must be one of {', '.join(COLORMAPS)} (got {colormap!r})")
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).to(_device(net))
    with torch.no_grad():
        boxes, coarse, fine, _u, _v = net(x)
    canvas = np.zeros(image.shape[:2] + (3,), dtype=np.uint8)
    table = cv2.COLORMAP_VIRIDIS if colormap == "viridis" else cv2.COLORMAP_PARULA
    for i in range(len(boxes)):
        left, top, width, height = _box(boxes[i].cpu())
        labels = part_labels(fine[i : i + 1], coarse[i : i + 1], max(width, 1), max(height, 1))
        if width > 0 and height > 0:
            paint_person(canvas, labels, left, top, table)
    made = np.ascontiguousarray(canvas[:, :, ::-1])
    if colormap == "viridis":
        for channel, value in enumerate(VIRIDIS_BACKGROUND):
            made[:, :, channel][made[:, :, channel] == 0] = value
    return made
