"""sd-webui-controlnet's colour fix (``tile_colorfix``, ``tile_colorfix+sharp``): x0's low frequencies from the picture.

The extension encodes the unit's picture (its map, fitted to the size painted) with the VAE, and after every UNet call
of the pass (its hook's post-processing, whatever the guidance window) rebuilds the prediction:

- x0 from the output and the call's latents at the call's timestep rounded (the model's training ᾱ), the latents'
  first 4 channels on an inpainting UNet;
- ``x0 ← x0 − blur(x0, k) + blur(hint, k)``, the blur a box of side ``2k+1`` over a replicate-padded border and ``k``
  the unit's Threshold A ("Variation", cut to a whole number), doubled in the hires pass;
- ``+sharp``: the negative prompt's rows take ``d·blur(x0, k) + (1 − d)·x0``, ``d`` Threshold B ("Sharpness") × 0.01;
- the output rebuilt from that x0 and mixed ``w·new + (1 − w)·output``, ``w`` the unit's weight clipped to 0..1.

Several colour-fix units act in turn. The extension's hook reads every UNet output as ε (A1111 turns v into ε after
the UNet); on a v-prediction model the same x0 is taken from v here (x0 = √ᾱ·x_t − √(1−ᾱ)·v) and v rebuilt from it.
The fixes are a forward hook on the UNet, set for one pipeline call (`set_fixes`) and dropped after it (`dropped`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

COLORFIX = "colorfix"
"""What the colour-fix modules' names hold (``tile_colorfix``, ``tile_colorfix+sharp``), as the extension tests."""
_PREDICTIONS = ("epsilon", "v_prediction")


def blur(x: Any, k: int) -> Any:
    """The extension's blur: the mean over a (2k+1)² box, the border padded by repeating its edge."""
    import torch.nn.functional as F

    padded = F.pad(x, (k, k, k, k), mode="replicate")
    return F.avg_pool2d(padded, 2 * k + 1, stride=1)


@dataclass(frozen=True)
class ColorFix:
    """One colour-fix unit on a pass."""

    latent: Any
    """The unit's picture encoded by the VAE, (1, C, h, w) sampler-space latents of the pass's size."""
    kernel: int
    """k: Threshold A ("Variation") as a whole number, doubled in the hires pass."""
    detail: float | None
    """``+sharp``'s Threshold B × 0.01 (None: plain ``tile_colorfix``)."""
    weight: float
    """The unit's weight clipped to 0..1: how much of the rebuilt output replaces the UNet's."""


def fix_for(module: str, latent: Any, threshold_a: float, threshold_b: float | None, weight: float, hires: bool) -> Any:
    """A colour-fix unit's `ColorFix` (its sliders as the extension reads them), or None for other modules."""
    if COLORFIX not in module:
        return None
    kernel = int(threshold_a) * (2 if hires else 1)
    detail = float(threshold_b) * 0.01 if "+sharp" in module and threshold_b is not None else None
    return ColorFix(latent, kernel, detail, max(0.0, min(1.0, float(weight))))


class _Hook:
    """The UNet's forward hook: the fixes of the current call (none between calls)."""

    def __init__(self) -> None:
        self.fixes: list[ColorFix] = []
        self.alphas: Any = None
        self.v_prediction = False
        self.pipe: Any = None

    def __call__(self, module: Any, args: tuple, kwargs: dict, output: Any) -> Any:
        if not self.fixes:
            return output
        sample = args[0] if args else kwargs["sample"]
        timestep = args[1] if len(args) > 1 else kwargs["timestep"]
        tuple_output = isinstance(output, tuple)
        predicted = output[0] if tuple_output else output.sample
        fixed = self.apply(predicted, sample, timestep)
        if tuple_output:
            return (fixed, *output[1:])
        return type(output)(sample=fixed)

    def apply(self, predicted: Any, sample: Any, timestep: Any) -> Any:
        """`predicted` (the UNet's ε or v for `sample` at `timestep`) with every fix applied in turn."""
        import torch

        x = sample[:, :4].float()  # an inpainting UNet's latents come first (the mask and masked picture after)
        out = predicted.float()
        rows = x.shape[0]
        steps = torch.as_tensor(timestep, device=x.device).float().round().long().flatten()
        alpha = self.alphas.to(x.device, torch.float32)[steps.expand(rows) if steps.numel() == 1 else steps]
        a, s = alpha.sqrt().view(-1, 1, 1, 1), (1 - alpha).sqrt().view(-1, 1, 1, 1)
        guided = bool(getattr(self.pipe, "do_classifier_free_guidance", False)) and rows % 2 == 0
        for fix in self.fixes:
            x0 = a * x - s * out if self.v_prediction else (x - s * out) / a
            hint = fix.latent.to(x.device, torch.float32).expand(rows, -1, -1, -1)
            x0 = x0 - blur(x0, fix.kernel) + blur(hint, fix.kernel)
            if fix.detail is not None and guided:  # diffusers batches [negative, positive]
                half = rows // 2
                negative = fix.detail * blur(x0[:half], fix.kernel) + (1 - fix.detail) * x0[:half]
                x0 = torch.cat([negative, x0[half:]])
            rebuilt = (a * x - x0) / s if self.v_prediction else (x - a * x0) / s
            out = fix.weight * rebuilt + (1 - fix.weight) * out
        return out.to(predicted.dtype)


def _hook(unet: Any) -> _Hook:
    hook = unet.__dict__.get("_jupyter_sd_colorfix")
    if hook is None:
        hook = _Hook()
        unet.register_forward_hook(hook, with_kwargs=True)
        unet.__dict__["_jupyter_sd_colorfix"] = hook
    return hook


def set_fixes(pipe: Any, fixes: list[ColorFix], alphas: Any) -> None:
    """Apply `fixes` to every UNet call of `pipe`'s next call (`alphas`: the model's training ᾱ).

    Raises
    ------
    ValueError
        One line: the model predicts neither ε nor v.
    """
    unet = getattr(pipe, "unet", None)
    if unet is None:
        return
    if not fixes and "_jupyter_sd_colorfix" not in unet.__dict__:
        return
    prediction = getattr(pipe.scheduler.config, "prediction_type", "epsilon")
    if fixes and prediction not in _PREDICTIONS:
        msg = f"controlnet: tile_colorfix needs a model predicting epsilon or v_prediction, not {prediction!r}"
        raise ValueError(msg)
    hook = _hook(unet)
    hook.fixes, hook.alphas, hook.pipe = list(fixes), alphas, pipe
    hook.v_prediction = prediction == "v_prediction"


@contextlib.contextmanager
def dropped(pipe: Any) -> Iterator[None]:
    """Around a pipeline call: the fixes set for it are dropped when it ends (a later call paints without them)."""
    try:
        yield
    finally:
        hook = getattr(pipe, "unet", None) and pipe.unet.__dict__.get("_jupyter_sd_colorfix")
        if hook is not None:
            hook.fixes, hook.pipe = [], None


__all__ = ["COLORFIX", "ColorFix", "blur", "dropped", "fix_for", "set_fixes"]
