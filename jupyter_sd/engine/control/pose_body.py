"""OpenPose's body post-processing, as sd-webui-controlnet's ``annotator/openpose/body.py`` does it.

The picture is scaled so its height is 184 (0.5 × OpenPose's box size 368: the extension's one scale), padded
right and down to a multiple of 8 with grey 128, fed in BGR as ``x/256 − 0.5``; the 19 heatmaps and 38 PAFs (each
channel alone: area down, Lanczos up) come back ×8, lose the padding and are resized to the picture. Peaks: each
part's heatmap blurred (Gaussian σ 3), local maxima over the four neighbours above 0.1. Limbs: each pair of part
candidates is scored by the PAF along ten points between them (more than 80 % above 0.05, the mean plus a penalty
for limbs longer than half the picture's height above 0), the best pairs kept greedily. People: limbs joined into
rows of 18 part ids plus the total score and part count; rows with fewer than 4 parts or a mean score under 0.4 go.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

BOX, STRIDE, PAD_VALUE = 368, 8, 128
PEAK_THRESHOLD, PAF_THRESHOLD, MIDPOINTS = 0.1, 0.05, 10
LIMBS = [
    (2, 3), (2, 6), (3, 4), (4, 5), (6, 7), (7, 8), (2, 9), (9, 10), (10, 11), (2, 12),
    (12, 13), (13, 14), (2, 1), (1, 15), (15, 17), (1, 16), (16, 18), (3, 17), (6, 18),
]  # fmt: skip
"""The 19 limbs as pairs of 1-based parts (0 nose, 1 neck, 2–4 right arm, 5–7 left arm … 14–17 eyes and ears)."""
PAF_CHANNELS = [
    (12, 13), (20, 21), (14, 15), (16, 17), (22, 23), (24, 25), (0, 1), (2, 3), (4, 5), (6, 7),
    (8, 9), (10, 11), (28, 29), (30, 31), (34, 35), (32, 33), (36, 37), (18, 19), (26, 27),
]  # fmt: skip
"""Each limb's x and y PAF channels."""


