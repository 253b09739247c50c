"""LoRA from ``<lora:name:weight>`` tags, as peft adapters on the pipeline (diffusers' LoRA loader).

Each file is loaded once and stays as one adapter (at most `KEEP_LORAS`, least recently used dropped); a request
only activates the adapters it names with its weights, text encoder and UNet apart. LyCORIS kinds diffusers cannot
load, and LoRA made for another model family, are refused in one line before anything is loaded.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any

from .. import library
from .network_state import LoadedLora, NetworkState, Notice, file_stamp, first_line, quiet_loading, read_weights

_UNSUPPORTED_KINDS = {
    "hada_w1_a": "LoHa",
    "lokr_w1": "LoKr",
    "lokr_w1_a": "LoKr",
    "oft_blocks": "OFT",
    "oft_diag": "OFT",
    "on_input": "IA3",
    "a1.weight": "GLoRA",
    "diff": "full-weight diff",
    "diff_b": "full-weight diff",
}
"""LyCORIS kinds A1111 loads and diffusers' LoRA converter refuses: a key's suffix → the kind's name."""


KEEP_LORAS = 8
"""LoRA files kept loaded on the pipeline between cells (each holds its weights in memory)."""


def set_loras(pipe: Any, state: NetworkState, tags: list, allow_pickle: bool, notice: Notice) -> list[tuple[str, Any]]:
    """Load what the tags name (once), then activate exactly those adapters with the tags' weights."""
    active: dict[str, Any] = {}
    if tags and not _can_load_lora(pipe, notice):
        tags = []
    for tag in tags:
        found = library.find_model("lora", tag.name)
        if found is None:
            notice(library.not_found_message("lora", tag.name) + "; painting without it")
            continue
        path = str(found.path)
        if _load_lora(pipe, state, found.path, allow_pickle, notice):
            active[path] = tag  # a name given twice: the last tag's weights, as A1111's last activation
    state.cells += 1
    for path in active:
        state.loras[path].last_used = state.cells
    _forget_unused(pipe, state, keep=set(active))
    wanted = tuple((state.loras[p].adapter, t.te_weight, t.unet_weight) for p, t in active.items())
    if wanted != state.active:
        _activate(pipe, state, active)
        state.active = wanted
    return list(active.items())


def _forget_unused(pipe: Any, state: NetworkState, keep: set[str]) -> None:
    """Keep at most `KEEP_LORAS` adapters loaded: drop the ones unused longest (a later cell loads them again)."""
    unused = sorted((loaded.last_used, path) for path, loaded in state.loras.items() if path not in keep)
    for _, path in unused[: max(0, len(state.loras) - KEEP_LORAS)]:
        _drop_adapter(pipe, state.loras.pop(path).adapter)
        state.active = None


def _can_load_lora(pipe: Any, notice: Notice) -> bool:
    """LoRA need a pipeline with diffusers' LoRA loader and the peft package; else one line, and paint on."""
    import importlib.util

    if not hasattr(pipe, "load_lora_weights"):
        notice(f"lora: {type(pipe).__name__} cannot load LoRA; painting without them")
        return False
    if importlib.util.find_spec("peft") is None:
        notice("lora: LoRA need peft: pip install 'jupyter_sd[lora]' (or pip install peft); painting without them")
        return False
    return True


