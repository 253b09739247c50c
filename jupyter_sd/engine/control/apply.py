"""A request's ControlNet units on a pass: their models, their maps, and the arguments of diffusers' pipelines.

The pass is painted by diffusers' own ControlNet pipeline of its mode (made from the resident one with
``from_pipe`` in modes.py: no component is reloaded), with one ``ControlNetModel`` or a ``MultiControlNetModel``
for several units. A unit's weight is the conditioning scale, its guidance start/end diffusers' control guidance
window; the control modes are a hook on each ControlNet's outputs (injection.py). IP-Adapter units ride along in
`Control.adapters` (ip_adapter.py: the pipeline's ``ip_adapter_image``), numbered among the units as given.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ...recipe.control_units import ControlUnit, units_infotext
from .block_weights import check_count, refuse_family
from .colorfix import set_fixes
from .injection import Injection, injection_for, residual_count, set_injections
from .ip_adapter import Adapters, adapters_for, is_ip_adapter
from .loading import LoadedControlNet, load_controlnet
from .modules import find_module, module_params
from .region_masks import region_tensor
from .union import control_modes, pipeline_model, union_arguments, union_infotext
from .unit_maps import UnitMap, refit, unit_map

DEFAULT_MAX_UNITS = 3
"""sd-webui-controlnet's default number of unit tabs; ``%paint config controlnet_units=N`` allows more."""
UNITS_RANGE = (1, 10)
"""The extension's "Multi-ControlNet: ControlNet unit number" setting's range."""
_max_units = DEFAULT_MAX_UNITS


def max_units() -> int:
    """How many units a request may have in this kernel."""
    return _max_units


def set_max_units(count: object) -> int:
    """``%paint config controlnet_units=N``: allow up to `count` units a request (1-10), as the extension's setting.

    Raises
    ------
    ValueError
        One line: not a whole number in 1-10.
    """
    global _max_units
    text = str(count).strip()
    low, high = UNITS_RANGE
    if not text.isdigit() or not low <= int(text) <= high:
        raise ValueError(f"controlnet_units: a whole number of units {low}-{high}, not {text!r}")
    _max_units = int(text)
    return _max_units


_FAMILIES = ("SD1", "SD2", "SDXL")


