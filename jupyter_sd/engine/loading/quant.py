"""``--quant``: smaller weights for an unquantized model: fp8 storage here, NF4/int8 through bitsandbytes on CUDA.

fp8 keeps the denoiser's weights in ``float8_e4m3fn`` and casts each layer up to the compute dtype while it runs
(diffusers' layerwise casting): half the memory of bf16, on any device. NF4 and int8 need bitsandbytes' CUDA
kernels: elsewhere they are refused before anything loads, naming what works (``--quant fp8``, a GGUF file).
"""

from __future__ import annotations

from typing import Any

_BNB = {"nf4": "bitsandbytes_4bit", "int8": "bitsandbytes_8bit"}


def check(quant: str, device: str, single_file: bool = False) -> None:
    """Refuse, before loading, a quantization this machine (or this kind of model source) cannot run.

    Raises
    ------
    ValueError
        One line for nf4/int8 without CUDA or without the bitsandbytes package, or with a single file.
    """
    if quant not in _BNB:
        return
    if single_file:
        msg = f"quant: --quant {quant} loads diffusers folders and hub ids; for a single file use --quant fp8 or GGUF"
        raise ValueError(msg)
    import importlib.util

    if not device.startswith("cuda"):
        missing = f"a CUDA GPU (this runs on {device})"
    elif importlib.util.find_spec("bitsandbytes") is None:
        missing = "the bitsandbytes package (pip install bitsandbytes)"
    else:
        return
    msg = f"quant: --quant {quant} needs {missing}; here use --quant fp8 or a GGUF file (Q8_0, Q4_K …)"
    raise ValueError(msg)


def load_kwargs(quant: str, dtype: Any) -> dict[str, Any]:
    """``from_pretrained`` arguments that quantize the denoiser while loading (NF4/int8), else none."""
    if quant not in _BNB:
        return {}
    from diffusers import PipelineQuantizationConfig

    extra = {"bnb_4bit_quant_type": "nf4", "bnb_4bit_compute_dtype": dtype} if quant == "nf4" else {}
    config = PipelineQuantizationConfig(
        quant_backend=_BNB[quant],
        quant_kwargs={"load_in_4bit": True, **extra} if quant == "nf4" else {"load_in_8bit": True},
        components_to_quantize=["transformer", "unet"],
    )
    return {"quantization_config": config}


def denoiser(pipe: Any) -> Any:
    """The pipeline's UNet or transformer."""
    return getattr(pipe, "transformer", None) or getattr(pipe, "unet", None)


def already_quantized(model: Any) -> str:
    """The quantization a loaded model already has (``gguf``, ``bitsandbytes`` …), or ''."""
    quantizer = getattr(model, "hf_quantizer", None)
    method = getattr(getattr(quantizer, "quantization_config", None), "quant_method", "")
    return str(getattr(method, "value", method) or "")


def apply(pipe: Any, quant: str, dtype: Any) -> None:
    """Apply ``--quant fp8`` to a loaded pipeline's denoiser (NF4/int8 were applied while loading).

    Raises
    ------
    ValueError
        For fp8 on a model that is quantized already (a GGUF file).
    """
    if quant != "fp8":
        return
    import torch

    model = denoiser(pipe)
    done = already_quantized(model)
    if done:
        msg = f"quant: this model is {done}-quantized already; --quant fp8 applies to unquantized weights (use none)"
        raise ValueError(msg)
    model.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=dtype)
    pipe._jupyter_sd_quant = "fp8"


def describe(pipe: Any) -> str:
    """How the denoiser is stored, for the load line: ``GGUF Q4_K``, ``fp8``, ``NF4`` … ('' when plain)."""
    return getattr(pipe, "_jupyter_sd_quant", "")
