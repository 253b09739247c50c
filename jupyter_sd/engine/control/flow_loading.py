"""A transformer family's ControlNet (Flux, SD3, Qwen-Image, Z-Image): found as every unit's model is, kept loaded.

diffusers folders and hub ids load with the family's ControlNet class (``FluxControlNetModel`` …) once their
``config.json`` names it. diffusers has no single-file loader for these, so Flux files are read here: the InstantX /
Shakker-Labs layout (diffusers' own names, as their repositories ship it) and XLabs' (Black Forest Labs' block names,
``input_hint_block``, ``pos_embed_input``), shaped from the file and the resident transformer. A ControlNet of
another family (an SD1.5 one on Flux) is refused in one line.
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from typing import Any

from ..families import FAMILIES, family_of
from ..network_state import quiet_loading, read_weights
from .loading import _WIDTHS, LoadedControlNet, _hash_of, _locate, _width_of

_UNET_CONTROLNET = "ControlNetModel"


def load_flow_controlnet(
    pipe: Any, model: str, allow_pickle: bool, notice: Any = print, model_hash: str | None = None
) -> LoadedControlNet:
    """The ControlNet a unit names, in the resident family's class, loaded once per pipeline and kept.

    Raises
    ------
    ValueError
        One line: no model named, not found, another family's ControlNet, a file this family cannot read.
    """
    name = str(model).strip()
    if not name or name.lower() == "none":
        raise ValueError("controlnet: the unit names no model; give Model: NAME (a file in the ControlNet/ folder)")
    family = family_of(pipe)
    where, key = _locate(name, model_hash)
    cache = pipe.__dict__.setdefault("_jupyter_sd_controlnets", {})
    if key not in cache:
        if isinstance(where, Path):
            label = where.stem if where.is_file() else where.name
            if where.is_dir():
                loaded = _from_folder(family, where, label)
            else:
                loaded = from_flow_file(pipe, read_weights(where, allow_pickle, "controlnet"), label)
            short = _hash_of(where, notice)
        else:
            loaded, label, short = _from_hub(family, where), where, None
        transformer = pipe.transformer
        borrow = getattr(type(loaded), "from_transformer", None)
        if borrow is not None and "controlnet" in inspect.signature(borrow).parameters:  # Z-Image's shares embedders
            loaded = borrow(loaded, transformer)
        with quiet_loading():
            loaded = loaded.to(transformer.device, transformer.dtype).eval()
        cache[key] = LoadedControlNet(loaded, label, short)
    return cache[key]


def check_class(family: Any, class_name: str, label: str, config: dict[str, Any] | None = None) -> None:
    """Refuse, in one line, a ControlNet whose class is not the family's (an SD1.5 or SD3 ControlNet on Flux)."""
    if class_name == family.controlnet:
        return
    owners = {f.controlnet: f.name for f in FAMILIES if f.controlnet}
    theirs = owners.get(class_name)
    if class_name == _UNET_CONTROLNET:
        width = int((config or {}).get("cross_attention_dim") or 0)
        theirs = _WIDTHS.get(width, f"width {width}") if width else "SD1.5/SDXL"
    if theirs is None:
        raise ValueError(f"controlnet: {label} is not a ControlNet ({class_name or 'no _class_name'})"[:199])
    msg = f"controlnet: {label} is a {theirs} ControlNet; this model is {family.name} (pick a ControlNet of its family)"
    raise ValueError(msg[:199])


def _from_folder(family: Any, folder: Path, label: str) -> Any:
    import diffusers

    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ValueError(f"controlnet: {folder} is a folder without config.json (not a diffusers ControlNet)")
    config = json.loads(config_file.read_text())
    check_class(family, config.get("_class_name", ""), label, config)
    with quiet_loading():
        return getattr(diffusers, family.controlnet).from_pretrained(str(folder))


def _from_hub(family: Any, repo_id: str) -> Any:
    import diffusers

    from ..hub import check_hub_model, describe, is_cached

    local = is_cached(repo_id, "config.json")
    if not local:
        try:
            check_hub_model(repo_id)
        except ValueError as error:
            raise ValueError(str(error).replace("model:", "controlnet:", 1)[:199]) from None
    cls = getattr(diffusers, family.controlnet)
    try:
        config = cls.load_config(repo_id, local_files_only=local)
    except Exception as error:  # not a diffusers repository, a broken download
        raise ValueError(f"controlnet: '{repo_id}' did not load as a ControlNet ({describe(error)})"[:199]) from None
    check_class(family, config.get("_class_name", ""), repo_id, config)
    with quiet_loading():
        return cls.from_pretrained(repo_id, local_files_only=local)


