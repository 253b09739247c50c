"""IP-Adapter pictures for pipelines that take no ``ip_adapter_image``: their embeddings in ``joint_attention_kwargs``.

diffusers 0.42's ``FluxControlNetImg2ImgPipeline`` and ``FluxControlNetInpaintPipeline`` have no IP-Adapter
arguments, but hand their ``joint_attention_kwargs`` to every transformer call, and Flux's transformer reads an
adapter's image embeddings from there (``ip_adapter_image_embeds``: its ``encoder_hid_proj`` makes them the
processors' ``ip_hidden_states``). ``FluxPipeline`` puts them there itself each step; here they go in the same way:
the unit's pictures encoded by the pipeline the adapters were installed on (its image encoder, diffusers'
``prepare_ip_adapter_image_embeds``), one row per picture painted. Those pipelines paint without CFG (no negative
picture). The weight and window stay the transformer hook's (ip_adapter.py).
"""

from __future__ import annotations

import inspect
from typing import Any


def _parameters(cls: type) -> Any:
    return inspect.signature(cls.__call__).parameters


def through_joint_attention(cls: type, family: Any) -> bool:
    """Whether `cls` (a pipeline class without ``ip_adapter_image``) gets the pictures' embeddings here.

    It must take ``joint_attention_kwargs`` and belong to a family whose own pipeline makes one picture's embeddings
    (``prepare_ip_adapter_image_embeds`` without a CFG batch: its CFG is a second call, ``true_cfg_scale``: Flux).
    """
    import diffusers

    if "ip_adapter_image" in _parameters(cls) or "joint_attention_kwargs" not in _parameters(cls):
        return False
    own = getattr(diffusers, family.pipelines["txt2img"])
    return "true_cfg_scale" in _parameters(own) and hasattr(own, "prepare_ip_adapter_image_embeds")


def joint_attention_kwargs(source: Any, pipe: Any, kwargs: dict[str, Any], count: int) -> dict[str, Any]:
    """`kwargs` (a pass's call) with its ``ip_adapter_image`` moved into ``joint_attention_kwargs`` for `pipe`.

    `source` is the pipeline the adapters were installed on (its image encoder); `count` the pictures painted.
    Unchanged where `pipe` takes ``ip_adapter_image`` or there is none.
    """
    if "ip_adapter_image" not in kwargs or "ip_adapter_image" in _parameters(type(pipe)):
        return kwargs
    import torch

    call = dict(kwargs)
    images = call.pop("ip_adapter_image")
    with torch.no_grad():
        embeds = source.prepare_ip_adapter_image_embeds(images, None, pipe._execution_device, count)
    call["joint_attention_kwargs"] = {**(call.get("joint_attention_kwargs") or {}), "ip_adapter_image_embeds": embeds}
    return call


__all__ = ["joint_attention_kwargs", "through_joint_attention"]
