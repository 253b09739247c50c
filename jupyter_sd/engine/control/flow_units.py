"""ControlNet units on the transformer families (Flux, SD3, Qwen-Image, Z-Image): pipeline arguments, refusals.

A pass with units is painted by the family's diffusers ControlNet pipeline of its mode (``Family.controlnet_pipelines``,
made by ``from_pipe`` in modes.py; composed from an init where diffusers paints from noise only: flow_init.py), given
one ``FluxControlNetModel`` (…) or the family's Multi model for several units. An inpaint ControlNet (SD3's,
Qwen-Image's) is given the inpaint map's picture and its mask (``control_mask``). A unit's weight is
``controlnet_conditioning_scale``, its guidance start/end the pipeline's control guidance window; maps take the one path
of every unit (unit_maps.py). sd-webui-controlnet's other control modes reshape a UNet ControlNet's 13 residuals and the
negative half of its batch: a transformer ControlNet has neither (Flux's true CFG reuses the positive residuals), so
only Balanced paints here and the others are refused in one line. A Union ControlNet (InstantX / Shakker-Labs: a
control-mode embedding) takes its control type from the unit's preprocessor. IP-Adapter units (ip_adapter.py) paint
beside them where the pass's pipeline takes ``ip_adapter_image``, or their embeddings through its
``joint_attention_kwargs`` (Flux's ControlNet img2img and inpaint: ip_adapter_joint.py); others are refused in one line.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...recipe.control_names import control_mode_name
from ..families import family_of
from .apply import Control
from .apply import control_for as unet_control_for
from .colorfix import COLORFIX
from .flow_init import call_parameters, controlnet_pipeline, inpaint_controlnet
from .flow_loading import load_flow_controlnet
from .injection import Injection, hooked, set_injections
from .ip_adapter import is_ip_adapter
from .ip_adapter_joint import through_joint_attention
from .modules import find_module
from .region_masks import region_tensor
from .unit_maps import refit, unit_map

UNION_TYPES = {"canny": 0, "tile": 1, "depth": 2, "blur": 3, "openpose": 4, "dw_openpose": 4, "gray": 5}
"""InstantX's and Shakker-Labs' Flux Union control types (``control_mode``), by the preprocessor's name start."""


