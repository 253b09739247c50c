"""A unit's picture → the map its ControlNet is given at the size painted: preprocess, fit, and as a tensor.

The one path every unit's image takes (sd-webui-controlnet's order): Pixel Perfect picks the processor resolution
from the size painted, the preprocessor makes the detected map, the map is fitted to the size by the unit's resize
mode, and becomes a tensor in 0..1 (inpaint maps: -1 where the mask is). The detected map is kept for the preview
and ``--save-detected``, with a pose module's poses as the extension's JSON. A pose map drawn from a pose JSON
(``pose_render``, its JSON in the picture's ``info``) is the detected map itself: its openpose module skips detection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ...recipe.control_units import ControlUnit
from .maps import fit_map
from .pose_json import POSE_INFO
from .preprocessors import inpaint_hint, preprocess, shuffle_seed


@dataclass
class UnitMap:
    """A unit's detected map (at the processor resolution) and the map fitted to the size painted."""

    detected: np.ndarray
    fitted: np.ndarray
    pose: dict | None = None
    """A pose module's poses as the extension's JSON (``pose_json``), or the pose JSON the unit was given."""

    def tensor(self, device: Any = "cpu", dtype: Any = None) -> Any:
        """The fitted map as a 1×C×H×W tensor: 0..1, or the inpaint hint (-1 where masked) for a 4-channel map."""
        import torch

        hint = inpaint_hint(self.fitted) if self.fitted.shape[2] == 4 else self.fitted.astype(np.float32) / 255.0
        tensor = torch.from_numpy(np.ascontiguousarray(hint)).permute(2, 0, 1)[None]
        return tensor.to(device=device, dtype=dtype or torch.float32)


def unit_map(
    unit: ControlUnit, image: Any, width: int, height: int, *, mask: Any = None, seed: int = 0, subseed: int = 0
) -> UnitMap:
    """`unit`'s map of `image` (already loaded) for a `width×height` picture; `seed`/`subseed` drive shuffle."""
    given = getattr(image, "info", {}).get(POSE_INFO)
    if given is not None:  # a pose JSON's map (module none or an openpose one: inputs.py checks)
        detected = np.asarray(image.convert("RGB"))
        return UnitMap(detected, fit_map(detected, width, height, unit.resize_mode), given)
    pixel_perfect = (width, height, unit.resize_mode) if unit.pixel_perfect else None
    poses: list[dict] = []
    detected = preprocess(
        unit.module,
        image,
        unit.processor_res,
        unit.threshold_a,
        unit.threshold_b,
        mask=mask,
        seed=shuffle_seed(seed, subseed),
        pixel_perfect=pixel_perfect,
        fill_to=(width, height) if unit.resize_mode == "Resize and Fill" else None,
        on_pose=poses.append,
    )
    source = detected.astype(np.float32) if detected.shape[2] == 4 else detected  # inpaint maps scale unrounded
    return UnitMap(detected, fit_map(source, width, height, unit.resize_mode), poses[-1] if poses else None)


def refit(unit_map_: UnitMap, resize_mode: str, width: int, height: int) -> UnitMap:
    """The same detected map fitted to another size (the hires pass's), by the unit's resize mode."""
    detected = unit_map_.detected
    source = detected.astype(np.float32) if detected.shape[2] == 4 else detected
    return UnitMap(detected, fit_map(source, width, height, resize_mode), unit_map_.pose)
