"""The models folder's Forge layout for a transformer file's other parts: ``VAE/`` and ``text_encoder/`` files.

Forge loads ``flux1-dev.safetensors`` with ``ae.safetensors``, ``clip_l.safetensors`` and ``t5xxl_fp16.safetensors``
picked in its "VAE / Text Encoder" list. Here ``--vae ae --text-encoder clip_l,t5xxl_fp16`` does the same (Flux.2's
``flux2-vae.safetensors`` in BFL's names too, `vae_files`): each text encoder file goes to the pipeline's slot it fits
(T5 by its ``encoder.block.`` tensors, a CLIP or a language model such as ComfyUI's ``qwen_3_4b.safetensors`` by its
width), its configs and tokenizers still from ``--model-config``. A ``.gguf`` text encoder goes to the slot its
architecture names (`gguf_text`: T5, Qwen3), its Linear weights kept quantized.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

FOLDER = "text_encoder"
"""Forge's (and ComfyUI's ``text_encoders``) folder of text encoder files, under the models folder."""
_SUFFIXES = (".safetensors", ".gguf")


def find_text_encoder(name: str) -> Path:
    """A text encoder file by path, or by name in the models folder's ``text_encoder/`` (or ``text_encoders/``).

    Raises
    ------
    ValueError
        One line naming the files there.
    """
    from ... import library

    path = Path(name).expanduser()
    if path.is_file():
        return path
    root = library.models_dir()
    files = [f for folder in (FOLDER, FOLDER + "s") for f in sorted((root / folder).glob("**/*")) if f.is_file()]
    for file in files:
        if file.suffix.lower() in _SUFFIXES and name in (file.stem, file.name):
            return file
    there = ", ".join(f.stem for f in files if f.suffix.lower() in _SUFFIXES)[:80] or "none"
    msg = f"text-encoder: no file '{name}' in {root / FOLDER} (there: {there})"
    raise ValueError(msg)


def find_vae(name: str) -> Path:
    """A VAE file by path or by name in the models folder's ``VAE/`` (one line when there is none)."""
    from ... import library

    path = Path(name).expanduser()
    if path.is_file():
        return path
    found = library.find_model("vae", name)
    if found is None:
        raise ValueError(library.not_found_message("vae", name))
    return Path(found.path)


def load_parts(diffusers: Any, config: str, vae: str, encoders: tuple[str, ...], dtype: Any) -> dict[str, Any]:
    """The pipeline components the named files give (``vae``, ``text_encoder``, ``text_encoder_2`` …)."""
    from . import gguf_text
    from .vae_files import load_vae_file

    components: dict[str, Any] = {}
    vae_class = (diffusers.DiffusionPipeline.load_config(config).get("vae") or ["", ""])[-1]
    if vae and vae_class == "AutoencoderKL":  # (another VAE class, Qwen-Image's: `vae_swap` loads it per picture)
        components["vae"] = diffusers.AutoencoderKL.from_single_file(
            str(find_vae(vae)), config=config, subfolder="vae", torch_dtype=dtype
        )
    elif vae and vae_class == "AutoencoderKLFlux2":  # BFL's flux2-vae.safetensors: no single-file loader in diffusers
        components["vae"] = load_vae_file(diffusers, config, find_vae(vae), dtype)
    slots = encoder_slots(diffusers, config)
    for name in encoders:
        path = find_text_encoder(name)
        if path.suffix.lower() == ".gguf":  # city96's T5, Qwen3: Linear weights stay quantized
            slot = gguf_text.slot_for(path, slots)
            components[slot] = gguf_text.load_encoder(slots[slot], path, dtype)
            continue
        slot = _slot_for(path, slots)
        components[slot] = _load_encoder(slots[slot], path, dtype)
    return components


def encoder_slots(diffusers: Any, config: str) -> dict[str, Any]:
    """Text encoder slot → its (transformers class, config), from ``--model-config``."""
    import transformers

    index = diffusers.DiffusionPipeline.load_config(config)
    slots = {}
    for slot, value in index.items():
        if slot.startswith("text_encoder") and isinstance(value, list) and value[0] == "transformers":
            cls = getattr(transformers, value[1])
            slots[slot] = (cls, cls.config_class.from_pretrained(config, subfolder=slot))
    return slots


def _slot_for(path: Path, slots: dict[str, Any]) -> str:
    """The slot a text encoder file fits: T5's for T5 tensors, else the CLIP or language model (Qwen3 …) of its width.

    The width is that of a CLIP's ``token_embedding`` or a language model's ``embed_tokens``.
    """
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        names = list(handle.keys())
        embedding = next((n for n in names if n.endswith(("token_embedding.weight", "embed_tokens.weight"))), "")
        width = handle.get_slice(embedding).get_shape()[1] if embedding else 0
    t5 = any(n.startswith("encoder.block.") for n in names) or "shared.weight" in names
    if not t5 and not width:
        msg = f"text-encoder: '{path.name}' is not a text encoder (it has neither T5 blocks nor a token embedding)"
        raise ValueError(msg)
    clip = embedding.endswith("token_embedding.weight")
    for slot, (cls, config) in slots.items():
        kind = "T5" if "T5" in cls.__name__ else "CLIP" if cls.__name__.startswith("CLIP") else "language model"
        if kind == ("T5" if t5 else "CLIP" if clip else "language model") and (t5 or _width(config) == width):
            return slot
    kind = "T5" if t5 else f"{'CLIP' if clip else 'language model'} of width {width}"
    msg = f"text-encoder: '{path.name}' is a {kind}, and --model-config has no such text encoder ({', '.join(slots)})"
    raise ValueError(msg)


def _width(config: Any) -> int:
    """A text encoder config's hidden size (a multimodal model's: its text model's)."""
    return int(getattr(config.get_text_config(), "hidden_size", 0) or 0)


def _load_encoder(slot: tuple[Any, Any], path: Path, dtype: Any) -> Any:
    """A transformers text encoder of `slot`'s class and config, with the file's weights (no random init)."""
    from accelerate import init_empty_weights
    from safetensors.torch import load_file

    cls, config = slot
    with init_empty_weights():
        model = cls(config)
    wanted = set(model.state_dict())
    state = {}
    for name, tensor in load_file(str(path)).items():
        bare = name.removeprefix("text_model.").removeprefix("model.")  # (ComfyUI's Qwen3 keeps ``model.``)
        for candidate in (name, bare, "text_model." + name, "model." + bare):
            if candidate in wanted:
                state[candidate] = tensor.to(dtype)
                break
    model.load_state_dict(state, strict=False, assign=True)
    model.tie_weights()  # T5's input embedding is its shared table
    head = getattr(model, "lm_head", None)
    if head is not None and head.weight.is_meta:  # a Qwen3 file keeps no LM head: the pipelines read hidden states
        head.weight = model.get_input_embeddings().weight
    missing = [n for n, p in model.named_parameters() if p.is_meta]
    if missing:
        msg = f"text-encoder: '{path.name}' lacks {len(missing)} of {cls.__name__}'s weights (e.g. {missing[0]})"
        raise ValueError(msg)
    return model.eval()
