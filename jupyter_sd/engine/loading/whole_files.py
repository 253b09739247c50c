"""The text encoder (and Qwen-Image's and Flux.2's VAE) of a whole ComfyUI checkpoint, which diffusers cannot read.

ComfyUI's Checkpoint Save (and the "AIO" merges made with it) writes the transformer under ``model.diffusion_model.``,
the VAE under ``vae.`` and the text encoder under ``text_encoders.<name>.transformer.`` (``qwen3_4b``,
``qwen25_7b``) in transformers' checkpoint names (``model.layers.N…``; Qwen2.5-VL's vision tower as ``visual.…``).
diffusers' single-file loader reads a Z-Image file's VAE (Flux's, in LDM names) but converts only CLIP and T5 text
encoders, so a Qwen3 or Qwen2.5-VL is built empty here from ``--model-config``'s config and given the file's tensors.

Qwen-Image's VAE is Wan 2.1's, which ComfyUI keeps under ``vae.`` in the Wan reference names (``encoder.downsamples.N``,
``middle``, ``head``, ``conv1``/``conv2``). diffusers has no single-file mapping for ``AutoencoderKLQwenImage``, but
its Wan VAE converter (`convert_wan_vae_to_diffusers`) gives exactly that class's names for the shipped layout
(four levels of two residual blocks): the VAE is built empty from ``--model-config``'s config and given the file's
tensors, renamed, not copied; any other layout is one line. Flux.2 klein's VAE (``AutoencoderKLFlux2``) has no
single-file mapping in diffusers either: its LDM names are renamed the same way (`vae_files`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .files import ModelFile

PREFIX = "text_encoders."


def groups(names: list[str]) -> dict[str, list[str]]:
    """The file's text encoders: ComfyUI's name (``qwen3_4b``) → its tensor names."""
    found: dict[str, list[str]] = {}
    for name in names:
        if name.startswith(PREFIX) and ".transformer." in name:
            found.setdefault(name[len(PREFIX) :].split(".", 1)[0], []).append(name)
    return found


def text_encoders(diffusers: Any, info: ModelFile, config: str, dtype: Any) -> dict[str, Any]:
    """The file's text encoder for ``--model-config``'s one language-model slot (``{}`` for CLIP/T5 pipelines).

    Raises
    ------
    ValueError
        One line when the file's tensors do not fit the configured text encoder.
    """
    from safetensors import safe_open

    from .parts import encoder_slots

    slots = {slot: value for slot, value in encoder_slots(diffusers, config).items() if _language_model(value[0])}
    if len(slots) != 1 or "text" not in info.parts or info.format != "safetensors":
        return {}
    with safe_open(info.path, framework="pt") as handle:
        found = groups(list(handle.keys()))
        if len(found) != 1:
            return {}
        (name, names), (slot, (cls, model_config)) = next(iter(found.items())), next(iter(slots.items()))
        start = f"{PREFIX}{name}.transformer."
        tensors = {n[len(start) :]: handle.get_tensor(n) for n in names if n.startswith(start)}
    return {slot: build(cls, model_config, tensors, dtype, f"the {name} text encoder in '{Path(info.path).name}'")}


def _language_model(cls: Any) -> bool:
    """A text encoder diffusers' single-file loader cannot convert (not CLIP, not T5)."""
    return not cls.__name__.startswith(("CLIP", "T5", "UMT5"))


def build(cls: Any, config: Any, tensors: dict[str, Any], dtype: Any, what: str) -> Any:
    """A transformers model of `cls` with `tensors` in its checkpoint names, nothing initialised at random.

    ``model.layers.0…`` fits a bare ``Qwen3Model`` as ``layers.0…`` and Qwen2.5-VL's current layout as
    ``model.language_model.layers.0…``; ``visual.…`` fits it as ``model.visual.…``.
    """
    from accelerate import init_empty_weights

    with init_empty_weights():
        model = cls(config)
    wanted = set(model.state_dict())
    state = {}
    for name, tensor in tensors.items():
        bare = name.removeprefix("model.")
        for candidate in (name, bare, "model.language_model." + bare, "model." + name):
            if candidate in wanted:
                state[candidate] = tensor.to(dtype)
                break
    model.load_state_dict(state, strict=False, assign=True)
    model.tie_weights()
    head = getattr(model, "lm_head", None)
    if head is not None and head.weight.is_meta:  # ComfyUI keeps no LM head; the pipelines read hidden states only
        head.weight = model.get_input_embeddings().weight
    missing = [n for n, p in model.named_parameters() if p.is_meta]
    if missing:
        msg = f"model: {what} lacks {len(missing)} of {cls.__name__}'s weights (e.g. {missing[0]})"
        raise ValueError(msg[:199])
    return model.eval()


def file_vae(diffusers: Any, info: ModelFile, config: str, dtype: Any) -> dict[str, Any]:
    """The file's VAE as ``--model-config``'s VAE class, where diffusers cannot read it (``{}`` for the others).

    Qwen-Image's (Wan 2.1's names) and Flux.2's (BFL's LDM names, ComfyUI's quant convolutions at the top, the
    latent batch-norm statistics), renamed by `vae_files`, built empty from ``--model-config``'s config.

    Raises
    ------
    ValueError
        One line when the file's VAE tensors do not map onto the configured VAE.
    """
    from safetensors import safe_open

    from .vae_files import CONVERTERS, load_vae

    name = (diffusers.DiffusionPipeline.load_config(config).get("vae") or ["", ""])[-1]
    if name not in CONVERTERS or "vae" not in info.parts or info.format != "safetensors":
        return {}
    cls = getattr(diffusers, name)
    with safe_open(info.path, framework="pt") as handle:
        tensors = {n: handle.get_tensor(n) for n in handle.keys() if n.startswith("vae.")}
    what = f"model: the VAE in '{Path(info.path).name}' does not fit --model-config's"
    return {"vae": load_vae(cls, cls.load_config(config, subfolder="vae"), tensors, dtype, what)}
