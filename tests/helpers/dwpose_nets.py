"""Tiny TorchScript stand-ins for DWPose's two networks, with the published outputs' shapes and known answers.

The detector answers YOLOX-L's (1, 8400, 85) rows: zeros except the rows given (a box in grid cells of its stride,
objectness, class probabilities); one row's objectness can be read from the letterboxed input (a "probe" pixel of its
red channel / 255), so the picture decides whether that box is found. The pose network answers SimCC vectors
(N, 133, 576) and (N, 133, 768) (AP10K's: N, 17, 512 twice): -1 everywhere except each keypoint's peak at the bins
given, valued at its score; the first point's (DWPose's nose) score is the normalized red value at the crop's centre
pixel, so the crop and the normalization show.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

GRIDS = ((8, 80, 0), (16, 40, 6400), (32, 20, 8000))
"""(stride, side, first row) of YOLOX-L's three grids at 640²."""


@dataclass(frozen=True)
class Row:
    """One detector row: the anchor (stride, grid x, grid y), the box's centre offset (cells) and size (pixels)."""

    stride: int
    gx: int
    gy: int
    dx: float
    dy: float
    width: float
    height: float
    objectness: float
    classes: dict[int, float]

    @property
    def index(self) -> int:
        side, first = {s: (n, f) for s, n, f in GRIDS}[self.stride]
        return first + self.gy * side + self.gx

    def box(self, ratio: float) -> tuple[float, float, float, float]:
        """The box (x1, y1, x2, y2) in the picture's pixels, from YOLOX's decoding written out."""
        cx, cy = (self.dx + self.gx) * self.stride, (self.dy + self.gy) * self.stride
        return tuple(
            v / ratio for v in (cx - self.width / 2, cy - self.height / 2, cx + self.width / 2, cy + self.height / 2)
        )


class TinyYolox(nn.Module):
    def __init__(self, rows: torch.Tensor, probe_row: int, probe_y: int, probe_x: int) -> None:
        super().__init__()
        self.register_buffer("rows", rows)
        self.probe_row, self.probe_y, self.probe_x = probe_row, probe_y, probe_x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.rows.clone()
        if self.probe_row >= 0:
            out[0, self.probe_row, 4] = x[0, 0, self.probe_y, self.probe_x] / 255.0
        return out


def detector(rows: list[Row], probe: tuple[int, int, int] | None = None) -> torch.jit.ScriptModule:
    """The scripted detector; `probe` = (row number in `rows`, y, x): that row's objectness is the input's red there."""
    table = torch.zeros(1, 8400, 85)
    for row in rows:
        values = [row.dx, row.dy, math.log(row.width / row.stride), math.log(row.height / row.stride), row.objectness]
        table[0, row.index, :5] = torch.tensor(values)
        for cls, p in row.classes.items():
            table[0, row.index, 5 + cls] = p
    which, y, x = probe if probe is not None else (-1, 0, 0)
    return torch.jit.script(TinyYolox(table, rows[which].index if which >= 0 else -1, y, x))


def peaks(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each keypoint's x bin (of 576), y bin (of 768) and score: most 0.9, some 0.2 (dropped), some -0.5 (none);
    the right hand (113..133 less the neck: 112..132) all 0.1, so it is None."""
    rng = np.random.RandomState(seed)
    bx, by = rng.randint(40, 536, 133), rng.randint(40, 728, 133)
    scores = np.full(133, 0.9)
    scores[rng.rand(133) < 0.15] = 0.2
    scores[rng.rand(133) < 0.1] = -0.5
    scores[112:133] = 0.1
    return bx, by, scores


class TinyRtmPose(nn.Module):
    def __init__(self, simcc_x: torch.Tensor, simcc_y: torch.Tensor, nose_x: int, nose_y: int) -> None:
        super().__init__()
        self.register_buffer("simcc_x", simcc_x)
        self.register_buffer("simcc_y", simcc_y)
        self.nose_x, self.nose_y = nose_x, nose_y

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = x.shape[0]
        sx, sy = self.simcc_x.expand(n, -1, -1).clone(), self.simcc_y.expand(n, -1, -1).clone()
        value = x[:, 0, x.shape[2] // 2, x.shape[3] // 2]
        sx[:, 0, self.nose_x] = value
        sy[:, 0, self.nose_y] = value
        return sx, sy


def pose_net(
    bx: np.ndarray, by: np.ndarray, scores: np.ndarray, bins: tuple[int, int] = (576, 768)
) -> torch.jit.ScriptModule:
    """The scripted pose network answering the peaks (the first point's score read from the input); `bins`: its
    SimCC vectors' lengths (twice the input's width and height: DWPose's 288×384, AP10K's 256² is (512, 512))."""
    count = len(bx)
    sx, sy = torch.full((1, count, bins[0]), -1.0), torch.full((1, count, bins[1]), -1.0)
    for k in range(count):
        sx[0, k, int(bx[k])] = float(scores[k])
        sy[0, k, int(by[k])] = float(scores[k]) + (0.1 if scores[k] > 0 else 0.0)  # the score: the smaller one
    return torch.jit.script(TinyRtmPose(sx, sy, int(bx[0]), int(by[0])))


def save_dwpose(folder: Path, det: torch.jit.ScriptModule, pose: torch.jit.ScriptModule) -> Path:
    """Both exports under their published names in `folder` (``ControlNet/annotators/openpose``)."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.jit.save(det, str(folder / "yolox_l.torchscript.pt"))
    torch.jit.save(pose, str(folder / "dw-ll_ucoco_384_bs5.torchscript.pt"))
    return folder
