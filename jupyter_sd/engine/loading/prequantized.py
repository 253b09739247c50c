"""Pre-quantized diffusers folders and hub repositories: a component config carrying ``quantization_config``.

Such models (bitsandbytes NF4 Flux repositories, torchao and quanto exports …) load through diffusers' and
transformers' own ``from_pretrained``, which read the config and build the quantized layers. What is checked here,
from the configs alone and before any weight loads, is whether this machine can run them: bitsandbytes, Nunchaku and
ModelOpt need a CUDA GPU, and each method its package; a refusal is one line naming what works here.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

COMPONENTS = ("transformer", "unet", "text_encoder", "text_encoder_2", "text_encoder_3")
NEEDS = {
    "bitsandbytes": ("bitsandbytes", "bitsandbytes", True),
    "torchao": ("torchao", "torchao", False),
    "quanto": ("optimum.quanto", "optimum-quanto", False),
    "sdnq": ("sdnq", "sdnq", False),
    "nunchaku": ("nunchaku", "nunchaku", True),
    "modelopt": ("modelopt", "nvidia-modelopt", True),
}
"""quant_method → (the module it imports, the package to install, whether it needs a CUDA GPU)."""


def stored(config_of: Callable[[str], dict[str, Any] | None]) -> dict[str, str]:
    """Component → how its weights are stored (``bitsandbytes 4-bit nf4``, ``torchao int8wo`` …), for those quantized.

    `config_of` reads a component's saved ``config.json`` (None when there is none to read offline).
    """
    found = {}
    for name in COMPONENTS:
        quantization = (config_of(name) or {}).get("quantization_config")
        if isinstance(quantization, dict) and quantization.get("quant_method"):
            found[name] = _label(quantization)
    return found


def _label(quantization: dict[str, Any]) -> str:
    """The words for one config: ``bitsandbytes 4-bit nf4``, ``bitsandbytes 8-bit``, ``torchao int8wo`` …."""
    method = str(quantization["quant_method"])
    if method == "bitsandbytes":
        bits = "4-bit" if quantization.get("load_in_4bit") else "8-bit"
        kind = quantization.get("bnb_4bit_quant_type", "") if bits == "4-bit" else ""
        return " ".join(filter(None, [method, bits, kind]))
    detail = quantization.get("quant_type") or quantization.get("weights_dtype") or quantization.get("weights") or ""
    return f"{method} {detail}".strip() if isinstance(detail, str) else method


def check(found: dict[str, str], device: str, quant: str, name: str) -> None:
    """Refuse, before loading, a pre-quantized model this machine cannot run, or a ``--quant`` on top of one.

    Raises
    ------
    ValueError
        One line naming the component, its quantization, what it needs and what works here instead.
    """
    if not found:
        return
    part, label = next(iter(found.items()))
    if quant != "none":
        msg = (
            f"quant: '{name}' is stored quantized already ({label}); --quant applies to unquantized weights (use none)"
        )
        raise ValueError(msg)
    module, package, cuda = NEEDS.get(label.split()[0], ("", "", False))
    if cuda and not device.startswith("cuda"):
        missing = f"a CUDA GPU (this runs on {device})"
    elif module and importlib.util.find_spec(module.split(".")[0]) is None:
        missing = f"pip install {package}"
    else:
        return
    msg = (
        f"model: '{name}' has its {part} stored {label}, which needs {missing}; "
        "here use a GGUF file or --quant fp8 on an unquantized model"
    )
    raise ValueError(msg)


def describe(found: dict[str, str]) -> str:
    """The load line's words: ``bitsandbytes 4-bit nf4`` (the denoiser's), or ``T5 …`` ('' when nothing is)."""
    denoiser = found.get("transformer") or found.get("unet")
    return denoiser or ", ".join(f"{part} {label}" for part, label in found.items())
