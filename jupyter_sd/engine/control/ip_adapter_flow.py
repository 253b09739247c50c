"""Flux IP-Adapter units (XLabs-AI/flux-ip-adapter): read, checked and installed by diffusers' ``load_ip_adapter``.

XLabs' file keeps its projection under ``ip_adapter_proj_model.`` and each double block's image key and value under
``double_blocks.N.processor.ip_adapter_double_stream_k_proj`` / ``…_v_proj``; here it is renamed as diffusers'
``FluxIPAdapterMixin.load_ip_adapter`` renames it when it reads the file itself (``image_proj`` / ``ip_adapter``
with ``N.to_k_ip``), so the state dict given to ``load_ip_adapter`` is the one diffusers would make. Its encoder is a
CLIP ViT-L/14 (``openai/clip-vit-large-patch14``); its weight is the processors' scale, set per step by
ip_adapter.py's window hook on the transformer.

Installed sets are kept: the transformer's own processors and projection go back for a request without units.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .ip_adapter_files import AdapterFile, load_encoder

_STATE = "_jupyter_sd_flux_ip_adapters"
_XLABS_PROJ, _XLABS_BLOCKS = "ip_adapter_proj_model.", "double_blocks."


def read_flux_adapter(pipe: Any, file: AdapterFile, allow_pickle: bool) -> dict:
    """`file` as diffusers' ``{"image_proj": …, "ip_adapter": …}`` for Flux, checked against the transformer.

    Raises
    ------
    ValueError
        One line: not a Flux IP-Adapter (an SD one names its family), or one for a transformer of another shape.
    """
    state = _state_of(pipe)
    if file.key not in state.weights:
        from ..network_state import read_weights

        state.weights[file.key] = _checked(
            pipe, file, _diffusers_names(read_weights(file.path, allow_pickle, "controlnet"))
        )
    return state.weights[file.key]


def _diffusers_names(raw: dict) -> dict:
    """XLabs' names as diffusers' loader renames them (its ``prefix.rest`` split and ``processor.`` dropped)."""
    state: dict[str, dict] = {"image_proj": {}, "ip_adapter": {}}
    for key, value in raw.items():
        part, _, rest = key.partition(".")
        if key.startswith(("image_proj.", _XLABS_PROJ)):
            state["image_proj"][rest] = value
        elif key.startswith(("ip_adapter.", _XLABS_BLOCKS)):
            rest = rest.replace("ip_adapter_double_stream_k_proj", "to_k_ip")
            state["ip_adapter"][
                rest.replace("ip_adapter_double_stream_v_proj", "to_v_ip").replace("processor.", "")
            ] = value
    return state


def _checked(pipe: Any, file: AdapterFile, state: dict) -> dict:
    proj, layers = state["image_proj"], state["ip_adapter"]
    if "proj.weight" not in proj or "0.to_k_ip.bias" not in layers:
        sd = "1.to_k_ip.weight" in layers
        why = (
            "an SD1.5/SDXL IP-Adapter (h94's layout)" if sd else "not a Flux IP-Adapter (XLabs' ip_adapter_proj_model)"
        )
        raise ValueError(f"controlnet: {file.name} is {why}; this model is Flux (XLabs-AI/flux-ip-adapter)"[:199])
    transformer = pipe.transformer
    blocks, width = len(transformer.transformer_blocks), int(transformer.config.joint_attention_dim)
    theirs = len([k for k in layers if k.endswith(".to_k_ip.weight")])
    shape = tuple(layers["0.to_k_ip.weight"].shape)
    if theirs != blocks or shape != (int(transformer.inner_dim), width) or proj["proj.weight"].shape[0] % width:
        msg = f"controlnet: {file.name} does not fit this Flux transformer ({theirs} blocks, {shape}; it has {blocks})"
        raise ValueError(msg[:199])
    return state


def encoder_input_width(state: dict) -> int:
    """The image embedding width the adapter's projection takes (768: CLIP ViT-L/14's)."""
    return int(state["image_proj"]["proj.weight"].shape[1])


def load_vit_l(path: Path, allow_pickle: bool) -> Any:
    """The CLIP ViT-L/14 image encoder at `path` (a single file: OpenAI's build, quick GELU, as its config says)."""
    return load_encoder(path, allow_pickle, act="quick_gelu")


@dataclass
class AdapterState:
    """What a transformer pipeline keeps of its adapters: weights and encoders read, what is installed now."""

    weights: dict[tuple, dict] = field(default_factory=dict)
    encoders: dict[str, Any] = field(default_factory=dict)
    installed: dict[tuple, tuple] = field(default_factory=dict)
    current: tuple | None = None
    own: tuple = ()


def _state_of(pipe: Any) -> AdapterState:
    return pipe.__dict__.setdefault(_STATE, AdapterState())


def attach_flux(
    pipe: Any, files: list[AdapterFile], weights: list[dict], encoder_path: Path, allow_pickle: bool
) -> None:
    """Install the adapters of `files` (in order) on the transformer: ``load_ip_adapter`` once, then kept."""
    state, transformer = _state_of(pipe), pipe.transformer
    key = (*(file.key for file in files), str(encoder_path))
    if state.current == key:
        return
    detach_flux(pipe)
    state.own = (
        dict(transformer.attn_processors),
        getattr(transformer, "encoder_hid_proj", None),  # Flux has none until an adapter is loaded
        transformer.config.get("encoder_hid_dim_type"),
    )
    installed = state.installed.get(key)
    if installed is None:
        if str(encoder_path) not in state.encoders:
            encoder = load_vit_l(encoder_path, allow_pickle)
            device = getattr(pipe, "_execution_device", None) or transformer.device
            state.encoders[str(encoder_path)] = encoder.to(device, transformer.dtype)
        pipe.register_modules(image_encoder=state.encoders[str(encoder_path)])
        from ..network_state import quiet_loading

        count = len(files)
        with quiet_loading():
            pipe.load_ip_adapter(weights, weight_name=[""] * count, subfolder=[""] * count)
        from .ip_adapter_regions import masked_processors

        masked_processors(transformer)  # effective region masks (diffusers' own processors without them)
        installed = (dict(transformer.attn_processors), transformer.encoder_hid_proj, pipe.image_encoder)
        state.installed[key] = installed
    else:
        transformer.set_attn_processor(dict(installed[0]))
        transformer.encoder_hid_proj = installed[1]
        transformer.config.encoder_hid_dim_type = "ip_image_proj"
        pipe.register_modules(image_encoder=installed[2])
    state.current = key


def detach_flux(pipe: Any) -> None:
    """Give the transformer its own attention processors and projection back (the adapters stay loaded)."""
    state = pipe.__dict__.get(_STATE)
    if state is None or state.current is None:
        return
    processors, projection, kind = state.own
    transformer = pipe.transformer
    transformer.set_attn_processor(dict(processors))
    transformer.encoder_hid_proj = projection
    transformer.config.encoder_hid_dim_type = kind
    state.current = None


__all__ = ["attach_flux", "detach_flux", "encoder_input_width", "load_vit_l", "read_flux_adapter"]