def from_flow_file(pipe: Any, weights: dict[str, Any], label: str) -> Any:
    """A ControlNet from one file's weights for the resident transformer family, with no download.

    Raises
    ------
    ValueError
        One line: a UNet ControlNet (SD1.5, SDXL), a layout this family does not read, weights that do not fit.
    """
    family = family_of(pipe)
    width = _width_of(weights)  # a UNet ControlNet's cross-attention (a transformer ControlNet has none)
    if width is not None:
        check_class(family, _UNET_CONTROLNET, label, {"cross_attention_dim": width})
    if family.controlnet != "FluxControlNetModel":
        msg = f"controlnet: {label}: {family.name} ControlNets load from diffusers folders or hub ids, not single files"
        raise ValueError(msg[:199])
    if any(k.startswith("double_blocks.") for k in weights):
        weights = _xlabs_to_diffusers(weights)
    if "controlnet_x_embedder.weight" not in weights:
        raise ValueError(f"controlnet: {label} is not a Flux ControlNet file (no controlnet_x_embedder)"[:199])
    return _flux_controlnet(pipe, weights, label)


def _xlabs_to_diffusers(weights: dict[str, Any]) -> dict[str, Any]:
    """XLabs' Flux ControlNet (BFL names) → diffusers' ``FluxControlNetModel`` names."""
    from ..loading.flux_keys import flux_to_diffusers

    own, blocks = {}, {}
    hint_names = {0: "conv_in", 14: "conv_out", **{2 * (i + 1): f"blocks.{i}" for i in range(6)}}
    for name, tensor in weights.items():
        if match := re.fullmatch(r"input_hint_block\.(\d+)\.(weight|bias)", name):
            own[f"input_hint_block.{hint_names[int(match[1])]}.{match[2]}"] = tensor
        elif name.startswith("pos_embed_input."):
            own[name.replace("pos_embed_input.", "controlnet_x_embedder.", 1)] = tensor
        elif name.startswith("controlnet_blocks."):
            own[name] = tensor
        else:
            blocks[name] = tensor
    return {**flux_to_diffusers(blocks), **own}


def _count(weights: dict[str, Any], prefix: str) -> int:
    found = {int(m[1]) for k in weights if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}
    return max(found) + 1 if found else 0


def _flux_controlnet(pipe: Any, weights: dict[str, Any], label: str) -> Any:
    """A ``FluxControlNetModel`` shaped by the file (blocks, modes, hint block) and the resident transformer."""
    from accelerate import init_empty_weights
    from diffusers import FluxControlNetModel

    ours = pipe.transformer.config
    head = int(ours.attention_head_dim)
    hint = weights.get("input_hint_block.conv_out.weight")
    modes = weights.get("controlnet_mode_embedder.weight")
    config = {
        "patch_size": 2 if hint is not None else ours.patch_size,  # XLabs: the hint block's map packed 2×2
        "in_channels": int(weights["controlnet_x_embedder.weight"].shape[1]),
        "num_layers": _count(weights, "transformer_blocks."),
        "num_single_layers": _count(weights, "single_transformer_blocks."),
        "attention_head_dim": head,
        "num_attention_heads": int(weights["controlnet_x_embedder.weight"].shape[0]) // head,
        "joint_attention_dim": int(weights["context_embedder.weight"].shape[1]),
        "pooled_projection_dim": int(weights["time_text_embed.text_embedder.linear_1.weight"].shape[1]),
        "guidance_embeds": "time_text_embed.guidance_embedder.linear_1.weight" in weights,
        "axes_dims_rope": list(ours.axes_dims_rope),
        "num_mode": None if modes is None else int(modes.shape[0]),
        "conditioning_embedding_channels": None if hint is None else int(hint.shape[0]),
    }
    with init_empty_weights():
        model = FluxControlNetModel(**config)
    try:
        model.load_state_dict(weights, strict=True, assign=True)
    except RuntimeError as error:
        lines = str(error).splitlines()
        first = lines[1].strip() if len(lines) > 1 else str(error)
        raise ValueError(f"controlnet: {label} does not fit this model's transformer ({first[:80]})"[:199]) from None
    return model