@dataclass
class FlowControl(Control):
    """A request's units on a transformer family: its Multi model for several, the family's pipeline arguments."""

    family: Any = None

    @property
    def model(self) -> Any:
        """The one ControlNet, or the family's Multi model (``FluxMultiControlNetModel`` …) of the units' in order."""
        models = [loaded.model for loaded in self.loaded]
        if len(models) <= 1:
            return models[0] if models else None  # None: the pass's IP-Adapter units alone
        import diffusers

        if self.family.controlnet_shared:  # one Union ControlNet for every unit's map (check_request)
            models = models[:1]
        return getattr(diffusers, multi_class(self.family))(models)

    def for_pass(self, hires: bool) -> FlowControl | None:
        """The units of the first pass or of the hires pass, by their Hr Option (None: no unit in that pass)."""
        picked = super().for_pass(hires)
        return None if picked is None else FlowControl.of(picked, self.family)

    @classmethod
    def of(cls, control: Control, family: Any) -> FlowControl:
        """`control`'s units (IP-Adapters and positions with them) painted by `family`'s ControlNet pipelines."""
        parts = control.units, control.loaded, control.images, control.masks
        return cls(
            *parts, adapters=control.adapters, positions=control.positions, regions=control.regions, family=family
        )

    def kwargs(
        self, pipe: Any, kind: str, width: int, height: int, seed: int, subseed: int = 0, base: Any = None
    ) -> dict[str, Any]:
        """The pass's ControlNet arguments for `pipe` painting `width×height` (`base`: the hires pass's first size)."""
        adapter_kwargs = self.adapters.kwargs(pipe, width, height) if self.adapters else {}
        self.pipe = pipe
        if not self.units:
            return adapter_kwargs
        detect = base or (width, height)
        self.maps = [
            unit_map(unit, image, *detect, mask=mask, seed=seed, subseed=subseed)
            for unit, image, mask in zip(self.units, self.images, self.masks)
        ]
        if base is not None:
            self.maps = [refit(m, unit.resize_mode, width, height) for m, unit in zip(self.maps, self.units)]
        self._set_regions(pipe, width, height)
        import torch

        torch.manual_seed(
            seed
        )  # SD3's pipeline samples the maps' latents from torch's global generator: a seed repaints
        tensors = [m.tensor() * 2 - 1 for m in self.maps]  # -1..1: as their image processor makes a picture (a
        # tensor is taken as it is)
        single = len(self.units) == 1
        pick = lambda values: values[0] if single else values  # noqa: E731
        call = {
            **adapter_kwargs,
            "control_image": pick(tensors),
            "controlnet_conditioning_scale": pick([float(unit.weight) for unit in self.units]),
        }
        if "control_mask" in call_parameters(pipe):  # an inpaint ControlNet (alone): the picture and its mask
            call["control_image"], call["control_mask"] = inpaint_parts(self.maps[0])
        if "control_guidance_start" in call_parameters(pipe):
            call["control_guidance_start"] = [float(unit.guidance_start) for unit in self.units]
            call["control_guidance_end"] = [float(unit.guidance_end) for unit in self.units]
        modes = [union_type(unit, loaded) for unit, loaded in zip(self.units, self.loaded)]
        if any(mode is not None for mode in modes):
            call["control_mode"] = pick(modes)
        return call

    def _set_regions(self, pipe: Any, width: int, height: int) -> None:
        """Each unit's region mask on its ControlNet's token residuals (a hook: injection.py); None: left as is.

        Without masks only the hooks a former call installed are emptied (a net never masked gets none).
        """
        models = [loaded.model for loaded in self.loaded]
        if not self.family.controlnet_tokens or not (self.regions or hooked(models)):
            return
        regions = [None if r is None else region_tensor(r) for r in self.regions or [None] * len(self.units)]
        injections = [
            Injection(float(u.weight), None, False, pipe, None if r is None else r.to(m.device), (width, height))
            for u, r, m in zip(self.units, regions, models)
        ]
        set_injections(models, injections)


def inpaint_parts(control_map: Any) -> tuple[Any, Any]:
    """An inpaint map (RGB and its mask as alpha) → the picture in -1..1 and the mask (1: repaint), binarized."""
    import torch

    fitted = torch.from_numpy(np.ascontiguousarray(control_map.fitted, dtype=np.float32)).permute(2, 0, 1)[None]
    return fitted[:, :3] / 127.5 - 1, (fitted[:, 3:] / 255.0 >= 0.5).float()


def multi_class(family: Any) -> str:
    """The diffusers class holding several of the family's ControlNets (``FluxMultiControlNetModel``)."""
    return family.controlnet.replace("ControlNetModel", "MultiControlNetModel")


def union_type(unit: Any, loaded: Any) -> int | None:
    """A Union ControlNet's control type for the unit's preprocessor (None: not a Union ControlNet).

    Raises
    ------
    ValueError
        One line: a preprocessor that names none of its control types.
    """
    if getattr(loaded.model.config, "num_mode", None) is None:
        return None
    module = find_module(unit.module).name
    for prefix, index in UNION_TYPES.items():
        if module.startswith(prefix):
            return index
    msg = f"controlnet: {loaded.name} is a Union ControlNet; pick a preprocessor of its control types "
    msg += f"({', '.join(name for name in UNION_TYPES if name != 'dw_openpose')}), not {module}"
    raise ValueError(msg[:199])


