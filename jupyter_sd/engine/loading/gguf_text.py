"""GGUF text encoders (city96's ``t5-v1_1-xxl-encoder-Q8_0.gguf``, Qwen3, Qwen2.5-VL), Linear layers kept quantized.

llama.cpp names the tensors (``enc.blk.0.attn_q.weight``, ``token_embd.weight``, ``blk.0.ffn_up.weight`` …);
transformers' own GGUF name map (`get_gguf_hf_weights_map`) gives each its parameter in the transformers model of
``--model-config``'s slot, built with empty weights. As diffusers does for a GGUF transformer, each Linear becomes
diffusers' ``GGUFLinear`` holding a ``GGUFParameter`` (a view of a copy-on-write map of the file) and dequantizes its
weight while it runs; embeddings, norms and T5's relative attention bias are dequantized once, at load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

ARCHES = {"t5encoder": ("t5", "umt5"), "t5": ("t5", "umt5"), "qwen3": ("qwen3",), "qwen2vl": ("qwen2_5_vl",)}
"""A GGUF file's ``general.architecture`` → the transformers model types it fills."""
_NAMES = {"t5encoder": "T5", "t5": "T5", "qwen3": "Qwen3", "qwen2vl": "Qwen2.5-VL"}
_GGUF_TYPES = {"t5": "t5", "umt5": "t5", "qwen2_5_vl": "qwen2vl"}
"""transformers model type → the name transformers' GGUF map knows it by (others: the same)."""


def architecture(path: str | Path) -> str:
    """The ``general.architecture`` of a GGUF file ('' when it has none), reading the header only.

    Raises
    ------
    ValueError
        When the ``gguf`` package is missing, or the file is not a readable GGUF file (one line each).
    """
    reader = _reader(path)
    field = reader.fields.get("general.architecture")
    return bytes(field.parts[field.data[0]]).decode() if field is not None else ""


def slot_for(path: Path, slots: dict[str, Any]) -> str:
    """The text encoder slot of ``--model-config`` (`parts.encoder_slots`) a GGUF file's architecture fills.

    Raises
    ------
    ValueError
        One line for an architecture that is no text encoder we load, or that the model has no slot for.
    """
    arch = architecture(path)
    if arch not in ARCHES:
        msg = f"text-encoder: '{path.name}' is a {arch or 'nameless'} GGUF file; GGUF text encoders are T5 or Qwen"
        raise ValueError(msg)
    for slot, (_cls, config) in slots.items():
        if getattr(config, "model_type", "") in ARCHES[arch]:
            return slot
    takes = ", ".join(cls.__name__ for cls, _ in slots.values()) or "no text encoder"
    msg = f"text-encoder: '{path.name}' is a {_NAMES[arch]} GGUF file, and this model takes {takes}"
    raise ValueError(msg[:199])


def load_encoder(slot: tuple[Any, Any], path: Path, dtype: Any) -> Any:
    """A transformers text encoder of `slot`'s class and config with the GGUF file's weights, Linear ones quantized.

    Raises
    ------
    ValueError
        One line for a tensor type diffusers cannot dequantize, or a file that lacks some of the model's weights.
    """
    import torch
    from accelerate import init_empty_weights
    from diffusers.quantizers.gguf.utils import GGUFParameter, _replace_with_gguf_linear

    cls, config = slot
    with init_empty_weights():
        model = cls(config)
    reader = _reader(path)
    state = _mapped_tensors(model, reader, path.name, dtype)
    _replace_with_gguf_linear(model, dtype, state)
    for name, tensor in state.items():
        owner, _, leaf = name.rpartition(".")
        module = model.get_submodule(owner)
        if not isinstance(tensor, GGUFParameter):
            tensor = torch.nn.Parameter(tensor, requires_grad=False)
        module._parameters[leaf] = tensor
    model.tie_weights()  # T5's input embedding is its shared table; a tied LM head is Qwen3's embedding
    _drop_vision(model)
    missing = [n for n, p in model.named_parameters() if p.is_meta]
    if missing:
        msg = f"text-encoder: '{path.name}' lacks {len(missing)} of {cls.__name__}'s weights (e.g. {missing[0]})"
        raise ValueError(msg[:199])
    model._jupyter_sd_map = getattr(reader.data, "_mmap", None)  # its pages can be given back (`text_on_cpu`)
    model._jupyter_sd_gguf = f"{_NAMES.get(architecture(path), 'text encoder')} GGUF {_main_type(reader)}"
    return model.eval()


