"""Effective region masks on Flux's and SD3.5's IP-Adapters: their attention processors given ``ip_adapter_masks``.

sd-webui-controlnet multiplies an adapter's attention output by its unit's mask at that layer's grid. diffusers'
UNet processors do it for SD1.5/SDXL (region_masks.py); its Flux processor (``FluxIPAdapterAttnProcessor``, XLabs')
takes ``ip_adapter_masks`` and ignores it, and SD3's (``SD3IPAdapterJointAttnProcessor2_0``, InstantX's) takes none.
Here each becomes a subclass of ours that reads the masks from ``joint_attention_kwargs`` and multiplies the
adapter's part only, per image token, by its mask brought to the layer's token grid by diffusers'
``IPAdapterMaskProcessor.downsample`` (as the UNet processors bring theirs: the picture's black/white mask, grey at
0.5, to the packed latent's tokens: Flux's 2×2 patches, SD3's patch size). Without masks they are diffusers' own.

- Flux keeps each adapter's output apart (``ip_attn_output += scale * …``): a masked adapter's scale becomes its
  scale times the mask per token, so the masked picture costs nothing more, and several units keep their own masks.
- SD3 adds its part inside the attention before the output projection (linear): the masked output is
  ``out₀ + m·(out_s − out₀)`` from the processor's output with the adapter (`out_s`) and without (`out₀`), exact up
  to rounding; it costs a second run of each block's attention (projections, attention, output) while a masked unit
  acts. A mask all white is the adapter's output as it is, all black the output without it: no second run.
  Several units of the adapter (one file, a picture each) are summed the same way, as the UNet's adapters are:
  ``out₀ + Σ mᵢ·(outᵢ − out₀)``, each ``outᵢ`` with unit i alone at its scale (a run of the attention per acting
  unit, plus one without); each unit's picture goes through the Resampler alone (`UnitsImageProjection`).

`masked_processors` turns the installed processors (and SD3's Resampler) of a transformer into these
(ip_adapter_flow.py, _sd3.py).
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers.image_processor import IPAdapterMaskProcessor
from diffusers.models.attention_processor import SD3IPAdapterJointAttnProcessor2_0
from diffusers.models.embeddings import IPAdapterTimeImageProjection
from diffusers.models.transformers.transformer_flux import FluxIPAdapterAttnProcessor

_TOKEN_MASKS: dict[tuple, tuple[Any, Any]] = {}
"""(id of a mask, tokens, device, dtype) → (that mask, its token mask): a unit's mask is the same tensor at every
block and step of a call, so it is brought to each token grid once, not at every attention call."""


def token_mask(mask: Any, hidden_states: torch.Tensor) -> Any:
    """`mask` (``IPAdapterMaskProcessor.preprocess``'s 1×1×H×W) at the layer's image tokens, 1×T×1.

    Returns 1.0 for no mask or one all white, 0.0 for one all black (the adapter's scale as it is, or none).
    """
    if mask is None:
        return 1.0
    key = (id(mask), int(hidden_states.shape[1]), hidden_states.device, hidden_states.dtype)
    kept = _TOKEN_MASKS.get(key)
    if kept is not None and kept[0] is mask:
        return kept[1]
    if bool((mask >= 0.5).all()):
        made: Any = 1.0
    elif bool((mask < 0.5).all()):
        made = 0.0
    else:
        small = IPAdapterMaskProcessor.downsample(mask[:, 0].float(), 1, int(hidden_states.shape[1]), 1)
        made = small.to(hidden_states.device, hidden_states.dtype)
    if len(_TOKEN_MASKS) >= 32:  # (masks of former calls: forget them)
        _TOKEN_MASKS.clear()
    _TOKEN_MASKS[key] = (mask, made)
    return made


class MaskedFluxIPAdapterAttnProcessor(FluxIPAdapterAttnProcessor):
    """diffusers' Flux IP-Adapter processor whose adapters act per token by their `ip_adapter_masks`."""

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor = None,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: torch.Tensor | None = None,
        ip_hidden_states: list[torch.Tensor] | None = None,
        ip_adapter_masks: list[Any] | None = None,
    ) -> Any:
        """The processor's outputs, each adapter's part multiplied by its mask (`ip_adapter_masks`, by adapter)."""
        args = (attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb, ip_hidden_states)
        masks = list(ip_adapter_masks or [])
        if all(mask is None for mask in masks):
            return super().__call__(*args)
        scales = self.scale
        masks += [None] * (len(scales) - len(masks))
        self.scale = [scale * token_mask(mask, hidden_states) for scale, mask in zip(scales, masks)]
        try:
            return super().__call__(*args)
        finally:
            self.scale = scales


class MaskedSD3IPAdapterJointAttnProcessor(SD3IPAdapterJointAttnProcessor2_0):
    """diffusers' SD3 IP-Adapter processor taking several units of its adapter, each with its scale and mask.

    `ip_hidden_states` is one unit's Resampler output or a list of them (`UnitsImageProjection`); `scale` one
    number or a list by unit, read back as their largest (diffusers' ``is_ip_adapter_active`` compares it with 0).
    """

    @property
    def scale(self) -> float:
        """The largest unit's scale (diffusers reads one number)."""
        value = self.__dict__.get("scale", 0.0)
        return max(value) if isinstance(value, list) else value

    @scale.setter
    def scale(self, value: float | list[float]) -> None:
        self.__dict__["scale"] = value

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor = None,
        attention_mask: torch.Tensor | None = None,
        ip_hidden_states: torch.Tensor | list[torch.Tensor] = None,
        temb: torch.Tensor = None,
        ip_adapter_masks: list[Any] | None = None,
    ) -> Any:
        """The processor's outputs plus each acting unit's part of the image tokens' output, times its mask.

        One unmasked unit is diffusers' own call; otherwise ``out₀ + Σ mᵢ·(outᵢ − out₀)`` (exact: the part is
        added before the linear output projection), ``outᵢ`` the output with unit i alone at its scale.
        """
        args = (attn, hidden_states, encoder_hidden_states, attention_mask)
        acting = self._acting(hidden_states, ip_hidden_states, ip_adapter_masks)
        if not acting or (len(acting) == 1 and isinstance(acting[0][2], float)):
            ip, scale = acting[0][:2] if acting else (None, 0.0)
            return self._alone(args, ip, scale, temb)
        without = self._alone(args, None, 0.0, temb)
        first = without[0] if isinstance(without, tuple) else without
        image = first
        for ip, scale, mask in acting:
            with_ip = self._alone(args, ip, scale, temb)
            image = image + mask * ((with_ip[0] if isinstance(with_ip, tuple) else with_ip) - first)
        if isinstance(without, tuple):  # (image tokens, text tokens): the text's output has no adapter part
            return (image, *without[1:])
        return image

    def _acting(self, hidden_states: torch.Tensor, ip_hidden_states: Any, masks: Any) -> list[tuple[Any, float, Any]]:
        """(hidden states, scale, mask at the tokens) of each unit with a picture, a scale and a mask not black."""
        units = ip_hidden_states if isinstance(ip_hidden_states, (list, tuple)) else [ip_hidden_states]
        scales = self.__dict__.get("scale", 0.0)
        scales = scales if isinstance(scales, list) else [scales] * len(units)
        masks = list(masks or []) + [None] * len(units)
        acting = []
        for ip, scale, mask in zip(units, scales, masks):
            at = token_mask(mask, hidden_states)
            if ip is not None and scale != 0 and not (isinstance(at, float) and at == 0.0):
                acting.append((ip, scale, at))
        return acting

    def _alone(self, args: tuple, ip: Any, scale: float, temb: Any) -> Any:
        """Call diffusers' own with one unit's hidden states at `scale` (none: the attention without the adapter)."""
        kept = self.__dict__.get("scale", 0.0)
        self.__dict__["scale"] = scale
        try:
            return super().__call__(*args, ip, temb)
        finally:
            self.__dict__["scale"] = kept


