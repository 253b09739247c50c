"""IP-Adapter units, as sd-webui-controlnet runs them, through diffusers' own ``load_ip_adapter`` machinery.

A unit whose module is an IP-Adapter preprocessor (``ip-adapter_clip_sd15``, ``ip-adapter-auto`` …) gives its
picture to the pipeline as ``ip_adapter_image``; its weight is the adapter's scale (``set_ip_adapter_scale``), and
its guidance start/end is sd-webui-controlnet's window: at step i of a pass's n the adapter applies unless
``i/n < start`` or ``i/n > end``, set per step by a forward pre-hook on the UNet (scale 0 outside).

The request's adapters are loaded together by ``load_ip_adapter`` (from the state dicts we read) and kept: their
attention processors and image projection are swapped into the UNet for a request with IP-Adapter units and the
UNet's own swapped back for one without, so painting without them paints exactly the plain picture. Flux's
(XLabs') adapters go the same way on the transformer (ip_adapter_flow.py), and SD3.5's (InstantX's, on a SigLIP
encoder: ip_adapter_sd3.py).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...recipe.control_units import ControlUnit
from .block_weights import check_adapters, processor_weights
from .ip_adapter_files import (
    MODULE_ENCODERS,
    AdapterFile,
    adapter_input_width,
    encoder_kind,
    find_adapter,
    load_encoder,
)
from .ip_adapter_files import find_encoder as _find_encoder
from .ip_adapter_flow import AdapterState, attach_flux, detach_flux, encoder_input_width, read_flux_adapter
from .ip_adapter_sd3 import attach_sd3, detach_sd3, encoder_width, read_sd3_adapter
from .region_masks import check_region_masks, region_mask_kwargs

_WIDTHS = {768: "SD1.5", 1024: "SD2", 2048: "SDXL"}
_STATE = "_jupyter_sd_ip_adapters"


def is_ip_adapter(module: str) -> bool:
    """Whether a unit's module is an IP-Adapter preprocessor (sd-webui-controlnet's ``ip-adapter…`` names)."""
    return str(module).strip().lower().startswith("ip-adapter")


@dataclass
class Adapter:
    """One IP-Adapter unit: its place among the request's units, its picture and its file's name and hash."""

    unit: ControlUnit
    position: int
    image: Any
    name: str
    short_hash: str | None
    region_mask: Any = None
    """The unit's effective region mask (region_masks.py), None: it acts everywhere."""


@dataclass
class Adapters:
    """A request's IP-Adapter units, installed together on the UNet; `active`: those applying in this pass."""

    adapters: list[Adapter]
    active: tuple[bool, ...] = ()
    source: Any = None
    """The pipeline they are installed on (its image encoder: ip_adapter_joint.py encodes the pictures with it)."""

    def __post_init__(self) -> None:
        self.active = self.active or tuple(True for _ in self.adapters)

    def for_pass(self, hires: bool) -> Adapters:
        """The units of the first or the hires pass, by their Hr Option; the others at scale 0.

        Every installed adapter is given its picture in every pass: the UNet wants them all.
        """
        skip = "Low res only" if hires else "High res only"
        return dataclasses.replace(self, active=tuple(a.unit.hr_option != skip for a in self.adapters))

    def kwargs(self, pipe: Any, width: int | None = None, height: int | None = None) -> dict[str, Any]:
        """The pass's ``ip_adapter_image`` for `pipe`, each unit's weight and window set on the UNet's hook.

        Effective region masks go in ``cross_attention_kwargs`` (Flux, SD3: ``joint_attention_kwargs``), fitted to
        `width`×`height` (region_masks.py).
        """
        _window_hook(getattr(pipe, "unet", None) or pipe.transformer).start(self, pipe)
        masks = region_mask_kwargs([adapter.region_mask for adapter in self.adapters], width, height, pipe)
        return {"ip_adapter_image": [adapter.image for adapter in self.adapters], **masks}

    def written(self) -> dict[int, ControlUnit]:
        """Each unit as sd-webui-controlnet writes it (the model's ``NAME [hash]``), by its unit number."""
        values = {"processor_res": -1, "threshold_a": -1, "threshold_b": -1, "image": None}
        return {
            a.position: dataclasses.replace(
                a.unit, module=_module_name(a.unit.module), model=a.name, model_hash=a.short_hash, **values
            )
            for a in self.adapters
        }


