"""Write a diffusers Flux transformer as a GGUF file the way city96 publishes them: BFL names, 2-D weights
quantized (Q8_0, Q4_0 …), 1-D tensors (biases, norm scales) kept as F32; written with the ``gguf`` package."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from helpers.bfl_checkpoint import diffusers_to_bfl, transformer_state


def write_gguf_transformer(folder: str | Path, path: str | Path, quant: str = "Q8_0") -> Path:
    """The transformer of a diffusers Flux `folder` as a GGUF file at `path`, its weights in `quant`."""
    return write_gguf(diffusers_to_bfl(transformer_state(folder)), path, quant)


def write_gguf(state: dict, path: str | Path, quant: str = "Q8_0") -> Path:
    """A state dict in BFL names as a GGUF file: 2-D weights in `quant`, the rest F32."""
    import gguf

    qtype = gguf.GGMLQuantizationType[quant]
    writer = gguf.GGUFWriter(str(path), arch="flux")
    for name, tensor in state.items():
        data = tensor.float().numpy()
        if data.ndim == 2:
            writer.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(name, data.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(path)