@dataclass
class Control:
    """The units of one request, their models loaded; `maps` filled per pass (the detected maps, for saving)."""

    units: list[ControlUnit]
    loaded: list[LoadedControlNet]
    images: list[Any]
    masks: list[Any]
    maps: list[UnitMap] = field(default_factory=list)
    adapters: Adapters | None = None
    """The IP-Adapter units (ip_adapter.py); `units` … hold the ControlNet units, at `positions` among all."""
    positions: list[int] | None = None
    modes: list[int] | None = None
    """diffusers' ``control_mode`` of each unit on union models (union.py); None for other ControlNets."""
    pipe: Any = None
    """The pipeline of the last pass's `kwargs`."""
    regions: list[Any] | None = None
    """Each unit's effective region mask (a picture, or None: control everywhere); None: no unit has one."""

    @property
    def model(self) -> Any:
        """What the pipeline is given: one ControlNet, a ``MultiControlNetModel``, or None (IP-Adapters only)."""
        models = [loaded.model for loaded in self.loaded]
        if not models:
            return None
        if self.modes is not None:
            return pipeline_model(models)
        if len(models) == 1:
            return models[0]
        from diffusers.models.controlnets import MultiControlNetModel

        return MultiControlNetModel(models)

    def for_pass(self, hires: bool) -> Control | None:
        """The units of the first pass or of the hires pass, by their Hr Option (None: no unit in that pass)."""
        skip = "Low res only" if hires else "High res only"
        keep = [i for i, unit in enumerate(self.units) if unit.hr_option != skip]
        adapters = self.adapters and self.adapters.for_pass(hires)
        if not keep and not adapters:
            return None
        pick = lambda items: [items[i] for i in keep]  # noqa: E731
        positions = pick(self.positions or range(len(self.units)))
        modes = None if self.modes is None else pick(self.modes)
        regions = None if self.regions is None else pick(self.regions)
        parts = pick(self.units), pick(self.loaded), pick(self.images), pick(self.masks)
        return Control(*parts, [], adapters, positions, modes, regions=regions)

    def kwargs(
        self, pipe: Any, kind: str, width: int, height: int, seed: int, subseed: int = 0, base: Any = None
    ) -> dict[str, Any]:
        """The pass's ControlNet arguments for `pipe` (its mode's pipeline) painting `width×height`.

        With `base` (the first pass's width, height) this is the hires pass: each unit's map is detected as for the
        first pass and fitted to the hires size, as sd-webui-controlnet's ``hr_control`` is.
        """
        adapter_kwargs = self.adapters.kwargs(pipe, width, height) if self.adapters else {}
        self.pipe = pipe  # (whose ControlNet replay.py records, for AND prompts)
        if not self.units:
            return adapter_kwargs
        detect = base or (width, height)
        self.maps = [
            unit_map(unit, image, *detect, mask=mask, seed=seed, subseed=subseed)
            for unit, image, mask in zip(self.units, self.images, self.masks)
        ]
        if base is not None:
            self.maps = [refit(m, unit.resize_mode, width, height) for m, unit in zip(self.maps, self.units)]
        unet = pipe.unet
        tensors = [m.tensor(unet.device, unet.dtype).contiguous() for m in self.maps]  # as diffusers lays maps out
        regions = [
            None if r is None else region_tensor(r).to(unet.device) for r in self.regions or [None] * len(self.units)
        ]
        injections = [
            injection_for(unit, residual_count(loaded.model), pipe, hires=base is not None, mask=region)
            for unit, loaded, region in zip(self.units, self.loaded, regions)
        ]
        set_injections([loaded.model for loaded in self.loaded], injections)
        single = len(self.units) == 1
        scales = [injection.scale for injection in injections]
        arguments = {
            **adapter_kwargs,
            ("image" if kind == "txt2img" else "control_image"): tensors[0] if single else tensors,
            "controlnet_conditioning_scale": scales[0] if single else scales,
            "control_guidance_start": [float(unit.guidance_start) for unit in self.units],
            "control_guidance_end": [float(unit.guidance_end) for unit in self.units],
        }
        return union_arguments(arguments, self.modes)

    def detected(self) -> list[Any]:
        """The units' detected maps of the last pass as pictures (an inpaint map's mask dropped)."""
        from PIL import Image

        return [Image.fromarray(m.detected[:, :, :3]) for m in self.maps]

    def report(self, result: Any, progress: Any, first: bool = True) -> None:
        """The last pass's detected maps (and poses): on `result` (saved with --save-detected), shown by `progress`.

        A later pass (`first` False: the hires one) leaves the result's maps of the first pass as they are.
        """
        if not self.maps:
            return
        maps = self.detected()
        if first or not result.detected_maps:
            result.detected_maps = maps
            result.detected_poses = [m.pose for m in self.maps]  # pose modules' JSON (pose_json), else None
        numbers = self.positions or range(len(self.units))
        labels = [f"ControlNet {n} · {find_module(unit.module).name}" for n, unit in zip(numbers, self.units)]
        shown = getattr(progress, "detected", None)  # (listeners that predate detected maps may lack it)
        if shown is not None:
            shown(maps, labels)

    def infotext(self, hires: bool = False) -> dict[str, str]:
        """``ControlNet N`` as sd-webui-controlnet writes it: the model as ``NAME [hash]``, the module's values.

        With `hires` (a hires fix painted) each unit's ``Hr Option`` is written too.
        """
        written = []
        for unit, loaded in zip(self.units, self.loaded):
            spec = find_module(unit.module)
            res, a, b = module_params(spec, unit.processor_res, unit.threshold_a, unit.threshold_b)
            values = {"processor_res": res, "threshold_a": a, "threshold_b": b}
            values = {k: -1 if v is None else v for k, v in values.items()}
            model = {"model": loaded.name, "model_hash": loaded.short_hash, **union_infotext(unit, loaded)}
            written.append(dataclasses.replace(unit, module=spec.name, **model, **values, image=None))
        numbered = dict(zip(self.positions or range(len(written)), written))
        numbered.update(self.adapters.written() if self.adapters else {})
        return units_infotext(tuple(numbered[i] for i in sorted(numbered)), hires=hires)


