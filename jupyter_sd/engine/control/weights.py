"""How strongly a unit's ControlNet residuals are added: its weight, control mode and guidance window.

sd-webui-controlnet's control modes: "Balanced" adds every residual times the weight. The other two use its "soft
injection": the 13 residuals of an SD1.5 ControlNet (12 down-block outputs, then the middle block's) are scaled by
``weight × 0.825^(12−i)``, so the deepest count most; an SDXL ControlNet's 10 take the first ten of those scales.
"ControlNet is more important" adds the residuals to the conditional half of the batch only (the negative prompt's
half is painted without control). In the hires pass canny and mlsd units are always softened, as the extension does.
A unit's per-block weights (``advanced_weighting``, block_weights.py) replace all of these scales.
"""

from __future__ import annotations

from ...recipe.control_names import control_mode_name

SOFT_BASE = 0.825
"""The ratio between neighbouring residuals' scales in soft injection."""
_SOFT_COUNT = 13


def residual_scales(
    weight: float,
    control_mode: object,
    count: int,
    *,
    hires: bool = False,
    module: str = "",
    advanced: tuple[float, ...] | None = None,
) -> list[float]:
    """The scale of each of `count` residuals (down blocks first, the middle block last), as the extension sets it.

    `advanced` (the unit's per-block weights, checked to be `count` long) overrides the weight and the soft ladder.
    """
    if advanced is not None:
        return [float(w) for w in advanced]
    soft = control_mode_name(control_mode) != "Balanced" or (hires and ("canny" in module or "mlsd" in module))
    if not soft:
        return [float(weight)] * count
    scales = [float(weight) * SOFT_BASE ** float(_SOFT_COUNT - 1 - i) for i in range(_SOFT_COUNT)]
    if count > _SOFT_COUNT:
        raise ValueError(f"controlnet: soft injection knows {_SOFT_COUNT} residuals, this ControlNet has {count}")
    return scales[:count]


def conditional_only(control_mode: object) -> bool:
    """Whether the residuals go to the conditional (positive prompt) half only: "ControlNet is more important"."""
    return control_mode_name(control_mode) == "ControlNet is more important"


def active_steps(steps: int, start: float, end: float, rule: str = "diffusers") -> list[bool]:
    """Whether the unit applies at each of `steps` denoising steps, for its guidance start and end (fractions).

    ``diffusers`` (its ControlNet pipelines): step i applies unless ``i/steps < start`` or ``(i+1)/steps > end``.
    ``a1111`` (sd-webui-controlnet): step i applies unless ``i/steps < start`` or ``i/steps > end``, so an end below
    1 keeps one step more.
    """
    if rule not in ("diffusers", "a1111"):
        raise ValueError(f"controlnet: unknown guidance rule {rule!r}; diffusers or a1111")
    shift = 1 if rule == "diffusers" else 0
    return [not (i / steps < start or (i + shift) / steps > end) for i in range(steps)]
