"""A1111's extra networks on the loaded pipeline: LoRA tags, embeddings by file name, an external VAE.

LoRA come from ``<lora:…>`` tags; a textual-inversion embedding is triggered by its file name; ``--vae`` swaps the
decoder.

Files come from the models folder (`jupyter_sd.library`). What loads stays loaded on the pipeline (one peft adapter
per LoRA file, one token set per embedding), so the next cell that names it loads nothing; each request only sets
the adapters' weights. A file that cannot be used gets one line naming it and why, and painting goes on without
it, as in A1111.
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import library
from ..prompts import extract_networks
from ..request import PaintRequest

Notice = Callable[[str], None]

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
_TEXT_FIELDS = ("prompt", "negative_prompt", "hires_prompt")
"""The request's fields the text encoder reads."""


@dataclass(frozen=True)
class AppliedNetworks:
    """What the networks stage did for one request."""

    key: tuple
    """Hashable: the LoRA files and weights, embeddings and VAE in use (equal keys paint with equal networks)."""
    text_key: tuple
    """The part of `key` that changes text embeddings (LoRA text-encoder weights, embeddings): for the
    conditioning cache."""
    params: dict[str, str] = field(default_factory=dict)
    """A1111 infotext keys: ``Model hash``, ``VAE hash``, ``VAE``, ``Lora hashes``, ``TI hashes``."""


@dataclass
class _LoadedLora:
    adapter: str
    stamp: tuple
    short_hash: str
    components: tuple[str, ...]
    last_used: int = 0


@dataclass
class _LoadedEmbedding:
    stamp: tuple
    short_hash: str
    tokens: tuple[str, ...]


@dataclass
class _State:
    """What is loaded on one pipeline (kept on the pipeline object, so a new model starts clean)."""

    loras: dict[str, _LoadedLora] = field(default_factory=dict)
    embeddings: dict[str, _LoadedEmbedding] = field(default_factory=dict)
    refused: dict[str, tuple] = field(default_factory=dict)
    """Files that could not be used: path → (size, mtime, allow_pickle) and the line that said why."""
    active: tuple | None = None
    own_vae: Any = None
    vae: tuple | None = None
    cells: int = 0
    loads: int = 0
    """Files loaded onto this pipeline so far (LoRA, embeddings, VAEs): a cell that only changes weights adds none."""


def state_of(pipe: Any) -> _State:
    """The networks state of a pipeline (created on first use)."""
    state = getattr(pipe, "_jupyter_sd_networks", None)
    if state is None:
        state = _State()
        pipe._jupyter_sd_networks = state
    return state


def apply_networks(pipe: Any, request: PaintRequest, notice: Notice, model_file: str | None = None) -> AppliedNetworks:
    """Put the request's LoRA, embeddings and VAE on the pipeline; say in one line what could not be used.

    Parameters
    ----------
    model_file
        The checkpoint file the pipeline came from, if it is a single file (for ``Model hash``).

    Raises
    ------
    ValueError
        For a malformed tag such as ``<lora:>`` (before anything is loaded).
    """
    texts, tags = {}, {}
    for name in _TEXT_FIELDS:  # (tags of unsupported kinds are said by the engine, with the conditioning)
        texts[name], tags[name], _ = extract_networks(getattr(request, name, "") or "")
    if tags["negative_prompt"]:
        names = ", ".join(f"<lora:{tag.name}>" for tag in tags["negative_prompt"])
        notice(f"prompt: {names} in the negative prompt does nothing (A1111 applies LoRA from the prompt only)")
    if tags["hires_prompt"] and {t.name for t in tags["hires_prompt"]} != {t.name for t in tags["prompt"]}:
        notice("prompt: the hires pass uses the prompt's LoRA (other LoRA in the hires prompt are not applied)")
    state = state_of(pipe)
    params: dict[str, str] = {}
    if model_file:
        params["Model hash"] = _hash_with_notice("checkpoint", Path(model_file), notice)
    vae_key = _set_vae(pipe, state, request, notice, params)
    loras = _set_loras(pipe, state, tags["prompt"], request.allow_pickle, notice)
    if loras:
        params["Lora hashes"] = ", ".join(f"{_alias(tag.name)}: {state.loras[path].short_hash}" for path, tag in loras)
    used = _use_embeddings(pipe, state, texts, request.allow_pickle, notice)
    if used:
        params["TI hashes"] = ", ".join(f"{_alias(stem)}: {state.embeddings[path].short_hash}" for stem, path in used)
    lora_key = tuple((path, state.loras[path].stamp[:2], tag.te_weight, tag.unet_weight) for path, tag in loras)
    text_key = (
        tuple((path, stamp, te) for path, stamp, te, _ in lora_key),
        tuple((stem, state.embeddings[path].stamp[:2]) for stem, path in used),
    )
    return AppliedNetworks((lora_key, text_key[1], vae_key), text_key, params)


