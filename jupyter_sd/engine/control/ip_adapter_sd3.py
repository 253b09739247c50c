"""SD3.5 IP-Adapter units (InstantX/SD3.5-Large-IP-Adapter): read, checked and installed by ``load_ip_adapter``.

InstantX's ``ip-adapter.bin`` is a pickle of ``{"image_proj": …, "ip_adapter": …}``: a time-conditioned Resampler
(``latents``, ``proj_in``, ``layers.N.0.to_kv`` …, ``time_embedding``) over a SigLIP encoder's second-to-last hidden
states, and per transformer block an attention processor (``N.norm_ip``, ``N.to_k_ip``, ``N.to_v_ip`` …); a
``.safetensors`` of it keeps the two parts under ``image_proj.`` / ``ip_adapter.``, as diffusers reads one. The
state dict is given to ``StableDiffusion3Pipeline.load_ip_adapter`` as it is (diffusers renames the Resampler),
with the SigLIP encoder and its image processor registered first. One adapter file a picture (diffusers' SD3 loader
takes one), any number of its units (each its own picture, summed: ip_adapter_regions.py); their weights are the
processors' scales (one a unit), set per step by ip_adapter.py's window hook on the transformer.

Installed sets are kept: the transformer's own processors and ``image_proj`` go back for a request without units.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .ip_adapter_files import AdapterFile, load_siglip
from .ip_adapter_flow import AdapterState

_STATE = "_jupyter_sd_sd3_ip_adapters"


def read_sd3_adapter(pipe: Any, file: AdapterFile, allow_pickle: bool) -> dict:
    """`file` as ``{"image_proj": …, "ip_adapter": …}``, read once and checked against the transformer.

    Raises
    ------
    ValueError
        One line: a pickle without ``--allow-pickle``, not an SD3.5 IP-Adapter (an SD or Flux one names its
        family), or one made for a transformer of another size.
    """
    state = _state_of(pipe)
    if file.key not in state.weights:
        from ..network_state import read_weights

        raw = read_weights(file.path, allow_pickle, "controlnet")
        xlabs = any(key.startswith("ip_adapter_proj_model.") for key in raw)
        state.weights[file.key] = _checked(pipe, file, _parts(raw), xlabs)
    return state.weights[file.key]


def _parts(raw: dict) -> dict:
    """The two parts of a nested pickle, or of a flat file's ``image_proj.`` / ``ip_adapter.`` keys."""
    if isinstance(raw.get("image_proj"), dict):
        return {"image_proj": raw["image_proj"], "ip_adapter": raw.get("ip_adapter", {})}
    state: dict[str, dict] = {"image_proj": {}, "ip_adapter": {}}
    for key, value in raw.items():
        part, _, rest = key.partition(".")
        if part in state:
            state[part][rest] = value
    return state


def _checked(pipe: Any, file: AdapterFile, state: dict, xlabs: bool) -> dict:
    proj, layers = state["image_proj"], state["ip_adapter"]
    if "time_embedding.linear_1.weight" not in proj or "0.norm_ip.linear.weight" not in layers:
        if xlabs:
            why = "a Flux IP-Adapter (XLabs')"
        elif "1.to_k_ip.weight" in layers:
            why = "an SD1.5/SDXL IP-Adapter (h94's layout)"
        else:
            why = "not an SD3.5 IP-Adapter (InstantX's image_proj with a time embedding, ip_adapter)"
        raise ValueError(f"controlnet: {file.name} is {why}; this model is SD3 (InstantX/SD3.5-Large-IP-Adapter)"[:199])
    depth = len({key.split(".")[1] for key in proj if key.startswith("layers.")})
    if depth != 4:  # diffusers' loader builds InstantX's Resampler, 4 blocks deep
        raise ValueError(
            f"controlnet: {file.name} has a Resampler {depth} blocks deep; InstantX's (and diffusers') has 4"
        )
    transformer = pipe.transformer
    blocks = len(transformer.transformer_blocks)
    inner = int(transformer.config.attention_head_dim * transformer.config.num_attention_heads)
    theirs = len([k for k in layers if k.endswith(".to_k_ip.weight")])
    shape = tuple(layers["0.to_k_ip.weight"].shape)
    if theirs != blocks or shape != (inner, inner) or int(proj["proj_out.weight"].shape[0]) != inner:
        msg = f"controlnet: {file.name} does not fit this SD3 transformer ({theirs} blocks of {shape[0]}; it has "
        raise ValueError(f"{msg}{blocks} of {inner}: SD3.5 Large's adapter paints SD3.5 Large)"[:199])
    return state


def encoder_width(state: dict) -> int:
    """The SigLIP hidden width the adapter's Resampler takes (1152: so400m's)."""
    return int(state["image_proj"]["proj_in.weight"].shape[1])


def _state_of(pipe: Any) -> AdapterState:
    return pipe.__dict__.setdefault(_STATE, AdapterState())


def attach_sd3(pipe: Any, file: AdapterFile, weights: dict, encoder_path: Path, allow_pickle: bool) -> None:
    """Install the adapter of `file` on the transformer: ``load_ip_adapter`` once, then kept (swapped back in)."""
    state, transformer = _state_of(pipe), pipe.transformer
    key = (file.key, str(encoder_path))
    if state.current == key:
        return
    detach_sd3(pipe)
    state.own = (dict(transformer.attn_processors), getattr(transformer, "image_proj", None))
    installed = state.installed.get(key)
    if installed is None:
        if str(encoder_path) not in state.encoders:
            encoder, processor = load_siglip(encoder_path, allow_pickle)
            device = getattr(pipe, "_execution_device", None) or transformer.device
            state.encoders[str(encoder_path)] = (encoder.to(device, transformer.dtype), processor)
        encoder, processor = state.encoders[str(encoder_path)]
        pipe.register_modules(image_encoder=encoder, feature_extractor=processor)
        from ..network_state import quiet_loading

        with quiet_loading():
            pipe.load_ip_adapter(weights, image_encoder_folder=None)
        from .ip_adapter_regions import masked_processors

        masked_processors(transformer)  # effective region masks (diffusers' own processor without them)
        installed = (dict(transformer.attn_processors), transformer.image_proj, encoder, processor)
        state.installed[key] = installed
    else:
        transformer.image_proj = installed[1]  # first: its attention counts among the transformer's processors
        transformer.set_attn_processor(dict(installed[0]))
        pipe.register_modules(image_encoder=installed[2], feature_extractor=installed[3])
    state.current = key


def detach_sd3(pipe: Any) -> None:
    """Give the transformer its own attention processors and ``image_proj`` back (the adapter stays loaded)."""
    state = pipe.__dict__.get(_STATE)
    if state is None or state.current is None:
        return
    processors, projection = state.own
    transformer = pipe.transformer
    transformer.image_proj = projection  # first: the adapter's Resampler attention leaves the processors' count
    transformer.set_attn_processor(dict(processors))
    state.current = None


__all__ = ["attach_sd3", "detach_sd3", "encoder_width", "read_sd3_adapter"]