def _module_name(module: str) -> str:
    """The module's name as sd-webui-controlnet spells it, or one line naming the IP-Adapter modules built."""
    name = str(module).strip().lower()
    if name in MODULE_ENCODERS:
        return name
    why = "needs insightface, not built yet" if "face_id" in name or "pulid" in name else "is unknown"
    msg = f"controlnet: IP-Adapter module {module!r} {why}; built: {', '.join(MODULE_ENCODERS)}"
    raise ValueError(msg[:199])


def adapters_for(
    pipe: Any,
    units: list[ControlUnit],
    images: list[Any],
    allow_pickle: bool,
    notice: Any = print,
    masks: list[Any] | None = None,
) -> Adapters | None:
    """The IP-Adapter units among `units` (with their `images` and effective region `masks`), installed on `pipe`.

    Without any: None, and the UNet's own attention back.

    Raises
    ------
    ValueError
        One line: another family, an unknown module, a missing adapter or image encoder, an adapter of another
        family or one that does not fit the UNet, two adapters wanting different encoders.
    """
    picked = [(i, unit, image) for i, (unit, image) in enumerate(zip(units, images)) if is_ip_adapter(unit.module)]
    if not picked:
        detach(pipe)
        return None
    from ..families import family_of

    family = family_of(pipe).name
    attach = {"SD1": _attach_unet, "SDXL": _attach_unet, "Flux": _attach_flux, "SD3": _attach_sd3}.get(family)
    if attach is None:
        raise ValueError(
            f"controlnet: IP-Adapter units paint on SD1.5, SDXL, Flux and SD3 models for now, not {family}"
        )
    for _, unit, _ in picked:
        _module_name(unit.module)
    check_adapters(pipe, [unit for _, unit, _ in picked], [i for i, _, _ in picked], family)  # per-block weights
    masks = [(masks or [])[i] if i < len(masks or []) else None for i, _, _ in picked]
    check_region_masks(family, masks)
    files = [find_adapter(unit.model, unit.model_hash) for _, unit, _ in picked]
    attach(pipe, picked, files, allow_pickle)
    from ..network_state import hash_with_notice

    adapters = [
        Adapter(unit, i, image, file.name, hash_with_notice("controlnet", file.path, notice), mask)
        for (i, unit, image), file, mask in zip(picked, files, masks)
    ]
    return Adapters(adapters, source=pipe)


def _attach_unet(pipe: Any, picked: list, files: list[AdapterFile], allow_pickle: bool) -> None:
    """SD1.5/SDXL: h94's adapters on the UNet, with the encoder their module and width want."""
    for _, unit, _ in picked:
        kind = MODULE_ENCODERS[_module_name(unit.module)]
        if kind in ("ViT-L", "SigLIP"):
            whose = "Flux" if kind == "ViT-L" else "SD3.5"
            raise ValueError(
                f"controlnet: {unit.module} feeds {whose}'s IP-Adapter; SD1.5/SDXL ones take ip-adapter_clip_h/g"
            )
    state = _state_of(pipe)
    weights = [state.weights_of(pipe, file, allow_pickle) for file in files]
    encoders = {
        _find_encoder(
            file, encoder_kind(unit.module, file.name), adapter_input_width(w), "proj_in.weight" in w["image_proj"]
        )
        for file, (_, unit, _), w in zip(files, picked, weights)
    }
    if len(encoders) > 1:
        names = ", ".join(sorted(p.name for p in encoders))
        raise ValueError(f"controlnet: these IP-Adapter units need different image encoders ({names}); use one"[:199])
    attach(pipe, files, weights, encoders.pop(), allow_pickle)


def _attach_flux(pipe: Any, picked: list, files: list[AdapterFile], allow_pickle: bool) -> None:
    """Flux: XLabs' adapters on the transformer (ip_adapter_flow.py), with a CLIP ViT-L/14 encoder."""
    for _, unit, _ in picked:
        if MODULE_ENCODERS[_module_name(unit.module)] not in (None, "ViT-L"):
            msg = f"controlnet: {unit.module} runs {MODULE_ENCODERS[unit.module]}; Flux's IP-Adapter takes "
            raise ValueError(msg + "ip-adapter_clip_l (CLIP ViT-L/14) or ip-adapter-auto")
    weights = [read_flux_adapter(pipe, file, allow_pickle) for file in files]
    encoders = {_find_encoder(file, "ViT-L", encoder_input_width(w), False) for file, w in zip(files, weights)}
    if len(encoders) > 1:
        names = ", ".join(sorted(p.name for p in encoders))
        raise ValueError(f"controlnet: these IP-Adapter units need different image encoders ({names}); use one"[:199])
    attach_flux(pipe, files, weights, encoders.pop(), allow_pickle)


