"""``depth_marigold``: Marigold's depth through diffusers' ``MarigoldDepthPipeline``, as sd-webui-controlnet runs it.

sd-webui-controlnet's Marigold (its ``sd-webui-controlnet-marigold`` preprocessor, v1.1.444, and Forge's first one)
runs Marigold v1.0 (``Bingxin/Marigold``, on the hub now as ``prs-eth/marigold-depth-v1-0``) in full precision on
the picture scaled and edge-padded to the processor resolution (768 by default, 128–2048), as it is: no resize
inside, one prediction (no ensemble), the checkpoint's DDIM schedule with Threshold A (Steps, 1–50, 20) steps. The
depth decoded (the mean of the VAE's three channels, −1..1) becomes ``0.5 − 0.5·depth``: inverted, so near is
white; clipped to 0..1, ×255 truncated to 8 bits, the padding cropped off, repeated into three channels.

The extension draws its starting noise from torch's global generator (another map on every run); here it comes from
a CPU generator seeded with the picture's seed (shuffle's), so a recipe repaints the same map on any device.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def load_marigold(folder: Path) -> Any:
    """The ``MarigoldDepthPipeline`` saved in `folder` (a diffusers pipeline folder), its progress bars off.

    Raises
    ------
    ValueError
        One line when `folder` does not hold a Marigold depth pipeline.
    """
    from ..quiet import quiet, silence_progress_bars

    with quiet():
        from diffusers import MarigoldDepthPipeline

        silence_progress_bars()
        try:
            pipe = MarigoldDepthPipeline.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            first = str(error).strip().splitlines()[0][:100] if str(error).strip() else type(error).__name__
            raise ValueError(f"controlnet: {folder} is not a Marigold depth pipeline ({first})") from None
    pipe.set_progress_bar_config(disable=True)
    return pipe


def marigold_map(pipe: Any, padded: np.ndarray, steps: float, seed: int) -> np.ndarray:
    """Marigold's grey depth map (H×W uint8, near white) of `padded`, the picture at the processor resolution.

    One prediction at the picture's own size (``processing_resolution=0``), `steps` DDIM steps, the noise from a
    CPU generator seeded with `seed`.
    """
    import torch

    generator = torch.Generator().manual_seed(int(seed) & 0xFFFFFFFF)
    with torch.no_grad():
        depth = pipe(
            padded,
            num_inference_steps=int(steps),
            ensemble_size=1,
            processing_resolution=0,
            match_input_resolution=False,
            generator=generator,
            output_type="pt",
        ).prediction  # 1×1×H×W: (clip(depth, −1, 1) + 1) / 2, far is 1
    return ((1.0 - depth[0, 0].float().cpu().numpy()) * 255.0).clip(0, 255).astype(np.uint8)
