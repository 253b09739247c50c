"""IP-Adapter units' effective region masks, as sd-webui-controlnet's ``effective_region_mask``.

The extension's "Effective Region Mask" upload: a unit's adapter acts where its mask is white, not where it is black.

The extension multiplies each adapter's attention output by the mask, stretched to that layer's grid. Here the mask
goes to diffusers' IP-Adapter attention processors as ``cross_attention_kwargs={"ip_adapter_masks": …}``, each
mask made by diffusers' ``IPAdapterMaskProcessor`` for the size the pass paints: a mask of another size (or shape)
is stretched to the picture, as the extension stretches it, then made black and white (grey at 0.5) and brought to
each layer's grid by diffusers. A unit without a mask gets None there: it acts everywhere. Flux's and SD3.5's
pipelines take them as ``joint_attention_kwargs`` instead, read by our processors (ip_adapter_regions.py).
"""

from __future__ import annotations

from typing import Any

_BUILT = ("SD1", "SDXL", "Flux", "SD3")
"""The families whose IP-Adapters take masks here (diffusers' UNet processors; ip_adapter_regions.py's)."""


def check_region_masks(family: str, masks: list[Any]) -> None:
    """Refuse, in one line, effective region masks on a family whose IP-Adapter takes none here.

    Raises
    ------
    ValueError
        A mask on an IP-Adapter unit of a family other than those of `_BUILT`.
    """
    if family not in _BUILT and any(mask is not None for mask in masks):
        msg = f"controlnet: IP-Adapter effective region masks paint on SD1.5, SDXL, Flux and SD3 for now, not {family}"
        raise ValueError(msg)


def region_mask_kwargs(masks: list[Any], width: int | None, height: int | None, pipe: Any = None) -> dict[str, Any]:
    """`pipe`'s ``cross_attention_kwargs`` (or ``joint_attention_kwargs``) for the adapters' `masks` ({} without any).

    `masks` are in adapter order; the key is the one `pipe`'s call takes (``cross_…`` without a `pipe`).
    """
    if all(mask is None for mask in masks):
        return {}
    if width is None or height is None:
        raise ValueError("controlnet: an IP-Adapter effective region mask needs the size painted")
    from diffusers.image_processor import IPAdapterMaskProcessor

    processor = IPAdapterMaskProcessor()
    made = [None if mask is None else processor.preprocess(mask, height=height, width=width) for mask in masks]
    import inspect

    takes = inspect.signature(type(pipe).__call__).parameters if pipe is not None else {}
    key = "joint_attention_kwargs" if "joint_attention_kwargs" in takes else "cross_attention_kwargs"
    return {key: {"ip_adapter_masks": made}}


__all__ = ["check_region_masks", "region_mask_kwargs"]