def _attach_sd3(pipe: Any, picked: list, files: list[AdapterFile], allow_pickle: bool) -> None:
    """SD3.5: InstantX's adapter on the transformer (ip_adapter_sd3.py), with a SigLIP encoder.

    One adapter file a picture; its units each with their own picture, weight, window and mask (ip_adapter_regions.py).
    """
    for _, unit, _ in picked:
        if MODULE_ENCODERS[_module_name(unit.module)] not in (None, "SigLIP"):
            msg = f"controlnet: {unit.module} runs {MODULE_ENCODERS[unit.module]}; SD3.5's IP-Adapter takes "
            raise ValueError(msg + "ip-adapter_siglip (SigLIP so400m) or ip-adapter-auto")
    names = sorted({file.name for file in files})
    if len({file.key for file in files}) > 1:
        msg = f"controlnet: SD3 paints IP-Adapter units of one adapter file (got {', '.join(names)}); use one for all"
        raise ValueError(msg[:199])
    file = files[0]
    weights = read_sd3_adapter(pipe, file, allow_pickle)
    attach_sd3(pipe, file, weights, _find_encoder(file, "SigLIP", encoder_width(weights), True), allow_pickle)


@dataclass
class _Installed:
    processors: dict[str, Any]
    projection: Any
    encoder: Any


@dataclass
class _State(AdapterState):
    """What a UNet pipeline holds (as a transformer's, `AdapterState`); `installed` keeps `_Installed` sets."""

    def weights_of(self, pipe: Any, file: AdapterFile, allow_pickle: bool) -> dict:
        if file.key not in self.weights:
            self.weights[file.key] = _read_adapter(pipe, file, allow_pickle)
        return self.weights[file.key]


def _state_of(pipe: Any) -> _State:
    return pipe.__dict__.setdefault(_STATE, _State())


def _read_adapter(pipe: Any, file: AdapterFile, allow_pickle: bool) -> dict:
    """An adapter file as ``{"image_proj": …, "ip_adapter": …}`` (h94's layout), checked against the UNet."""
    from ..network_state import read_weights

    raw = read_weights(file.path, allow_pickle, "controlnet")
    if any(key.startswith("ip_adapter_proj_model.") for key in raw):
        raise ValueError(f"controlnet: {file.name} is a Flux IP-Adapter (XLabs'); pick an SD1.5/SDXL one (h94's)"[:199])
    if "image_proj" in raw and isinstance(raw["image_proj"], dict):
        state = {"image_proj": raw["image_proj"], "ip_adapter": raw.get("ip_adapter", {})}
    else:
        state = {"image_proj": {}, "ip_adapter": {}}
        for key, value in raw.items():
            part, _, rest = key.partition(".")
            if part in state:
                state[part][rest] = value
    proj, layers = state["image_proj"], state["ip_adapter"]
    if "0.norm_ip.linear.weight" in layers:
        raise ValueError(
            f"controlnet: {file.name} is an SD3.5 IP-Adapter (InstantX's); pick an SD1.5/SDXL one (h94's)"[:199]
        )
    if not layers or adapter_input_width(state) is None:
        raise ValueError(
            f"controlnet: {file.name} is not an IP-Adapter this builds (plain or plus: image_proj, ip_adapter)"
        )
    unet = pipe.unet
    width, ours = int(layers["1.to_k_ip.weight"].shape[1]), int(unet.config.cross_attention_dim)
    if width != ours:
        theirs, mine = _WIDTHS.get(width, f"width {width}"), _WIDTHS.get(ours, f"width {ours}")
        raise ValueError(
            f"controlnet: {file.name} is an IP-Adapter for {theirs}; this model is {mine} (pick one of its family)"[
                :199
            ]
        )
    cross = sum(1 for name in unet.attn_processors if not name.endswith("attn1.processor"))
    if len([k for k in layers if k.endswith(".to_k_ip.weight")]) != cross or not proj:
        raise ValueError(f"controlnet: {file.name} does not fit this model's UNet ({cross} cross-attention layers)")
    return state


