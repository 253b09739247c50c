"""``softedge_anyline``: TheMistoAI's Anyline as sd-webui-controlnet runs it (``scripts/preprocessor/teed.py``).

TEED's network with MistoLine's ``MTEED.pth`` weights gives the soft-edge map (``annotators.side_edges``: sigmoid
of the mean side output, Threshold A's Safe Steps); ``lineart_standard`` of the same padded picture picks the faint
lines; the two are combined, all on the padded picture before its padding is cropped off:

1. the lineart pixels whose value is 0 or 1 are kept with their value (the extension's intensity mask, bounds 0..1
   on its 0..255 map): so only the pixels of value exactly 1 are lines;
2. skimage's ``remove_small_objects(min_size=36, connectivity=1)`` drops their small groups. The extension hands it
   the mask repeated into three channels, so the grouping is 3-D with face neighbours: a group of n 4-connected
   pixels is one object of 3·n voxels, kept when 3·n ≥ 36 (12 pixels or more);
3. the extension's ``combine_layers`` (a screen blend, ``1 − (1 − top)(1 − base)``, where the top is non-zero) in
   uint8: where a kept line pixel is, ``1 − 0·(1 − base)`` = 1; elsewhere the MTEED map. The result is that map with
   the kept line pixels set to 1, three channels, no further thresholding.

The extension runs ``lineart_standard`` through its own preprocessor at the unit's resolution, which scales the
padded picture again; for a resolution that is a multiple of 64 that is the padded picture itself (same size, no
resampling), for other resolutions the two maps differ in size and the extension fails. Here the lineart map is
always made on the padded picture at its own size: the extension's result where it has one.
"""

from __future__ import annotations

import numpy as np

from .lineart_standard import lineart_standard

MIN_SIZE = 36
"""``remove_small_objects``' ``min_size`` in the extension: objects of fewer voxels are dropped."""


def remove_small_objects(mask: np.ndarray, min_size: int = MIN_SIZE, channels: int = 1) -> np.ndarray:
    """`mask` (H×W bool) without its 4-connected groups smaller than `min_size`, each counted `channels` times.

    skimage's ``remove_small_objects(ar, min_size, connectivity=1)`` on `mask` repeated into `channels` identical
    channels (H×W×C, face neighbours): each group spans the channels, so it holds ``channels × pixels`` voxels.
    """
    import cv2

    _, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=4)
    keep = stats[:, cv2.CC_STAT_AREA] * channels >= min_size
    keep[0] = False  # the background
    return keep[labels]


def anyline_map(edges: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Anyline's map: `edges` (MTEED's H×W uint8 map of the padded picture `image`) with the kept lines set to 1."""
    lines = lineart_standard(image) == 1  # values 0..1 kept with their value: only the 1s are non-zero
    kept = remove_small_objects(lines, MIN_SIZE, channels=3)
    return np.repeat(np.where(kept, 1, edges).astype(np.uint8)[:, :, None], 3, axis=2)