def smart_resize(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """The extension's resize: area when shrinking, Lanczos when growing; many channels one channel at a time."""
    import cv2

    channels = 1 if x.ndim == 2 else x.shape[2]
    if channels in (1, 3):
        grows = float(height + width) / float(x.shape[0] + x.shape[1]) >= 1
        return cv2.resize(x, (int(width), int(height)), interpolation=cv2.INTER_LANCZOS4 if grows else cv2.INTER_AREA)
    return np.stack([smart_resize(x[:, :, i], height, width) for i in range(channels)], axis=2)


def pad_right_down(image: np.ndarray) -> tuple[np.ndarray, int, int]:
    """`image` padded right and down to multiples of 8 with grey 128; with the rows and columns added."""
    down, right = -image.shape[0] % STRIDE, -image.shape[1] % STRIDE
    padded = np.pad(image, [(0, down), (0, right), (0, 0)], constant_values=PAD_VALUE)
    return padded, down, right


def network_input(image: np.ndarray) -> Any:
    """An H×W×3 uint8 BGR picture as the networks take it: 1×3×H×W float, ``x/256 − 0.5``."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)[None].astype(np.float32) / 256 - 0.5))


def maps_back(output: Any, padded: np.ndarray, down: int, right: int, size: tuple[int, int]) -> np.ndarray:
    """A network output (1×C×h×w) as H×W×C at the picture's `size`: ×8, padding off, resized."""
    maps = np.transpose(output[0].float().cpu().numpy(), (1, 2, 0))
    maps = smart_resize(maps, maps.shape[0] * STRIDE, maps.shape[1] * STRIDE)
    maps = maps[: padded.shape[0] - down, : padded.shape[1] - right]
    return smart_resize(maps, *size)


def body_maps(net: Any, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The body network's heatmaps (H×W×19) and PAFs (H×W×38) of a BGR picture, at its size (float64)."""
    import torch

    height, width = image.shape[:2]
    scale = 0.5 * BOX / height
    scaled = smart_resize(image, height * scale, width * scale)
    padded, down, right = pad_right_down(scaled)
    device = next(net.parameters()).device
    with torch.no_grad():
        pafs, heatmaps = net(network_input(padded).to(device))
    size = (height, width)  # float64, as the extension's running averages are: ties between peaks depend on it
    return tuple(maps_back(maps, padded, down, right, size).astype(np.float64) for maps in (heatmaps, pafs))


def find_peaks(heatmaps: np.ndarray) -> list[list[tuple[int, int, float, int]]]:
    """Each of the 18 parts' peaks as ``(x, y, score, id)``, ids running over all parts in order."""
    from scipy.ndimage import gaussian_filter

    peaks, counter = [], 0
    for part in range(18):
        raw = heatmaps[:, :, part]
        blurred = gaussian_filter(raw, sigma=3)
        left, right, up, down = (np.zeros(blurred.shape) for _ in range(4))
        left[1:, :], right[:-1, :] = blurred[:-1, :], blurred[1:, :]
        up[:, 1:], down[:, :-1] = blurred[:, :-1], blurred[:, 1:]
        binary = np.logical_and.reduce(
            (blurred >= left, blurred >= right, blurred >= up, blurred >= down, blurred > PEAK_THRESHOLD)
        )
        ys, xs = np.nonzero(binary)
        peaks.append([(int(x), int(y), float(raw[y, x]), counter + i) for i, (x, y) in enumerate(zip(xs, ys))])
        counter += len(xs)
    return peaks


def _limb_score(paf: np.ndarray, a: tuple, b: tuple, height: int) -> float | None:
    """The PAF's support for a limb from `a` to `b`, or None where it fails the extension's two criteria."""
    vec = np.subtract(b[:2], a[:2])
    norm = max(0.001, math.sqrt(vec[0] * vec[0] + vec[1] * vec[1]))
    vec = np.divide(vec, norm)
    points = list(zip(np.linspace(a[0], b[0], num=MIDPOINTS), np.linspace(a[1], b[1], num=MIDPOINTS)))
    along = np.array([paf[int(round(y)), int(round(x))] for x, y in points])
    scores = along[:, 0] * vec[0] + along[:, 1] * vec[1]
    with_prior = sum(scores) / len(scores) + min(0.5 * height / norm - 1, 0)
    if len(np.nonzero(scores > PAF_THRESHOLD)[0]) > 0.8 * len(scores) and with_prior > 0:
        return with_prior
    return None


def find_limbs(peaks: list[list[tuple]], pafs: np.ndarray, height: int) -> list[np.ndarray | None]:
    """Each limb's connections as rows ``(id A, id B, score, index A, index B)``; None where a part has no peak."""
    limbs: list[np.ndarray | None] = []
    for (part_a, part_b), channels in zip(LIMBS, PAF_CHANNELS):
        cand_a, cand_b = peaks[part_a - 1], peaks[part_b - 1]
        if not cand_a or not cand_b:
            limbs.append(None)
            continue
        paf = pafs[:, :, list(channels)]
        scored = []
        for i, a in enumerate(cand_a):
            for j, b in enumerate(cand_b):
                score = _limb_score(paf, a, b, height)
                if score is not None:
                    scored.append((i, j, score))
        connection = np.zeros((0, 5))
        for i, j, score in sorted(scored, key=lambda row: row[2], reverse=True):
            if i not in connection[:, 3] and j not in connection[:, 4]:
                connection = np.vstack([connection, [cand_a[i][3], cand_b[j][3], score, i, j]])
                if len(connection) >= min(len(cand_a), len(cand_b)):
                    break
        limbs.append(connection)
    return limbs


def _join(subset: np.ndarray, found: list[int], row: np.ndarray, index_b: int, candidate: np.ndarray) -> np.ndarray:
    """One connection `row` added to the people rows it touches (`found`), merging two disjoint ones."""
    part_b = row[1]
    always = False  # two rows sharing a part: the extension adds the part to the first one unconditionally
    if len(found) == 2:
        j1, j2 = found
        membership = ((subset[j1] >= 0).astype(int) + (subset[j2] >= 0).astype(int))[:-2]
        if len(np.nonzero(membership == 2)[0]) == 0:
            subset[j1][:-2] += subset[j2][:-2] + 1
            subset[j1][-2:] += subset[j2][-2:]
            subset[j1][-2] += row[2]
            return np.delete(subset, j2, 0)
        always = True
    j = found[0]
    if always or subset[j][index_b] != part_b:
        subset[j][index_b] = part_b
        subset[j][-1] += 1
        subset[j][-2] += candidate[int(part_b), 2] + row[2]
    return subset


def assemble_people(peaks: list[list[tuple]], limbs: list[np.ndarray | None]) -> tuple[np.ndarray, np.ndarray]:
    """``(candidate, subset)``: every peak as ``x, y, score, id``, and the people.

    Each person is 18 candidate ids (−1 for none), the total score and the number of parts.
    """
    subset = -1 * np.ones((0, 20))
    candidate = np.array([peak for part in peaks for peak in part]).reshape(-1, 4)
    for k, connection in enumerate(limbs):
        if connection is None:
            continue
        index_a, index_b = LIMBS[k][0] - 1, LIMBS[k][1] - 1
        for row in connection:
            found = [j for j in range(len(subset)) if subset[j][index_a] == row[0] or subset[j][index_b] == row[1]]
            if found:
                subset = _join(subset, found[:2], row, index_b, candidate)
            elif k < 17:
                person = -1 * np.ones(20)
                person[index_a], person[index_b] = row[0], row[1]
                person[-1] = 2
                person[-2] = sum(candidate[row[:2].astype(int), 2]) + row[2]
                subset = np.vstack([subset, person])
    weak = [i for i in range(len(subset)) if subset[i][-1] < 4 or subset[i][-2] / subset[i][-1] < 0.4]
    return candidate, np.delete(subset, weak, axis=0)


def body_keypoints(candidate: np.ndarray, subset: np.ndarray) -> list[list[tuple[float, float] | None]]:
    """Each person's 18 keypoints as ``(x, y)`` in pixels, None where a part was not found."""
    return [
        [None if index == -1 else (float(candidate[index][0]), float(candidate[index][1])) for index in row]
        for row in (person[:18].astype(int) for person in subset)
    ]


def detect_bodies(net: Any, image: np.ndarray) -> list[list[tuple[float, float] | None]]:
    """Each person's body keypoints in a BGR picture (pixels)."""
    heatmaps, pafs = body_maps(net, image)
    peaks = find_peaks(heatmaps)
    return body_keypoints(*assemble_people(peaks, find_limbs(peaks, pafs, image.shape[0])))
