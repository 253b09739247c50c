"""``--offload auto`` for big models: where each part lives, from the free VRAM, the host RAM and the parts' sizes.

A pure function of numbers (`plan_memory`), so the choice can be read and tested without a GPU: everything on the
GPU when it fits with room to work; else, when host RAM cannot hold every part but the denoiser and VAE fit the GPU,
those stay on the GPU and the text encoders encode on the CPU (`text_on_cpu`: a GGUF T5 then frees its pages); else
the denoiser and the text encoders take the GPU one at a time (model offload: T5 encodes on the GPU, then goes back
to the CPU before the transformer paints); else layer by layer. The
VAE decodes in tiles when the GPU has no room for a whole native-size decode, and the line says when the host RAM
cannot hold every part at once (what to use instead).
"""

from __future__ import annotations

from dataclasses import dataclass

DENOISERS = ("transformer", "unet")
SLOTS = ("text_encoder", "text_encoder_2", "text_encoder_3")
MARGIN_GB = 0.5


@dataclass(frozen=True)
class MemoryChoice:
    """What `plan_memory` decided, and the words for the load line."""

    offload: str
    """``none`` (all on the GPU), ``text-cpu`` (text encoders on the CPU, the rest on the GPU), ``model`` (one part
    at a time), ``sequential`` (layer by layer)."""
    vae_tiled: bool
    """Decode in tiles whatever the picture's size (``--vae-tiling auto``)."""
    words: str


def plan_memory(
    sizes: dict[str, float],
    free_vram: float | None,
    free_ram: float | None,
    activations: float,
    gpu: str = "GPU",
    encoders: tuple[str, ...] = (),
    mapped: bool = False,
) -> MemoryChoice:
    """Choose placement and tiling for parts of `sizes` GB on a GPU with `free_vram` GB free (None: no CUDA).

    `activations` is the family's working memory at native size (`Family.activations_gb`); `free_ram` the host's
    available memory (None: unknown); `gpu` how the line names the card (``15 GB T4``); `encoders` the family's
    text encoders in slot order (``clip_l``, ``t5``: `Family.text_encoders`), for the words; `mapped` whether the
    text encoders are memory-mapped GGUF files, whose pages can be freed after encoding.
    """
    if free_vram is None:
        return MemoryChoice("none", False, "")
    weights = sum(sizes.values())
    largest = max(sizes.values(), default=0.0)
    denoiser = next((n for n in DENOISERS if n in sizes), "")
    kinds = dict(zip(SLOTS, encoders, strict=False))
    found = [kinds.get(n, "clip").split("_")[0].upper() for n in SLOTS if n in sizes]
    named = " and ".join(dict.fromkeys(found)) or "text encoders"
    vae_tiled = sizes.get("vae", 0.0) + activations > free_vram  # offloaded or not, the VAE decodes alone
    text = sum(size for name, size in sizes.items() if name in SLOTS)
    ram_short = free_ram is not None and weights > free_ram
    if weights + activations <= free_vram:
        offload, what = "none", "all on the GPU"
    elif ram_short and text and weights - text + activations <= free_vram and (mapped or text <= free_ram):
        then = " then free" if mapped else ""
        offload, what = "text-cpu", f"{denoiser} and VAE on GPU, {named} encode on CPU{then}"
    elif largest + activations <= free_vram:
        offload, what = "model", f"{denoiser} on GPU while painting, {named} encode on GPU then return to CPU"
    elif largest + MARGIN_GB <= free_vram:
        offload, what = "model", f"{denoiser} on GPU (little room to work), {named} one at a time"
    else:
        biggest = max(sizes, key=sizes.__getitem__)
        offload, what = "sequential", f"layer by layer: the {biggest} ({largest:.1f} GB) does not fit"
    parts = [f"on a {gpu}: {what}", "VAE tiled" if vae_tiled else ""]
    if offload not in ("none", "text-cpu") and ram_short:
        parts.append(f"host RAM short ({weights:.1f} GB of weights, {free_ram:.1f} GB free): use GGUF/fp8 files")
    return MemoryChoice(offload, vae_tiled, ", ".join(p for p in parts if p))


def gpu_name(device: str) -> str:
    """``15 GB T4``: the card's memory and short name, for the load line (``GPU`` when unknown)."""
    try:
        import torch

        props = torch.cuda.get_device_properties(device)
    except Exception:  # no CUDA, or a device torch cannot describe
        return "GPU"
    name = props.name.replace("NVIDIA ", "").replace("Tesla ", "").split()[0]
    return f"{props.total_memory / 2**30:.0f} GB {name}"


def free_ram_gb() -> float | None:
    """The host's available memory in GB (psutil comes with ipykernel; None without it)."""
    try:
        import psutil
    except ImportError:  # pragma: no cover
        return None
    return psutil.virtual_memory().available / 2**30