def control_for(
    pipe: Any, request: Any, pictures: Any, notice: Any = print, limit: int | None = None, load: Any = None
) -> Any:
    """The request's units with their models and pictures, or None without units.

    `load` loads a unit's model on a transformer family (flow_units.py); without it the family must have a UNet.

    Raises
    ------
    ValueError
        One line: too many units, a family without ControlNet here, a unit without a picture (in txt2img; img2img
        units without one take the init, as sd-webui-controlnet does), a missing or mismatched model, a region mask
        on a global-pooling ControlNet.
    """
    set_fixes(pipe, [], None)  # no colour fix left from a call that never ran (colorfix.py)
    units = list(request.controlnet)
    if not units:
        adapters_for(pipe, [], [], False)  # the UNet's own attention back, should IP-Adapters be installed
        return None
    limit = limit or _max_units
    if len(units) > limit:
        msg = f"controlnet: {len(units)} units, at most {limit} (%paint config controlnet_units=N allows more)"
        raise ValueError(msg)
    from ..families import family_of

    family = family_of(pipe).name
    if family not in _FAMILIES and load is None:
        msg = f"controlnet: units paint on SD1.5, SD2, SDXL, Flux, SD3, Qwen-Image and Z-Image models, not {family}"
        raise ValueError(msg)
    given = list(getattr(pictures, "control", None) or ())
    images, masks = [], []
    for i, unit in enumerate(units):
        image = given[i] if i < len(given) else None
        if image is None and pictures is not None and pictures.init is not None:
            image = pictures.init  # sd-webui-controlnet: a unit without a picture uses img2img's
        if image is None:
            msg = f"controlnet: unit {i} has no image; add 'Image: FILE' to it (or --controlnet-image {i}=FILE)"
            raise ValueError(msg)
        images.append(image)
        takes_mask = not is_ip_adapter(unit.module) and find_module(unit.module).takes_mask
        masks.append(pictures.mask if takes_mask and pictures is not None else None)
    given = list(getattr(pictures, "control_masks", None) or ())
    regions = [given[i] if i < len(given) else None for i in range(len(units))]  # effective region masks
    adapters = adapters_for(pipe, units, images, request.allow_pickle, notice, regions)  # IP-Adapters (ip_adapter.py)
    keep = [i for i, unit in enumerate(units) if not is_ip_adapter(unit.module)]
    units, images, masks, regions = ([items[i] for i in keep] for items in (units, images, masks, regions))
    if load is not None:  # a transformer family: no residual ladder for per-block weights
        refuse_family(units, keep, family)
    loaded = [(load or load_controlnet)(pipe, u.model, request.allow_pickle, notice, u.model_hash) for u in units]
    for unit, number, net in zip(units, keep, loaded):
        if unit.advanced_weighting is not None:  # (only UNet ControlNets get here with them)
            check_count(unit, number, residual_count(net.model), "residual")
    _check_regions(keep, regions, loaded)
    modes = control_modes(units, loaded)  # union models (union.py)
    regions = regions if any(r is not None for r in regions) else None
    return Control(units, loaded, images, masks, adapters=adapters, positions=keep, modes=modes, regions=regions)


def _check_regions(numbers: list[int], regions: list[Any], loaded: list[LoadedControlNet]) -> None:
    """Refuse, in one line, a region mask on a guess-mode (global pooling) ControlNet.

    The extension masks its residuals before their mean; diffusers' ControlNet pools inside its forward.
    """
    for n, region, net in zip(numbers, regions, loaded):
        if region is not None and getattr(net.model.config, "global_pool_conditions", False):
            msg = f"controlnet: unit {n}'s effective region mask cannot limit {net.name}, a global-pooling "
            raise ValueError(msg + "(shuffle) ControlNet; drop the mask")


def check_conditioning(control: Control | None, conditioning: Any) -> None:
    """Give the units to a conditioning that replaces the UNet's call (AND, unequal lengths, NGMS): replay.py.

    IP-Adapter units need nothing here: the wrapper (conditioning.py) gives each of its calls its rows' embeddings.

    Raises
    ------
    ValueError
        One line: what the replay cannot split by part (a guess-mode ControlNet's positive-only call).
    """
    if control is None or not getattr(conditioning, "needs_wrapper", False):
        return
    why = _not_replayed(control, conditioning)
    if why:
        msg = f"controlnet: {why} does not combine yet with AND prompts, a negative prompt of another length (75-token "
        raise ValueError(msg + "chunks) or NGMS; drop AND or even the lengths")
    if control.units:  # (IP-Adapter units need no replay: the wrapper hands each call its rows' image embeddings)
        from .replay import TransformerReplay, replay_for

        if getattr(conditioning, "kwargs", None) is not None:  # SD3's AND: one batched call of every row
            conditioning.flow_steps.controlnet = replay_for(control.pipe, TransformerReplay)
        else:
            conditioning.residuals = replay_for(control.pipe)


def _not_replayed(control: Control, conditioning: Any) -> str:
    """What of `control` the per-part replay cannot split ('' when it can)."""
    if any(getattr(loaded.model.config, "global_pool_conditions", False) for loaded in control.loaded):
        return "a guess-mode ControlNet (global pooling)"
    return ""


__all__ = ["Control", "Injection", "check_conditioning", "control_for", "max_units", "set_max_units"]
