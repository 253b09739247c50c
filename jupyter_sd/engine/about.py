"""What the engine holds, in words and numbers: model, family, size, device, dtype, memory (``%paint info``)."""

from __future__ import annotations

from typing import Any

from . import memory
from .models import native_size


def describe(engine: Any) -> dict[str, Any]:
    """Describe what `engine` has loaded (an empty description before the first picture)."""
    info: dict[str, Any] = {"loaded": engine._pipe is not None, "busy": engine.busy, "loads": engine.load_count}
    if engine._pipe is not None and engine._key is not None:
        import torch

        info.update(
            model=engine._source.location if engine._source else "",
            pipeline=type(engine._pipe).__name__,
            family=engine._family.name if engine._family else "",
            native_size=f"{native_size(engine._pipe)}x{native_size(engine._pipe)}",
            offload=engine._memory.offload if engine._memory else "none",
            fast=engine._memory.fast.describe() if engine._memory and engine._memory.fast else "off",
            refiner=engine._refiner.source.location if engine._refiner is not None else "",
            device=str(engine._key[1]),
            dtype=str(engine._key[2]).replace("torch.", ""),
            load_seconds=round(engine.load_seconds, 2),
        )
        params = sum(
            p.numel()
            for name in ("unet", "transformer", "vae", "text_encoder", "text_encoder_2", "text_encoder_3")
            for p in getattr(getattr(engine._pipe, name, None), "parameters", lambda: [])()
        )
        info["parameters_millions"] = round(params / 1e6, 1)
        if str(engine._key[1]).startswith("cuda"):
            info["gpu_allocated_gb"] = round(torch.cuda.memory_allocated() / 2**30, 2)
            info["gpu_peak_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    info["process_memory_gb"] = memory.process_memory_gb()
    return info
