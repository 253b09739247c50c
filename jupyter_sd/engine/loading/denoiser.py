"""The transformer of a transformer family's file (safetensors or GGUF), loaded into an empty model.

The families: Flux, SD3, Z-Image, Qwen-Image, Chroma, Flux.2 klein and [dev]. Only the transformer's tensors are read (a
whole checkpoint's VAE and text encoders stay on disk), and GGUF tensors stay quantized: diffusers' GGUF layers
dequantize one weight at a time while painting. Flux's and Chroma's BFL names are mapped here (`flux_keys`:
diffusers' converters assume the full width); Flux.2's (klein, dev) go through diffusers' own converter (it reads every
size from the tensors), unprefixed first (it keeps ComfyUI's ``model.diffusion_model.``).
"""

from __future__ import annotations

from typing import Any

from .files import ModelFile, first_line

TRANSFORMERS = {
    "Flux": "FluxTransformer2DModel",
    "SD3": "SD3Transformer2DModel",
    "Z-Image": "ZImageTransformer2DModel",
    "Qwen-Image": "QwenImageTransformer2DModel",
    "Chroma": "ChromaTransformer2DModel",
    "Flux.2 klein": "Flux2Transformer2DModel",
    "Flux.2 [dev]": "Flux2Transformer2DModel",
}
"""The transformer class of each family, when ``--model-config`` does not name one."""


def transformer_class(diffusers: Any, info: ModelFile, config: str, local: bool) -> Any:
    """The transformer class ``--model-config``'s model_index.json names, else the family's."""
    try:
        name = (diffusers.DiffusionPipeline.load_config(config, local_files_only=local).get("transformer") or [""])[-1]
    except Exception:  # unreadable: the family's class, and from_single_file says what is wrong
        name = None
    return getattr(diffusers, name or TRANSFORMERS.get(info.family.name, ""), None)


def read_tensors(info: ModelFile) -> dict[str, Any]:
    """The denoiser's tensors of the file (GGUF ones as diffusers' quantized parameters), nothing else."""
    from .files import TEXT_PREFIXES, VAE_PREFIXES

    if info.format == "gguf":
        return read_gguf(info.path)
    from safetensors import safe_open

    with safe_open(info.path, framework="pt") as handle:
        names = [n for n in handle.keys() if not n.startswith(VAE_PREFIXES + TEXT_PREFIXES)]
        return {name: handle.get_tensor(name) for name in names}


def read_gguf(path: str) -> dict[str, Any]:
    """A GGUF file's tensors as diffusers' quantized parameters, mapped from the file, not copied.

    diffusers' ``load_gguf_checkpoint`` copies every tensor out of the memory map: twice the file in host RAM while
    loading. Here each tensor is a view of a copy-on-write map (the page cache holds the file once; nothing writes).
    """
    import gguf
    import torch
    from diffusers.quantizers.gguf.utils import SUPPORTED_GGUF_QUANT_TYPES, GGUFParameter

    plain = (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16)
    tensors: dict[str, Any] = {}
    for tensor in gguf.GGUFReader(path, mode="c").tensors:
        if tensor.tensor_type not in plain and tensor.tensor_type not in SUPPORTED_GGUF_QUANT_TYPES:
            msg = f"model: '{tensor.name}' is in {tensor.tensor_type.name}, which diffusers' GGUF layers cannot run"
            raise ValueError(msg)
        weights = torch.from_numpy(tensor.data)
        tensors[tensor.name] = (
            weights if tensor.tensor_type in plain else GGUFParameter(weights, quant_type=tensor.tensor_type)
        )
    return tensors


def load_denoiser(diffusers: Any, info: ModelFile, config: str, dtype: Any, local: bool = False) -> Any:
    """The file's transformer, in `dtype` (GGUF: quantized, computing in `dtype`), configured from `config`.

    Raises
    ------
    ValueError
        One line when the file's tensors do not fit the configured transformer.
    """
    cls = transformer_class(diffusers, info, config, local)
    if cls is None:
        msg = f"model: --model-config '{config}' names no transformer diffusers knows"
        raise ValueError(msg)
    kwargs: dict[str, Any] = {"config": config, "subfolder": "transformer", "torch_dtype": dtype}
    if local:
        kwargs["local_files_only"] = True
    if info.format == "gguf":
        kwargs["quantization_config"] = diffusers.GGUFQuantizationConfig(compute_dtype=dtype)
    try:
        return cls.from_single_file(_tensors(info), **kwargs)
    except Exception as error:  # shape mismatches, unknown names, a damaged file …
        msg = f"model: the transformer in '{info.path}' does not fit --model-config '{config}' ({first_line(error)})"
        raise ValueError(msg[:199]) from error


def _tensors(info: ModelFile) -> Any:
    """What diffusers' ``from_single_file`` is handed: the file's path, or its tensors (renamed where we map them)."""
    from .flux_keys import flux_to_diffusers, strip_prefix

    name = info.family.name
    flux2 = TRANSFORMERS.get(name) == "Flux2Transformer2DModel"
    if name not in ("Flux", "Chroma", "Qwen-Image") and not flux2 and info.format != "gguf":
        return info.path
    tensors = read_tensors(info)
    if name in ("Flux", "Chroma"):
        return flux_to_diffusers(tensors)
    if name == "Qwen-Image" or flux2:  # Qwen-Image: diffusers' names; Flux.2: its converter keeps a prefix
        return strip_prefix(tensors)
    return tensors
