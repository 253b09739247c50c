"""The transformer families' ControlNet pipelines in every mode: diffusers' own where it has one, composed where not.

diffusers 0.42 has ControlNet img2img and inpaint pipelines for Flux only. SD3, Qwen-Image and Z-Image have a
txt2img ControlNet pipeline and an inpaint ControlNet one (Alimama's SD3 and InstantX's Qwen-Image inpainting
ControlNets take the picture and its mask as their map, ``control_mask``; Z-Image Union 2.0's takes them beside its
map), and both paint from noise. An init pass (img2img, inpaint, the hires pass) on them is composed here as
diffusers' img2img pipelines paint: the schedule cut at the strength (``get_timesteps``: its last steps, levels
and timesteps cut alike), the start latents x = σ·noise + (1 − σ)·x0 at its first level (``scale_noise``, so our
noise reaches it as in img2img: init_noise.py), x0 the init encoded with the first generator (or the hires pass's
latents as they are). An inpaint pass also puts the init back outside the mask after every step, noised to the next
level, as diffusers' inpaint pipelines do. The pipeline's own loop, ControlNet window and callbacks run unchanged.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from functools import cache
from typing import Any

from ..families import family_of

_ADDED = ("image", "strength", "mask_image", "masked_image_latents")
"""What a composed pipeline takes beyond its ControlNet pipeline's arguments (as img2img and inpaint pipelines)."""


def controlnet_pipeline(pipe: Any, kind: str, controlnet: Any) -> type | None:
    """The class painting `kind` with `controlnet` on a transformer family (None on the UNet families).

    An inpaint ControlNet (``inpaint_controlnet``) paints through the family's inpaint ControlNet pipeline in every
    mode its map carries the mask (``control_mask``), else in inpaint only; a pipeline without ``strength`` painting
    an init is composed (``from_init``).
    """
    family = family_of(pipe)
    if not family.controlnet:
        return None
    import diffusers

    name = family.controlnet_pipelines.get(kind) or family.controlnet_pipelines["txt2img"]
    if family.controlnet_inpaint and inpaint_controlnet(pipe, controlnet):
        special = getattr(diffusers, family.controlnet_inpaint)
        if kind == "inpaint" or "control_mask" in _parameters(special):
            name = family.controlnet_inpaint
    cls = getattr(diffusers, name)
    return cls if kind == "txt2img" or "strength" in _parameters(cls) else from_init(cls)


def inpaint_controlnet(pipe: Any, controlnet: Any) -> bool:
    """Whether `controlnet` (or one of a Multi model's) takes the masked picture and mask beside the latents.

    Alimama's SD3 and InstantX's Qwen-Image inpainting ControlNets have extra conditioning channels (the mask);
    Z-Image Union 2.0 takes more control channels than latent ones (its map, the mask, the masked init).
    """
    for net in getattr(controlnet, "nets", None) or [controlnet]:
        config = net.config
        if config.get("extra_conditioning_channels") or config.get("extra_condition_channels"):
            return True
        dim = config.get("control_in_dim")
        if dim is not None and int(dim) > int(pipe.transformer.config.in_channels):
            return True
    return False


def call_parameters(pipe: Any) -> Any:
    """The arguments `pipe`'s call takes (a composed pipeline's: its ControlNet pipeline's and the init's)."""
    return _parameters(type(pipe))


def _parameters(cls: type) -> Any:
    return inspect.signature(cls.__call__).parameters


@cache
def from_init(cls: type) -> type:
    """`cls` (a ControlNet pipeline painting from noise) painting from an init as well: img2img, inpaint, hires.

    The class keeps `cls`'s name, so the family is found by name as for any of its pipelines; its call's signature
    is `cls`'s with the init's arguments added (callers check what a pipeline takes by its signature).
    """

    def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:
        return FromInit.paint(self, super(composed, self).__call__, *args, **kwargs)

    signature = inspect.signature(cls.__call__)
    params = [p for p in signature.parameters.values() if p.kind != p.VAR_KEYWORD]
    added = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=None) for n in _ADDED]
    params += [p for p in added if p.name not in signature.parameters]
    __call__.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    composed = type(cls.__name__, (FromInit, cls), {"__call__": __call__, "__module__": __name__})
    return composed


@dataclass
class _Init:
    """One call's init: what it starts from, how much it repaints, its mask; the start latents once made."""

    image: Any
    strength: float
    steps: int
    mask: Any = None
    x0: Any = None
    noise: Any = None
    t0: Any = None
    pending: Any = None


