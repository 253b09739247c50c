"""Text encoders that stay in host RAM and encode on the CPU while the denoiser and VAE live on the GPU.

The ``--offload auto`` plan's answer for a small GPU with little host RAM (a free Colab: a 15 GB T4, 12.7 GB of
RAM): model offload would keep every part in host RAM between turns, more than it holds; here only the text
encoders stay there. Each gets accelerate's device hook (inputs to the CPU, outputs back where they came from),
which is how diffusers' own pipelines find where a module computes (``get_module_execution_device``). After each
encode, a GGUF encoder's file pages are given back to the OS (`release_pages`): the next prompt reads them again
from the page cache or the disk, and host RAM holds the transformer's working memory meanwhile.
"""

from __future__ import annotations

from typing import Any

SLOTS = ("text_encoder", "text_encoder_2", "text_encoder_3")


def place_split(pipe: Any, device: str) -> list[str]:
    """The pipeline's denoiser, VAE and other modules on `device`; its text encoders kept on the CPU, encoding there.

    Returns the slots left on the CPU.
    """
    import torch

    kept = []
    for name, part in pipe.components.items():
        if not isinstance(part, torch.nn.Module):
            continue
        if name in SLOTS:
            encode_on_cpu(part.to("cpu"))
            kept.append(name)
        else:
            part.to(device)
    return kept


def encode_on_cpu(model: Any) -> Any:
    """Make `model` compute on the CPU for callers on any device, releasing its mapped pages after each call."""
    from accelerate.hooks import AlignDevicesHook, add_hook_to_module

    class _EncodeThenFree(AlignDevicesHook):
        def post_forward(self, module: Any, output: Any) -> Any:
            output = super().post_forward(module, output)
            release_pages(module)
            return output

    add_hook_to_module(model, _EncodeThenFree(execution_device="cpu", io_same_device=True))
    return model


def release_pages(model: Any) -> bool:
    """Give a memory-mapped (GGUF) encoder's file pages back to the OS; False when it holds no map.

    The map is private and never written, so the pages are re-read from the file on the next use.
    """
    import mmap

    pages = getattr(model, "_jupyter_sd_map", None)
    if pages is None or not hasattr(mmap, "MADV_DONTNEED"):
        return False
    pages.madvise(mmap.MADV_DONTNEED)
    model._jupyter_sd_released = getattr(model, "_jupyter_sd_released", 0) + 1
    return True
