"""The inpaint "only masked" area with ControlNet units: each unit's picture cropped as the init is.

On A1111's "Inpaint area: Only masked" sd-webui-controlnet fits the unit's picture to the init's size by the unit's
resize mode, crops the init's crop region out of it and fits that to the size painted with "Resize and Fill"
(its ``controlnet.py``), so the map lines up with the cropped init the model repaints. An IP-Adapter unit's
or ControlNet unit's effective region mask, drawn over the whole picture, is stretched to the init's size and cut the
same way (the extension stretches a ControlNet unit's whole mask over the crop; here it stays where it was drawn).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from PIL import Image

from ..pictures import resize_image
from .preprocessors import as_rgb
from .region_masks import red_channel

_MODES = ("just resize", "crop and resize", "resize and fill")


def crop_like_init(
    picture: Any, resize_mode: str, init_size: tuple[int, int], region: tuple[int, int, int, int], size: tuple
) -> Image.Image:
    """`picture` fitted to the init's size, cut to `region` and fitted to `size` as the extension does."""
    image = picture if isinstance(picture, Image.Image) and picture.mode == "L" else Image.fromarray(as_rgb(picture))
    fitted = resize_image(_MODES.index(str(resize_mode).lower()), image, *init_size)
    return resize_image(2, fitted.crop(region), *size)


def cropped(control: Any, init_size: tuple[int, int], region: tuple[int, int, int, int], size: tuple) -> Any:
    """`control` with each unit's picture (an inpaint unit's mask, IP-Adapter region masks) cut to `region`."""
    cut = (init_size, region, size)
    images = [
        crop_like_init(image, u.resize_mode, init_size, region, size) for u, image in zip(control.units, control.images)
    ]
    masks = [
        None if mask is None else crop_like_init(mask.convert("L"), u.resize_mode, init_size, region, size)
        for u, mask in zip(control.units, control.masks)
    ]
    regions = control.regions and [None if r is None else _cut_region(r, *cut) for r in control.regions]
    return dataclasses.replace(
        control, images=images, masks=masks, adapters=_cut_regions(control.adapters, *cut), regions=regions
    )


def _cut_region(mask: Any, init_size: tuple[int, int], region: tuple, size: tuple) -> Image.Image:
    """A ControlNet unit's effective region mask (its red channel) stretched over the init, cut to `region`."""
    return crop_like_init(red_channel(mask), "just resize", init_size, region, size)


def _cut_regions(adapters: Any, init_size: tuple[int, int], region: tuple, size: tuple) -> Any:
    """IP-Adapter units' effective region masks stretched over the init, cut to `region`, fitted to `size`."""
    if adapters is None or all(a.region_mask is None for a in adapters.adapters):
        return adapters
    cut = [
        a
        if a.region_mask is None
        else dataclasses.replace(
            a, region_mask=crop_like_init(a.region_mask.convert("L"), "just resize", init_size, region, size)
        )
        for a in adapters.adapters
    ]
    return dataclasses.replace(adapters, adapters=cut)