class FromInit:
    """The init's part of a composed pipeline: the cut schedule, the start latents, the inpaint blend."""

    _init: _Init | None = None

    def paint(self: Any, parent: Any, *args: Any, **kwargs: Any) -> Any:
        """Call `parent` (the ControlNet pipeline's call) from the init in `kwargs` (none: it paints from noise)."""
        image, mask = kwargs.pop("image", None), kwargs.pop("mask_image", None)
        strength = kwargs.pop("strength", None)
        kwargs.pop("masked_image_latents", None)  # (the start latents are the image's: a latent masked content)
        own = inspect.signature(parent).parameters
        kwargs.update({k: v for k, v in (("image", image), ("mask_image", mask)) if k in own and v is not None})
        if image is None:
            return parent(*args, **kwargs)
        steps = int(kwargs.get("num_inference_steps") or own["num_inference_steps"].default)
        self._init = _Init(image, 1.0 if strength is None else float(strength), steps, mask)
        if mask is not None:
            kwargs["callback_on_step_end"] = self._blending(kwargs.get("callback_on_step_end"))
            kwargs["callback_on_step_end_tensor_inputs"] = ["latents"]
        scheduler = self.scheduler
        had = scheduler.__dict__.get("set_timesteps")
        scheduler.set_timesteps = functools.wraps(scheduler.set_timesteps)(
            functools.partial(self._cut, scheduler.set_timesteps)
        )
        try:
            return parent(*args, **kwargs)
        finally:
            self._init = None
            if had is None:
                del scheduler.set_timesteps
            else:
                scheduler.set_timesteps = had

    def _cut(self: Any, set_timesteps: Any, *args: Any, **kwargs: Any) -> None:
        """The pipeline's schedule, then its last ``strength`` of the steps (diffusers' ``get_timesteps``)."""
        set_timesteps(*args, **kwargs)
        init, scheduler = self._init, self.scheduler
        start = int(max(init.steps - min(init.steps * init.strength, init.steps), 0)) * scheduler.order
        scheduler.timesteps = scheduler.timesteps[start:]
        scheduler.sigmas = scheduler.sigmas[start:]  # (cut too: Qwen-Image's loop sets the begin index back to 0)
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(0)
        init.t0 = scheduler.timesteps[:1]
        if init.pending is not None:  # the latents were made before the schedule (Qwen-Image, Z-Image)
            init.pending.copy_(self._noised(init.pending.shape[0]))

    def prepare_latents(
        self: Any, batch: int, channels: int, height: int, width: int, dtype: Any, device: Any, generator: Any,
        latents: Any = None,
    ) -> Any:  # fmt: skip
        """The start latents: the init encoded (x0) and noised to the cut schedule's first level."""
        init = self._init
        if init is None:
            return super().prepare_latents(batch, channels, height, width, dtype, device, generator, latents)
        family = family_of(self)
        x0 = self._encoded(init.image, height, width, generator).to(device)
        init.x0 = family.to_pipeline_latents(self, x0.repeat(batch // x0.shape[0], 1, 1, 1)).to(dtype=dtype)
        if latents is None:
            latents = super().prepare_latents(batch, channels, height, width, dtype, device, generator, None)
        elif latents.dim() == 4:  # our own noise (B, C, H, W), as a family packing its latents takes them
            latents = family.to_pipeline_latents(self, latents.to(device, dtype))
        init.noise = latents
        if init.mask is not None:
            init.mask = self._latent_mask(init.mask, x0.shape[-2:], batch, x0.shape[1]).to(device, dtype)
        if init.t0 is not None:
            return self._noised(batch)
        init.pending = latents.clone()
        return init.pending

    def _encoded(self: Any, image: Any, height: int, width: int, generator: Any) -> Any:
        """The init as (B, C, H, W) latents: latents as they are (the hires pass's), a picture VAE-encoded."""
        config = self.vae.config
        channels = getattr(config, "latent_channels", None) or config.z_dim  # (Qwen-Image's: z_dim)
        if getattr(image, "dim", None) is not None and image.dim() == 4 and image.shape[1] == channels:
            return image
        pixels = self.image_processor.preprocess(image, height=height, width=width)
        first = generator[0] if isinstance(generator, list) else generator  # (one init: as diffusers' img2img)
        return family_of(self).encode(self, pixels.to(self._execution_device, self.vae.dtype), first)

    def _noised(self: Any, batch: int) -> Any:
        init = self._init
        return self.scheduler.scale_noise(init.x0, init.t0.repeat(batch), init.noise)

    def _latent_mask(self: Any, mask: Any, size: Any, batch: int, channels: int) -> Any:
        """The repaint mask (white) binarized and brought to the latents' size and form, as diffusers' inpaint."""
        import numpy as np
        import torch

        grey = np.asarray(mask.convert("L"), dtype=np.float32) / 255.0
        full = torch.from_numpy((grey >= 0.5).astype(np.float32))[None, None]
        small = torch.nn.functional.interpolate(full, size=tuple(size))
        return family_of(self).to_pipeline_latents(self, small.expand(batch, channels, *size).contiguous())

    def _blending(self: Any, callback: Any) -> Any:
        """A step callback putting the init, noised to the next level, back outside the mask, then `callback`'s."""

        def blend(pipe: Any, index: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            init, timesteps = self._init, self.scheduler.timesteps
            kept = init.x0
            if index < len(timesteps) - 1:
                kept = self.scheduler.scale_noise(kept, timesteps[index + 1 : index + 2], init.noise)
            latents = tensors["latents"]
            tensors["latents"] = ((1 - init.mask) * kept + init.mask * latents).to(latents.dtype)
            return callback(pipe, index, timestep, tensors) if callback is not None else tensors

        return blend