def control_for(pipe: Any, request: Any, pictures: Any, notice: Any = print, limit: int | None = None) -> Any:
    """The request's units with their models and pictures (None without units), on any family painting them.

    The UNet families' go to apply.py as they are; a transformer family's are checked, loaded in its ControlNet class.

    Raises
    ------
    ValueError
        One line: a mode, control mode, window or number of units this family's ControlNet pipelines lack, and what
        apply.py refuses (a missing picture or model, another family's ControlNet).
    """
    family = family_of(pipe) if request.controlnet else None
    if family is None or not family.controlnet:
        return unet_control_for(pipe, request, pictures, notice, limit)
    units = [unit for unit in request.controlnet if not is_ip_adapter(unit.module)]
    if len(units) < len(request.controlnet):  # IP-Adapter units (ip_adapter.py)
        _check_adapters(family, request, units)
    if not units:
        return unet_control_for(pipe, request, pictures, notice, limit, load=load_flow_controlnet)
    check_request(family, request, units)
    if any(COLORFIX in find_module(unit.module).name for unit in units):  # (colorfix.py: a UNet hook)
        notice(f"controlnet: tile_colorfix's colour fix acts on UNet models; on {family.name} the picture is the map")
    control = unet_control_for(pipe, request, pictures, notice, limit, load=load_flow_controlnet)
    _check_models(pipe, family, control)
    if control.regions and not family.controlnet_tokens:
        n = next(n for n, region in zip(control.positions or [], control.regions) if region is not None)
        msg = f"controlnet: unit {n}'s effective region mask paints on SD1.5, SDXL, Flux, SD3, Qwen-Image and Z-Image "
        raise ValueError(msg + f"ControlNets, not {family.name}'s")
    return FlowControl.of(control, family)


def _check_adapters(family: Any, request: Any, units: list) -> None:
    """Refuse, in one line, IP-Adapter units in a pass whose pipeline cannot take their pictures.

    It takes ``ip_adapter_image``, or their embeddings through ``joint_attention_kwargs`` (ip_adapter_joint.py).
    """
    adapters = [unit for unit in request.controlnet if is_ip_adapter(unit.module)]
    passes = [(request.mode if request.init else "txt2img", units, adapters)]
    if request.hires_enabled:  # the hires pass: an img2img one, with the units whose Hr Option keeps them
        kept = lambda items: [u for u in items if u.hr_option != "Low res only"]  # noqa: E731
        passes.append(("hires pass", kept(units), kept(adapters)))
    for mode, controls, ips in passes:
        table = family.controlnet_pipelines if controls else family.pipelines
        name = table.get("img2img" if mode == "hires pass" else mode)
        if not ips or name is None:  # (no pipeline: refused with the ControlNet units or by the family)
            continue
        cls = family.pipeline_type(name)
        takes = "ip_adapter_image" in inspect.signature(cls.__call__).parameters
        if not (takes or through_joint_attention(cls, family)):
            what = f"ControlNet {mode}" if controls else mode
            msg = f"controlnet: {family.name}'s {what} pipeline has no IP-Adapter ({name}); drop the IP-Adapter unit"
            raise ValueError((msg + (" or the ControlNet units" if controls else ""))[:199])


