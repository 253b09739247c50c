"""A pass's ControlNet wiring: the units' pipeline arguments, their detected maps, the colour fix, LaMa's start noise.

IP-Adapter pictures go to a pipeline without ``ip_adapter_image`` as embeddings in ``joint_attention_kwargs``
(ip_adapter_joint.py).

sd-webui-controlnet's ``inpaint_only+lama`` encodes the unit's map (LaMa's fill, fitted to the size painted) with
the VAE and wraps A1111's ``ImageRNG`` (its ``HackedImageRNG``): every draw of the picture's size, the starting
noise and an ancestral sampler's step noise, becomes that latent diffused to t = 999 (lama.py's `lama_start_noise`).
The wrapper is put on in txt2img, img2img and inpaint alike (A1111's img2img noises the init with the same draw);
the hires pass draws from a fresh ``ImageRNG`` of another size, so it is left as it is. The extension wraps only the
job's first batch (it forgets the latent after one); here every batch is wrapped, so a picture's recipe repaints
it whichever batch it came from. With several such units the last one's map is used, as the extension's.

``tile_colorfix`` units encode their fitted map the same way (a generator of the seed) and act on every UNet call of
the pass (colorfix.py), with Threshold A doubled in the hires pass.
"""

from __future__ import annotations

from typing import Any

from .ip_adapter_joint import joint_attention_kwargs

LAMA = "inpaint_only+lama"


def pass_arguments(
    control: Any, pipe: Any, kind: str, size: tuple, seeds: list, subseeds: list, runner: Any, base: Any = None
) -> dict[str, Any]:
    """The units' arguments of a pass painting `size`; their detected maps go on the runner's result and views.

    With `base` (the first pass's size: this is the hires pass) the maps are fitted from it, and maps the first
    pass already put on the result stay.
    """
    extra = {} if base is None else {"base": base}
    kwargs = control.kwargs(pipe, kind, *size, seeds[0], subseeds[0], **extra)
    _set_colorfix(control, pipe, seeds[0], hires=base is not None)
    if control.adapters:  # a pipeline without ``ip_adapter_image`` (Flux's ControlNet img2img/inpaint)
        kwargs = joint_attention_kwargs(control.adapters.source, pipe, kwargs, len(seeds))
    control.report(runner.result, runner.progress, first=base is None)
    return kwargs


def lama_mix(control: Any, pipe: Any, seed: int) -> Any:
    """The mix an ``inpaint_only+lama`` unit of the pass's `control` puts on its noise, or None without one.

    Call it after the pass's `pass_arguments` (the units' maps are fitted then). The map's RGB (−1..1) is encoded
    by the pipeline's VAE (sampled with a generator of `seed`, as the init's latents are), on the UNet families only.
    """
    if not control or getattr(pipe, "unet", None) is None:
        return None
    from .modules import find_module

    fitted = [m.fitted for unit, m in zip(control.units, control.maps) if find_module(unit.module).name == LAMA]
    if not fitted:
        return None
    import functools

    from .lama import lama_start_noise

    latent = map_latent(pipe, fitted[-1], seed)
    return functools.partial(lama_start_noise, map_latent=latent, alphas_cumprod=model_alphas(pipe.scheduler))


def map_latent(pipe: Any, fitted: Any, seed: int) -> Any:
    """A fitted map's RGB (0..255 → −1..1) encoded by `pipe`'s VAE, sampled with a generator of `seed` (float32)."""
    import torch

    from ..families import family_of

    rgb = torch.from_numpy(fitted[:, :, :3].astype("float32")).permute(2, 0, 1)[None] / 255.0 * 2.0 - 1.0
    generator = torch.Generator("cpu").manual_seed(seed)
    with torch.no_grad():
        return family_of(pipe).encode(pipe, rgb.to(pipe.device, pipe.vae.dtype), generator).float()


def _set_colorfix(control: Any, pipe: Any, seed: int, hires: bool) -> None:
    """The pass's ``tile_colorfix`` units as fixes on its UNet calls (colorfix.py), or none (on UNet families)."""
    if getattr(pipe, "unet", None) is None:
        return
    from .colorfix import COLORFIX, fix_for, set_fixes
    from .modules import find_module, module_params

    fixes = []
    for unit, fitted in zip(control.units, control.maps):
        spec = find_module(unit.module)
        if COLORFIX in spec.name:
            _, a, b = module_params(spec, unit.processor_res, unit.threshold_a, unit.threshold_b)
            latent = map_latent(pipe, fitted.fitted, seed)
            fixes.append(fix_for(spec.name, latent, a, b, unit.weight, hires))
    set_fixes(pipe, fixes, model_alphas(pipe.scheduler) if fixes else None)


def model_alphas(scheduler: Any) -> Any:
    """The model's training schedule ᾱ (its betas as the scheduler's config declares them), whatever the sampler."""
    from diffusers import DDPMScheduler

    return DDPMScheduler.from_config(scheduler.config).alphas_cumprod


__all__ = ["LAMA", "lama_mix", "model_alphas", "pass_arguments"]