class UnitsImageProjection(IPAdapterTimeImageProjection):
    """diffusers' SD3 Resampler (``image_proj``) over several units' pictures: each its own hidden states.

    The pipeline encodes the units' pictures as one batch (``ip_adapter_image`` a list): rows (CFG half, picture,
    unit), K rows a latent. Each unit goes through the Resampler alone with the timestep, as diffusers gives one
    picture; one unit (K = 1) is diffusers' own call.
    """

    def forward(self, x: torch.Tensor, timestep: torch.Tensor) -> tuple[Any, torch.Tensor]:
        """(hidden states, or a list of them by unit; the timestep embedding)."""
        rows = int(timestep.shape[0]) if timestep.ndim else 1
        units = int(x.shape[0]) // rows
        if units <= 1:
            return super().forward(x, timestep)
        per_unit = x.view(rows, units, *x.shape[1:])
        outs = [super(UnitsImageProjection, self).forward(per_unit[:, k], timestep) for k in range(units)]
        return [out[0] for out in outs], outs[0][1]


_MASKED = {
    FluxIPAdapterAttnProcessor: MaskedFluxIPAdapterAttnProcessor,
    SD3IPAdapterJointAttnProcessor2_0: MaskedSD3IPAdapterJointAttnProcessor,
}


def masked_processors(transformer: Any) -> None:
    """Make the transformer's installed IP-Adapter processors ours (the same modules and weights, masks taken)."""
    for processor in transformer.attn_processors.values():
        masked = _MASKED.get(type(processor))
        if masked is not None:
            processor.__class__ = masked  # a subclass adding no state: the loaded weights stay where they are
    if type(getattr(transformer, "image_proj", None)) is IPAdapterTimeImageProjection:
        transformer.image_proj.__class__ = UnitsImageProjection  # SD3's Resampler, by unit


__all__ = [
    "MaskedFluxIPAdapterAttnProcessor",
    "MaskedSD3IPAdapterJointAttnProcessor",
    "UnitsImageProjection",
    "masked_processors",
    "token_mask",
]