def _mapped_tensors(model: Any, reader: Any, name: str, dtype: Any) -> dict[str, Any]:
    """The file's tensors by the model's parameter names: Linear weights as GGUFParameters, the rest dequantized."""
    import gguf
    import torch
    from diffusers.quantizers.gguf.utils import SUPPORTED_GGUF_QUANT_TYPES, GGUFParameter, dequantize_gguf_tensor
    from transformers.modeling_gguf_pytorch_utils import TensorProcessor, get_gguf_hf_weights_map

    plain = (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16)
    config = model.config
    layers = getattr(config, "num_hidden_layers", None) or config.get_text_config().num_hidden_layers
    names = get_gguf_hf_weights_map(model, TensorProcessor(), _GGUF_TYPES.get(config.model_type), layers)
    linears = {name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    state: dict[str, Any] = {}
    for tensor in reader.tensors:
        target = names.get(tensor.name)
        if target is None:  # a decoder, an LM head the model lacks: not this encoder's
            continue
        kind = tensor.tensor_type
        if kind not in plain and kind not in SUPPORTED_GGUF_QUANT_TYPES:
            msg = (
                f"text-encoder: '{name}' holds {kind.name} tensors, which diffusers' GGUF layers cannot run "
                "(Q8_0, Q6_K, Q5_K, Q4_K, Q4_0 … can)"
            )
            raise ValueError(msg)
        weights = torch.from_numpy(tensor.data)
        if kind in plain:
            state[target] = weights.to(dtype)
            continue
        if target.endswith(".wo.weight"):  # T5 casts wo's input to wo's dtype unless int8: the same bytes as int8
            weights = weights.view(torch.int8)
        packed = GGUFParameter(weights, quant_type=kind)
        keep = target.endswith(".weight") and target.removesuffix(".weight") in linears
        state[target] = packed if keep else dequantize_gguf_tensor(packed).to(dtype)
    return state


def _drop_vision(model: Any) -> None:
    """Drop Qwen2.5-VL's vision tower when the file has none (llama.cpp keeps it in a separate mmproj file).

    Text-to-image prompts never reach it: Qwen-Image encodes text only, as ComfyUI's GGUF text encoders do.
    """
    vision = getattr(getattr(model, "model", None), "visual", None)
    if vision is not None and all(p.is_meta for p in vision.parameters()):
        model.model.visual = None


def _main_type(reader: Any) -> str:
    """The type most of the file's quantized tensors use (``Q8_0``), or ``F16`` for an unquantized file."""
    from collections import Counter

    types = Counter(t.tensor_type.name for t in reader.tensors if t.tensor_type.name not in ("F32", "F16", "BF16"))
    return types.most_common(1)[0][0] if types else "F16"


def _reader(path: str | Path) -> Any:
    """A copy-on-write reader of the file (tensors are views of the map; nothing is copied or written)."""
    try:
        from gguf import GGUFReader
    except ImportError as error:
        msg = "text-encoder: .gguf files need the gguf package (pip install 'jupyter_sd[gguf]', or pip install gguf)"
        raise ValueError(msg) from error
    try:
        return GGUFReader(str(path), mode="c")
    except Exception as error:  # a damaged or foreign file: the reader raises many kinds
        msg = f"text-encoder: '{Path(path).name}' is not a readable GGUF file ({type(error).__name__}: {error})"
        raise ValueError(msg[:199]) from error
