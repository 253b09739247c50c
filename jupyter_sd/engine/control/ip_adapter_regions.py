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

`masked_processors` turns the installed processors of a transformer into these (ip_adapter_flow.py, _sd3.py).
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers.image_processor import IPAdapterMaskProcessor
from diffusers.models.attention_processor import SD3IPAdapterJointAttnProcessor2_0
from diffusers.models.transformers.transformer_flux import FluxIPAdapterAttnProcessor


def token_mask(mask: Any, hidden_states: torch.Tensor) -> Any:
    """`mask` (``IPAdapterMaskProcessor.preprocess``'s 1×1×H×W) at the layer's image tokens, 1×T×1.

    Returns 1.0 for no mask or one all white, 0.0 for one all black (the adapter's scale as it is, or none).
    """
    if mask is None or bool((mask >= 0.5).all()):
        return 1.0
    if bool((mask < 0.5).all()):
        return 0.0
    small = IPAdapterMaskProcessor.downsample(mask[:, 0].float(), 1, int(hidden_states.shape[1]), 1)
    return small.to(hidden_states.device, hidden_states.dtype)


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
    """diffusers' SD3 IP-Adapter processor whose adapter acts per token by its mask (`ip_adapter_masks`' first)."""

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor = None,
        attention_mask: torch.Tensor | None = None,
        ip_hidden_states: torch.Tensor = None,
        temb: torch.Tensor = None,
        ip_adapter_masks: list[Any] | None = None,
    ) -> Any:
        """The processor's outputs, the adapter's part of the image tokens' output multiplied by the mask."""
        parent = super().__call__
        mask = token_mask((ip_adapter_masks or [None])[0], hidden_states)
        if isinstance(mask, float) or ip_hidden_states is None or self.scale == 0:
            ip = None if isinstance(mask, float) and mask == 0.0 else ip_hidden_states
            return parent(attn, hidden_states, encoder_hidden_states, attention_mask, ip, temb)
        with_ip = parent(attn, hidden_states, encoder_hidden_states, attention_mask, ip_hidden_states, temb)
        without = parent(attn, hidden_states, encoder_hidden_states, attention_mask, None, temb)
        if isinstance(with_ip, tuple):  # (image tokens, text tokens): the text's output has no adapter part
            return (without[0] + mask * (with_ip[0] - without[0]), *with_ip[1:])
        return without + mask * (with_ip - without)


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


__all__ = [
    "MaskedFluxIPAdapterAttnProcessor",
    "MaskedSD3IPAdapterJointAttnProcessor",
    "masked_processors",
    "token_mask",
]