def _alias(name: str) -> str:
    """A name as A1111 writes it inside ``Lora hashes`` / ``TI hashes`` (no ``:`` or ``,``)."""
    return name.replace(":", "").replace(",", "")


def _stamp(path: Path) -> tuple:
    stat = path.stat()
    return (stat.st_size, stat.st_mtime)


def _hash_with_notice(kind: str, path: Path, notice: Notice) -> str:
    if path.stat().st_size > library.BIG_FILE and not library.has_cached_hash(kind, path):
        notice(f"hashing {path.name} once for its A1111 hash ({library.format_size(path.stat().st_size)})…")
    return library.short_hash(kind, path)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Diffusers and peft log and warn while loading adapters; what matters reaches the user as our one line."""
    loggers = [logging.getLogger(name) for name in ("diffusers", "peft", "transformers")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _read_weights(path: Path, allow_pickle: bool, kind: str) -> dict[str, Any]:
    """Read a weights file: safetensors always; a pickle only when allowed (``torch.load(weights_only=True)``).

    Raises
    ------
    ValueError
        One line naming the file: a pickle without ``allow_pickle``, or a file that does not read (truncated, …).
    """
    is_pickle = path.suffix.lower() != ".safetensors"
    if is_pickle and not allow_pickle:
        msg = (
            f"{kind}: {path.name} is a pickle file, which can run code when loaded "
            "(pass --allow-pickle if you trust it); painting without it"
        )
        raise ValueError(msg)
    try:
        if not is_pickle:
            from safetensors.torch import load_file

            return load_file(str(path))
        import torch

        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:  # safetensors and pickle raise their own kinds for a damaged file
        msg = f"{kind}: could not read {path.name} ({_first_line(error)}); painting without it"
        raise ValueError(msg) from error


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return (lines[0][:160] if lines else type(error).__name__).rstrip(".: ")


# -- LoRA ------------------------------------------------------------------------------------------------------


def _set_loras(pipe: Any, state: _State, tags: list, allow_pickle: bool, notice: Notice) -> list[tuple[str, Any]]:
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


def _forget_unused(pipe: Any, state: _State, keep: set[str]) -> None:
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


def _load_lora(pipe: Any, state: _State, path: Path, allow_pickle: bool, notice: Notice) -> bool:
    key, stamp = str(path), (*_stamp(path), allow_pickle)
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
        weights = _read_weights(path, allow_pickle, "lora")
        _check_lora(path, weights, pipe)
        adapter = _adapter_name(path, state)
        with _quiet():
            try:
                pipe.load_lora_weights(dict(weights), adapter_name=adapter)
            except Exception as error:
                _drop_adapter(pipe, adapter)  # nothing half-loaded
                why = "its layer sizes are another model's" if "size mismatch" in str(error) else _first_line(error)
                msg = f"lora: could not load {path.name} on this model ({why}); painting without it"
                raise ValueError(msg) from error
        components = tuple(part for part, names in pipe.get_list_adapters().items() if adapter in names)
        if not components:
            msg = f"lora: {path.name} holds no weights for this model's layers; painting without it"
            raise ValueError(msg)
    except (ValueError, OSError) as error:
        text = str(error)
        if not text.startswith("lora:"):
            text = f"lora: could not read {path.name} ({_first_line(error)}); painting without it"
        state.refused[key] = (stamp, text)
        notice(text)
        return False
    state.loras[key] = _LoadedLora(adapter, stamp, library.short_hash("lora", path), components)
    state.loads += 1
    state.active = None
    return True


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
    if is_xl_lora and getattr(pipe, "text_encoder_2", None) is None:  # (the other way round, loading refuses it)
        msg = f"lora: {path.name} is made for SDXL and this model is SD 1.x/2.x; painting without it"
        raise ValueError(msg)


def _adapter_name(path: Path, state: _State) -> str:
    """A peft adapter name for a file: its stem in word characters, unique on this pipeline."""
    base = re.sub(r"\W", "_", path.stem) or "lora"
    taken = {loaded.adapter for loaded in state.loras.values()}
    name, count = base, 1
    while name in taken:
        count += 1
        name = f"{base}_{count}"
    return name


def _drop_adapter(pipe: Any, adapter: str) -> None:
    with _quiet(), contextlib.suppress(Exception):
        pipe.delete_adapters(adapter)


def _activate(pipe: Any, state: _State, active: dict[str, Any]) -> None:
    """Activate exactly the adapters in `active` (per component weights), or switch LoRA off when there are none."""
    if not state.loras:
        return
    with _quiet():
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


# -- textual inversion ---------------------------------------------------------------------------------------------

_WORD_EDGE = r"(?<![\w\-.]){}(?![\w\-])"


def _use_embeddings(
    pipe: Any, state: _State, texts: dict[str, str], allow_pickle: bool, notice: Notice
) -> list[tuple[str, str]]:
    """Load the embeddings whose file stem is a word of a prompt (A1111's trigger); return (stem, path) of each.

    A multi-vector embedding is loaded as diffusers does (``stem``, ``stem_1``, …); conditioning.py expands the
    word to all its vectors and keeps them in one chunk.
    """
    candidates = library.list_models("embedding")
    if not candidates or not hasattr(pipe, "load_textual_inversion"):
        return []
    used: list[tuple[str, str]] = []
    for model in candidates:
        pattern = re.compile(_WORD_EDGE.format(re.escape(model.name)), re.IGNORECASE)
        if not any(pattern.search(text) for text in texts.values()):
            continue
        if not _load_embedding(pipe, state, model.path, model.name, allow_pickle, notice):
            continue
        used.append((model.name, str(model.path)))
    return used


def _load_embedding(pipe: Any, state: _State, path: Path, stem: str, allow_pickle: bool, notice: Notice) -> bool:
    key, stamp = str(path), (*_stamp(path), allow_pickle)
    loaded = state.embeddings.get(key)
    if loaded is not None and loaded.stamp[:2] == stamp[:2]:
        return True
    refused = state.refused.get(key)
    if refused is not None and refused[0] == stamp:
        notice(refused[1])
        return False
    if loaded is not None:
        with _quiet(), contextlib.suppress(Exception):
            pipe.unload_textual_inversion(list(loaded.tokens))
        del state.embeddings[key]
    try:
        vectors = _embedding_vectors(path, _read_weights(path, allow_pickle, "embedding"), pipe)
        for _, tokenizer, _ in vectors:
            if stem in tokenizer.get_vocab() or f"{stem}_1" in tokenizer.get_vocab():
                msg = (
                    f"embedding: {path.name} is named like a word the model already knows ('{stem}'); "
                    "rename the file to use it"
                )
                raise ValueError(msg)
        with _quiet():
            for encoder, tokenizer, tensor in vectors:
                pipe.load_textual_inversion(tensor, token=stem, text_encoder=encoder, tokenizer=tokenizer)
    except (ValueError, OSError, RuntimeError) as error:
        text = str(error)
        if not text.startswith("embedding:"):
            text = f"embedding: could not read {path.name} ({_first_line(error)}); painting without it"
        state.refused[key] = (stamp, text)
        notice(text)
        return False
    count = vectors[0][2].shape[0]
    tokens = (stem, *(f"{stem}_{i}" for i in range(1, count)))
    state.embeddings[key] = _LoadedEmbedding(stamp, library.short_hash("embedding", path), tokens)
    state.loads += 1
    return True


def _embedding_vectors(path: Path, data: Any, pipe: Any) -> list[tuple[Any, Any, Any]]:
    """The (text encoder, tokenizer, vectors) to load, from any layout A1111 reads.

    A1111 ``.pt`` (``string_to_param``), A1111 safetensors (``emb_params``), diffusers' one-key files, SDXL's
    ``clip_l``/``clip_g`` pair.

    Raises
    ------
    ValueError
        For any other layout, or vectors whose width is not the text encoder's (another model family).
    """
    import torch

    encoders = [(pipe.text_encoder, pipe.tokenizer)]
    if getattr(pipe, "text_encoder_2", None) is not None:
        encoders.append((pipe.text_encoder_2, pipe.tokenizer_2))
    tensors: list[Any]
    if isinstance(data, dict) and "clip_l" in data and "clip_g" in data:
        tensors = [data["clip_l"], data["clip_g"]]
    elif isinstance(data, dict) and isinstance(data.get("string_to_param"), dict) and "*" in data["string_to_param"]:
        tensors = [data["string_to_param"]["*"]]
    elif isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), torch.Tensor):
        tensors = [next(iter(data.values()))]
    elif isinstance(data, torch.Tensor):
        tensors = [data]
    else:
        keys = ", ".join(list(data)[:4]) if isinstance(data, dict) else type(data).__name__
        msg = f"embedding: {path.name} is not a textual-inversion embedding (it holds {keys}); painting without it"
        raise ValueError(msg)
    if len(tensors) != len(encoders):
        made_for, this = ("SDXL", "SD 1.x/2.x") if len(tensors) == 2 else ("SD 1.x/2.x", "SDXL")
        msg = f"embedding: {path.name} is made for {made_for} and this model is {this}; painting without it"
        raise ValueError(msg)
    vectors = []
    for (encoder, tokenizer), tensor in zip(encoders, tensors):
        tensor = tensor.detach().float().reshape(-1, tensor.shape[-1])
        width = encoder.get_input_embeddings().weight.shape[-1]
        if tensor.shape[-1] != width:
            msg = (
                f"embedding: {path.name} has vectors of width {tensor.shape[-1]} and this model's text encoder "
                f"takes {width} (made for another model family); painting without it"
            )
            raise ValueError(msg)
        vectors.append((encoder, tokenizer, tensor))
    return vectors


# -- VAE ----------------------------------------------------------------------------------------------------------


def _set_vae(pipe: Any, state: _State, request: PaintRequest, notice: Notice, params: dict[str, str]) -> tuple:
    """Put the requested VAE on the pipeline, or the model's own back when none is asked for."""
    path = _vae_path(request.vae, notice) if request.vae else None
    if path is None:
        if state.own_vae is not None and state.vae is not None:
            pipe.vae = state.own_vae
            state.vae = None
        return ()
    stamp = (str(path), *_stamp(path))
    if state.vae != stamp:
        try:
            vae = _load_vae(path, pipe, request.allow_pickle)
        except (ValueError, OSError, RuntimeError) as error:
            text = str(error)
            notice(
                text
                if text.startswith("vae:")
                else f"vae: could not load {path.name} ({_first_line(error)}); painting with the model's own"
            )
            if state.own_vae is not None and state.vae is not None:
                pipe.vae = state.own_vae
                state.vae = None
            return ()
        if state.own_vae is None:
            state.own_vae = pipe.vae
        pipe.vae = vae
        state.vae = stamp
        state.loads += 1
    if path.is_file():
        params["VAE hash"] = _hash_with_notice("vae", path, notice)
    params["VAE"] = path.name
    return stamp


def _vae_path(vae: str, notice: Notice) -> Path | None:
    path = Path(vae).expanduser()
    if path.exists():
        return path.resolve()
    found = library.find_model("vae", vae)
    if found is None:
        notice(library.not_found_message("vae", vae) + "; painting with the model's own")
        return None
    return found.path


def _load_vae(path: Path, pipe: Any, allow_pickle: bool) -> Any:
    """An AutoencoderKL shaped like the model's, with the file's weights (A1111/LDM or diffusers layout)."""
    from diffusers import AutoencoderKL

    own = state_of(pipe).own_vae or pipe.vae
    if path.is_dir():
        vae = AutoencoderKL.from_pretrained(str(path))
    else:
        weights = _read_weights(path, allow_pickle, "vae")
        weights = weights.get("state_dict", weights)
        if any(key.startswith(("encoder.down.", "first_stage_model.", "decoder.up.")) for key in weights):
            from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

            weights = convert_ldm_vae_checkpoint(weights, dict(own.config))
        vae = AutoencoderKL.from_config(own.config)
        try:
            vae.load_state_dict(weights, strict=True)
        except RuntimeError as error:
            msg = (
                f"vae: {path.name} does not fit this model's VAE ({_first_line(error)}); painting with the model's own"
            )
            raise ValueError(msg) from error
    return vae.to(own.device, own.dtype)