def attach(pipe: Any, files: list[AdapterFile], weights: list[dict], encoder_path: Path, allow_pickle: bool) -> None:
    """Install the adapters of `files` (in order) on the UNet: loaded by ``load_ip_adapter`` once, then kept."""
    state, unet = _state_of(pipe), pipe.unet
    key = (*(file.key for file in files), str(encoder_path))
    if state.current == key:
        return
    detach(pipe)
    state.own = (dict(unet.attn_processors), unet.encoder_hid_proj, unet.config.encoder_hid_dim_type)
    installed = state.installed.get(key)
    if installed is None:
        if str(encoder_path) not in state.encoders:
            encoder = load_encoder(encoder_path, allow_pickle)
            device = getattr(pipe, "_execution_device", None) or unet.device  # the GPU, even while offloading
            state.encoders[str(encoder_path)] = encoder.to(device, unet.dtype)
        pipe.register_modules(image_encoder=state.encoders[str(encoder_path)])
        from ..network_state import quiet_loading

        count = len(files)
        with quiet_loading():
            pipe.load_ip_adapter(weights, subfolder=[""] * count, weight_name=[""] * count, image_encoder_folder=None)
        installed = _Installed(dict(unet.attn_processors), unet.encoder_hid_proj, pipe.image_encoder)
        state.installed[key] = installed
    else:
        unet.set_attn_processor(dict(installed.processors))
        unet.encoder_hid_proj = installed.projection
        unet.config.encoder_hid_dim_type = "ip_image_proj"
        pipe.register_modules(image_encoder=installed.encoder)
    state.current = key


def detach(pipe: Any) -> None:
    """Give the UNet (Flux: the transformer) its own attention back (the adapters stay loaded, for later)."""
    if getattr(pipe, "transformer", None) is not None:
        detach_flux(pipe)
        detach_sd3(pipe)
        _window_hook(pipe.transformer).adapters = None
    state = pipe.__dict__.get(_STATE)
    if state is None or state.current is None:
        return
    processors, projection, kind = state.own
    unet = pipe.unet
    unet.set_attn_processor(dict(processors))
    unet.encoder_hid_proj = projection
    unet.config.encoder_hid_dim_type = kind
    _window_hook(unet).adapters = None
    state.current = None


def active_at(step: int, steps: int, start: float, end: float) -> bool:
    """sd-webui-controlnet's window: step `step` of `steps` applies unless ``step/steps`` is outside start..end."""
    done = step / max(steps, 1)
    return not (done < start or done > end)


class _Window:
    """The UNet's (transformer's) forward pre-hook: each denoising step sets every adapter's scale for that step.

    A step is told by the call's timestep: a second call at the same one (Flux's true CFG, its ControlNet
    pipeline's too) is the same step. A scale is a list per adapter (SD, Flux) or one number (SD3's processors);
    each processor's is its adapters' weights there (a unit's per-block weights: block_weights.py), 0 when off.
    """

    def __init__(self, unet: Any) -> None:
        self.unet, self.adapters, self.pipe, self.calls, self.processors = unet, None, None, 0, []
        self.timestep: Any = None
        self.weights: list[list[float]] = []

    def start(self, adapters: Adapters, pipe: Any) -> None:
        self.adapters, self.pipe, self.calls, self.timestep = adapters, pipe, 0, None
        named = [(n, p) for n, p in self.unet.attn_processors.items() if hasattr(p, "to_k_ip")]
        self.processors = [p for _, p in named]
        units = [a.unit for a in adapters.adapters]
        self.weights = processor_weights([n for n, _ in named], self.unet, units)
        self._set(list(adapters.active))  # before the call: SD3's pipeline encodes the picture only while a scale > 0

    def _set(self, on: list[bool]) -> None:
        for processor, weights in zip(self.processors, self.weights):
            scales = [w if active else 0.0 for w, active in zip(weights, on)]
            several = isinstance(processor.scale, list) or len(scales) > 1  # SD3's: a number for one unit
            processor.scale = scales if several else scales[0]

    def __call__(self, module: Any, args: tuple, kwargs: dict) -> None:
        timestep = kwargs.get("timestep", args[1] if len(args) > 1 else None)
        value = None if timestep is None else float(timestep.flatten()[0]) if hasattr(timestep, "flatten") else timestep
        if self.adapters is None or (value is not None and value == self.timestep):
            return  # none, or the same step again (true CFG calls the transformer twice)
        self.timestep = value
        steps = int(getattr(self.pipe, "_num_timesteps", 0) or 1)
        on = [
            bool(active) and active_at(self.calls, steps, a.unit.guidance_start, a.unit.guidance_end)
            for a, active in zip(self.adapters.adapters, self.adapters.active)
        ]
        self.calls += 1
        self._set(on)


def _window_hook(unet: Any) -> _Window:
    hook = unet.__dict__.get("_jupyter_sd_ip_window")
    if hook is None:
        hook = _Window(unet)
        unet.register_forward_pre_hook(hook, with_kwargs=True)
        unet.__dict__["_jupyter_sd_ip_window"] = hook
    return hook


__all__ = ["Adapters", "active_at", "adapters_for", "detach", "is_ip_adapter"]