def check_request(family: Any, request: Any, units: list | None = None) -> None:
    """Refuse, in one line, what the family's ControlNet pipelines cannot paint, naming what they can.

    `units`: the ControlNet units (the request's, less its IP-Adapter units).
    """
    import diffusers

    units = request.controlnet if units is None else units
    pipelines = family.controlnet_pipelines
    modes = ", ".join(pipelines)
    if request.init and request.mode not in pipelines:
        raise ValueError(f"controlnet: units on {family.name} paint {modes}, not {request.mode}")
    if request.hires_enabled and any(u.hr_option != "Low res only" for u in units):
        if "img2img" not in pipelines:  # the hires pass is an img2img one (its latents pass through: flow.py)
            msg = f"controlnet: units on {family.name} paint {modes}, not the hires pass; give them Hr Option: "
            raise ValueError(msg + "Low res only")
    _check_guidance(family, request, units)
    most = family.controlnet_units or (0 if hasattr(diffusers, multi_class(family)) else 1)  # 0: any
    if most and len(units) > most:
        many = "one unit" if most == 1 else f"{most} units"
        raise ValueError(f"controlnet: {family.name} paints {many} at a time (got {len(units)})")
    if family.controlnet_shared and len({unit.model for unit in units}) > 1:
        names = ", ".join(sorted({unit.model for unit in units}))
        msg = f"controlnet: {family.name}'s units share one Union ControlNet (diffusers' Multi model holds one); "
        raise ValueError((msg + f"they name {names}")[:199])
    window = "control_guidance_start" in inspect.signature(getattr(diffusers, pipelines["txt2img"]).__call__).parameters
    for i, unit in enumerate(units):
        mode = control_mode_name(unit.control_mode)
        if mode != "Balanced":
            msg = f"controlnet: unit {i}: {family.name} ControlNets paint Balanced only (the weight), not '{mode}'"
            raise ValueError(msg)
        if find_module(unit.module).takes_mask and not _masked_maps(family):
            msg = f"controlnet: unit {i}: {unit.module} feeds the inpaint ControlNets of SD1.5, SD3 and Qwen-Image, "
            raise ValueError(msg + f"not {family.name}'s; paint its inpaint mode with a map unit (canny, depth …)")
        if not window and (float(unit.guidance_start), float(unit.guidance_end)) != (0.0, 1.0):
            msg = f"controlnet: unit {i}: {family.name}'s ControlNet pipeline has no guidance window (start 0, end 1)"
            raise ValueError(msg)


def _check_guidance(family: Any, request: Any, units: list) -> None:
    """Flux's ControlNet img2img and inpaint (and the hires pass) take no CFG: refuse a CFG scale above 1 there."""
    import diffusers

    passes = [(request.mode, request.guidance)] if request.init else []
    if request.hires_enabled and any(u.hr_option != "Low res only" for u in units):
        passes.append(("img2img", request.hires_guidance or request.guidance))
    for mode, guidance in passes:
        pipeline = getattr(diffusers, family.controlnet_pipelines[mode])
        if guidance > 1 and "true_cfg_scale" in family.guidance_kwargs(guidance, 1.0):
            if "true_cfg_scale" not in inspect.signature(pipeline.__call__).parameters:
                msg = f"controlnet: {family.name}'s ControlNet {mode} has no CFG; use CFG scale 1 with units "
                msg += f"(got {guidance:g})"
                raise ValueError(msg)


def _masked_maps(family: Any) -> bool:
    """Whether the family's inpaint ControlNets take an inpaint map (the picture and its mask: ``control_mask``)."""
    import diffusers

    name = family.controlnet_inpaint
    return bool(name) and "control_mask" in inspect.signature(getattr(diffusers, name).__call__).parameters


def _check_models(pipe: Any, family: Any, control: Control) -> None:
    """Refuse, in one line, units their models cannot paint.

    An inpaint ControlNet takes an inpaint map, alone; Flux's Multi model decides from the first net whether the maps
    are latents (no mix).
    """
    for i, (unit, loaded) in enumerate(zip(control.units, control.loaded)):
        inpaint, masked = inpaint_controlnet(pipe, loaded.model), find_module(unit.module).takes_mask
        msg = ""
        if masked and not inpaint:
            msg = f"unit {i}: {unit.module} needs an inpaint ControlNet (Alimama's SD3, InstantX's Qwen-Image "
            msg += f"inpainting); {loaded.name} is not one"
        elif inpaint and not masked and _masked_maps(family):
            msg = f"unit {i}: {loaded.name} is an inpaint ControlNet; give it Module: inpaint_only"
        elif inpaint and len(control.units) > 1:
            msg = f"{loaded.name} is an inpaint ControlNet: it paints alone on {family.name} (got {len(control.units)})"
        if msg:
            raise ValueError(f"controlnet: {msg}"[:199])
    kinds = {
        loaded.model.input_hint_block is None for loaded in control.loaded if hasattr(loaded.model, "input_hint_block")
    }
    if len(kinds) > 1:
        msg = f"controlnet: {family.name} units cannot mix XLabs ControlNets (a hint block) with InstantX/Union ones"
        raise ValueError(msg)


__all__ = ["FlowControl", "check_request", "control_for", "controlnet_pipeline", "union_type"]
