"""Stable Diffusion 2.x: SD 1's pipelines and latents with an OpenCLIP ViT-H text encoder (width 1024), 768 px."""

from __future__ import annotations

from dataclasses import replace

from .sd1 import FAMILY as SD1

FAMILY = replace(
    SD1,
    name="SD2",
    title="Stable Diffusion 2.x",
    checkpoint_keys=("cond_stage_model.model.",),
    text_width=1024,
    native_size=768,
    activations_gb=2.0,
)
