"""A unit's ControlNet model: found by name in the models folder's ``ControlNet/``, a path or a hub id, kept loaded.

Single files in the original (lllyasviel / A1111) key layout load offline: the model's shape is the resident UNet's
(as ``ControlNetModel.from_unet`` derives it) and the keys go through diffusers' own single-file conversion. Loaded
models are kept on the pipeline like LoRA, so switching units loads nothing already loaded. A ControlNet of another
family (an SD1.5 one on SDXL: a different cross-attention width) is refused in one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ... import library
from ..network_state import file_stamp, hash_with_notice, quiet_loading, read_weights
from . import union

_WIDTHS = {768: "SD1.5", 1024: "SD2", 2048: "SDXL"}
_ATTN_KEY = "transformer_blocks.0.attn2.to_k.weight"


@dataclass(frozen=True)
class LoadedControlNet:
    """A loaded ControlNet with the name and short hash sd-webui-controlnet writes for it (``NAME [hash]``)."""

    model: Any
    name: str
    short_hash: str | None


def load_controlnet(
    pipe: Any, model: str, allow_pickle: bool, notice: Any = print, model_hash: str | None = None
) -> LoadedControlNet:
    """The ControlNet a unit names (or its bracketed hash finds), loaded once per pipeline and kept.

    The cache is keyed by the file and its size and time, so a file changed on disk is loaded again.
    """
    name = str(model).strip()
    if not name or name.lower() == "none":
        raise ValueError("controlnet: the unit names no model; give Model: NAME (a file in the ControlNet/ folder)")
    where, key = _locate(name, model_hash)
    cache = pipe.__dict__.setdefault("_jupyter_sd_controlnets", {})
    if key not in cache:
        if isinstance(where, Path):
            loaded = _load_path(pipe, where, allow_pickle, notice)
            label, short = where.stem if where.is_file() else where.name, _hash_of(where, notice)
        else:
            loaded, label, short = _load_hub(pipe, where), where, None
        check_family(pipe, loaded.config.cross_attention_dim, label)
        with quiet_loading():  # diffusers warns of casting with .to(); the UNet's dtype is what the pass runs in
            loaded = loaded.to(pipe.unet.device, pipe.unet.dtype).eval()
        cache[key] = LoadedControlNet(loaded, label, short)
    return cache[key]


def _locate(name: str, model_hash: str | None = None) -> tuple[Path | str, tuple]:
    """Where the model is (a path, or a hub id) and its cache key (a changed file is loaded again)."""
    found = library.find_model("controlnet", name)
    if found is None and model_hash:  # a pasted ``NAME [hash]`` whose file is here under another name
        found = library.find_model("controlnet", model_hash)
    path = found.path if found is not None else Path(name).expanduser()
    if path.exists():
        stamp = file_stamp(path) if path.is_file() else file_stamp(path / "config.json")
        return path, (str(path.resolve()), *stamp)
    if name.count("/") == 1 and not name.startswith((".", "/", "~")) and Path(name).suffix == "":
        return name, (name,)
    raise ValueError(library.not_found_message("controlnet", name)[:199])


def _hash_of(path: Path, notice: Any) -> str | None:
    from ...library.find import hashed_file

    weights = hashed_file("controlnet", path)
    return hash_with_notice("controlnet", weights, notice) if weights is not None else None


def _load_path(pipe: Any, path: Path, allow_pickle: bool, notice: Any) -> Any:
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(f"controlnet: {path} is a folder without config.json (not a diffusers ControlNet)")
        with quiet_loading():
            return union.from_folder(path)  # a ControlNetModel, or a union one by its config
    weights = read_weights(path, allow_pickle, "controlnet")
    if union.is_union_weights(weights):
        return union.from_single_file(pipe, weights, path.name, check_family)
    return from_single_file(pipe, weights, path.name)


def _load_hub(pipe: Any, repo_id: str) -> Any:
    from ..hub import check_hub_model, describe, is_cached

    local = is_cached(repo_id, "config.json")
    if not local:
        try:
            check_hub_model(repo_id)
        except ValueError as error:
            raise ValueError(str(error).replace("model:", "controlnet:", 1)[:199]) from None
    try:
        with quiet_loading():
            return union.from_folder(repo_id, local_files_only=local)
    except Exception as error:  # a repository that is not a ControlNet, a broken download
        raise ValueError(f"controlnet: '{repo_id}' did not load as a ControlNet ({describe(error)})"[:199]) from None


def from_single_file(pipe: Any, weights: dict[str, Any], label: str) -> Any:
    """A ControlNet from a single file's weights, shaped like the resident UNet, with no download.

    The original layout (``input_hint_block``, ``zero_convs``; ``control_model.`` in ControlNet 1.0 files) goes
    through diffusers' ``convert_controlnet_checkpoint``; a file already in diffusers' layout is taken as it is.
    """
    from accelerate import init_empty_weights
    from diffusers import ControlNetModel
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING, convert_controlnet_checkpoint

    width = _width_of(weights)
    if width is not None:
        check_family(pipe, width, label)
    unet = pipe.unet
    hint = weights.get("input_hint_block.0.weight", weights.get("control_model.input_hint_block.0.weight"))
    if hint is None:
        hint = weights.get("controlnet_cond_embedding.conv_in.weight")
    if hint is None:
        raise ValueError(f"controlnet: {label} has no hint block (input_hint_block): not a ControlNet file")
    config = {"layers_per_block": unet.config.layers_per_block}
    state = convert_controlnet_checkpoint(weights, config)
    if "add_embedding.linear_1.weight" not in state:  # SDXL's added embeddings (label_emb), the conversion skips
        source = {k.removeprefix("control_model."): v for k, v in weights.items()}
        for new, old in DIFFUSERS_TO_LDM_MAPPING["controlnet"]["addition_embed_type"].items():
            if old in source:
                state[new] = source[old]
    blocks = [state[f"controlnet_cond_embedding.blocks.{i}.weight"] for i in range(1, 64, 2) if _has_block(state, i)]
    channels = (int(hint.shape[0]), *(int(block.shape[0]) for block in blocks))
    with init_empty_weights():
        model = ControlNetModel.from_unet(
            unet,
            load_weights_from_unet=False,
            conditioning_channels=int(hint.shape[1]),
            conditioning_embedding_out_channels=channels,
        )
    try:
        model.load_state_dict({k: v for k, v in state.items() if v is not None}, strict=True, assign=True)
    except RuntimeError as error:
        first = str(error).splitlines()[1].strip() if len(str(error).splitlines()) > 1 else str(error)
        msg = f"controlnet: {label} does not fit this model's UNet ({first[:80]})"
        raise ValueError(msg[:199]) from None
    return model


def _has_block(state: dict[str, Any], index: int) -> bool:
    return state.get(f"controlnet_cond_embedding.blocks.{index}.weight") is not None


def _width_of(weights: dict[str, Any]) -> int | None:
    """The cross-attention width a ControlNet's weights were trained for (768 SD1.5, 1024 SD2, 2048 SDXL)."""
    for key, value in weights.items():
        if key.endswith(_ATTN_KEY):
            return int(value.shape[1])
    return None


def check_family(pipe: Any, width: int, label: str) -> None:
    """Refuse, in one line, a ControlNet made for another family (its cross-attention width differs)."""
    ours = int(pipe.unet.config.cross_attention_dim)
    if int(width) != ours:
        theirs, mine = _WIDTHS.get(int(width), f"width {width}"), _WIDTHS.get(ours, f"width {ours}")
        msg = f"controlnet: {label} is a {theirs} ControlNet; this model is {mine} (pick a ControlNet of its family)"
        raise ValueError(msg[:199])