def _load_lora(pipe: Any, state: NetworkState, path: Path, allow_pickle: bool, notice: Notice) -> bool:
    key, stamp = str(path), (*file_stamp(path), allow_pickle)
    loaded = state.loras.get(key)
    if loaded is not None and loaded.stamp[:2] == stamp[:2]:
        return True
    refused = state.refused.get(key)
    if refused is not None and refused[0] == stamp:
        notice(refused[1])  # not tried again, but said again: the prompt still names it
        return False
    if loaded is not None:  # the file changed on disk: load it again
        _drop_adapter(pipe, loaded.adapter)
        del state.loras[key]
        state.active = None
    try:
        weights = read_weights(path, allow_pickle, "lora")
        _check_lora(path, weights, pipe)
        adapter = _adapter_name(path, state)
        with quiet_loading():
            try:
                pipe.load_lora_weights(dict(weights), adapter_name=adapter)
            except Exception as error:
                _drop_adapter(pipe, adapter)  # nothing half-loaded
                why = _why_not_loaded(error)
                msg = f"lora: could not load {path.name} on this model ({why}); painting without it"
                raise ValueError(msg) from error
        components = tuple(part for part, names in pipe.get_list_adapters().items() if adapter in names)
        if not components:
            msg = f"lora: {path.name} holds no weights for this model's layers; painting without it"
            raise ValueError(msg)
    except (ValueError, OSError) as error:
        text = str(error)
        if not text.startswith("lora:"):
            text = f"lora: could not read {path.name} ({first_line(error)}); painting without it"
        state.refused[key] = (stamp, text)
        notice(text)
        return False
    state.loras[key] = LoadedLora(adapter, stamp, library.short_hash("lora", path), components)
    state.loads += 1
    state.active = None
    return True


def _why_not_loaded(error: Exception) -> str:
    """The loading error in a few words (diffusers' and peft's run long): another model's layers, or its first line."""
    text = str(error)
    if "size mismatch" in text:
        return "its layer sizes are another model's"
    if "not found in the base model" in text:  # peft: no target module of the file is in this model
        return "its layers are another model's"
    return first_line(error)


def _check_lora(path: Path, weights: dict[str, Any], pipe: Any) -> None:
    """Refuse, before loading, what diffusers cannot load: LyCORIS kinds, and LoRA made for another family."""
    for key in weights:
        suffix = key.split(".", 1)[-1]
        for marker, kind in _UNSUPPORTED_KINDS.items():
            if suffix == marker or suffix.startswith(marker + "."):
                msg = f"lora: {path.name} is a {kind} network, which diffusers cannot load; painting without it"
                raise ValueError(msg)
    is_xl_lora = any(
        key.startswith(("lora_te1_", "lora_te2_", "lora_unet_input_blocks_", "lora_unet_label_emb"))
        or key.startswith("text_encoder_2.")
        for key in weights
    )
    is_sd_pipe = getattr(pipe, "unet", None) is not None  # (a transformer family's own loader refuses what is not its)
    if is_xl_lora and is_sd_pipe and getattr(pipe, "text_encoder_2", None) is None:  # (SD 1.x on SDXL: loading refuses)
        msg = f"lora: {path.name} is made for SDXL and this model is SD 1.x/2.x; painting without it"
        raise ValueError(msg)


def _adapter_name(path: Path, state: NetworkState) -> str:
    """A peft adapter name for a file: its stem in word characters, unique on this pipeline."""
    base = re.sub(r"\W", "_", path.stem) or "lora"
    taken = {loaded.adapter for loaded in state.loras.values()}
    name, count = base, 1
    while name in taken:
        count += 1
        name = f"{base}_{count}"
    return name


def _drop_adapter(pipe: Any, adapter: str) -> None:
    with quiet_loading(), contextlib.suppress(Exception):
        pipe.delete_adapters(adapter)


def _activate(pipe: Any, state: NetworkState, active: dict[str, Any]) -> None:
    """Activate exactly the adapters in `active` (per component weights), or switch LoRA off when there are none."""
    if not state.loras:
        return
    with quiet_loading():
        if not active:
            pipe.disable_lora()
            return
        pipe.enable_lora()
        names, weights = [], []
        for path, tag in active.items():
            loaded = state.loras[path]
            names.append(loaded.adapter)
            weights.append(
                {
                    part: tag.unet_weight if part in ("unet", "transformer") else tag.te_weight
                    for part in loaded.components
                }
            )
        pipe.set_adapters(names, weights)
