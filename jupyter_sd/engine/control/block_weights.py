"""Per-block weights: sd-webui-controlnet's ``advanced_weighting``, a unit's weight given block by block.

For a ControlNet unit it is one weight per residual (down-block outputs, then the middle block's: 13 on SD1.5 and
SD2, 10 on SDXL), replacing the weight ladder (Balanced's ``weight`` everywhere, soft injection's
``weight × 0.825^(12−i)``): residual i is scaled by weight i (injection.py). "ControlNet is more important" still
adds them to the positive prompt's half only, as the extension's ``cfg_injection`` does.

For an IP-Adapter unit it is one weight per cross-attention transformer of the UNet, in the extension's order (the
down blocks', the middle block's, the up blocks': 16 on SD1.5, 11 on SDXL, whose transformers of several layers take
one weight for all of them), in place of the unit's weight: diffusers' per-block ``set_ip_adapter_scale``
(InstantStyle's "style only" is SDXL's ``[0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]``, the first up block's middle
transformer). Other families have no such blocks here and are refused in one line, as is a list of the wrong length.
"""

from __future__ import annotations

import re
from typing import Any

_SECTIONS = {"down_blocks": 0, "mid_block": 1, "up_blocks": 2}
_BUILT = "SD1.5, SD2 and SDXL ControlNets and SD1.5/SDXL IP-Adapters"


def unet_layers(unet: Any) -> list[str]:
    """The UNet's cross-attention transformers in the extension's order (``down_blocks.1.attentions.0`` …)."""
    found = {name.split(".transformer_blocks.")[0] for name in unet.attn_processors if ".attn2." in name}

    def order(name: str) -> tuple[int, ...]:
        return (_SECTIONS[name.split(".")[0]], *(int(n) for n in re.findall(r"\.(\d+)", name)))

    return sorted(found, key=order)


def layer_of(processor_name: str, layers: list[str]) -> int:
    """The index among `layers` of the transformer an attention processor belongs to."""
    return layers.index(processor_name.split(".transformer_blocks.")[0])


def processor_weights(names: list[str], unet: Any, units: list[Any]) -> list[list[float]]:
    """Each processor's weight for each unit: the unit's per-block weight of its transformer, else its weight."""
    if all(unit.advanced_weighting is None for unit in units):
        return [[float(unit.weight) for unit in units] for _ in names]
    layers = unet_layers(unet)
    rows = []
    for name in names:
        layer = layer_of(name, layers)
        rows.append([float(u.weight if u.advanced_weighting is None else u.advanced_weighting[layer]) for u in units])
    return rows


def check_count(unit: Any, number: int, count: int, what: str) -> None:
    """Refuse, in one line, per-block weights of another length than the `count` blocks of `what`.

    Raises
    ------
    ValueError
        The unit's list has another length.
    """
    weights = unit.advanced_weighting
    if weights is not None and len(weights) != count:
        usual = "13 on SD1.5, 10 on SDXL" if "residual" in what else "16 on SD1.5, 11 on SDXL"
        msg = f"controlnet: unit {number}'s advanced weighting has {len(weights)} weights; this model takes {count}, "
        raise ValueError(f"{msg}one per {what} ({usual})"[:199])


def refuse_family(units: list[Any], numbers: list[int], family: str) -> None:
    """Refuse, in one line, per-block weights on a family without UNet blocks (Flux, SD3 …).

    Raises
    ------
    ValueError
        A unit has per-block weights.
    """
    for unit, number in zip(units, numbers):
        if unit.advanced_weighting is not None:
            raise ValueError(f"controlnet: unit {number}'s advanced weighting works on {_BUILT}, not {family}")


def check_adapters(pipe: Any, units: list[Any], numbers: list[int], family: str) -> None:
    """Refuse, in one line, IP-Adapter units' per-block weights off a UNet or of another length than its transformers.

    Raises
    ------
    ValueError
        A unit's per-block weights on a transformer family, or of the wrong length.
    """
    if getattr(pipe, "unet", None) is None:
        refuse_family(units, numbers, family)
        return
    if any(unit.advanced_weighting is not None for unit in units):
        count = len(unet_layers(pipe.unet))
        for unit, number in zip(units, numbers):
            check_count(unit, number, count, "cross-attention transformer")


__all__ = ["check_adapters", "check_count", "layer_of", "processor_weights", "refuse_family", "unet_layers"]
