"""Flux and SD3 through %%paint's path (latent→RGB previews every step) against raw diffusers, same folder and seed.

For each family: wall-time ratio ours ÷ raw (runs interleaved A B A B; min and median) and the largest pixel
difference in 1/255 (0–1 expected: the same pipeline call under the hood).

    python benchmarks/bench_families.py [--runs 5] [--steps 8] [--size 128] [--threads 1] [--shape tiny|full]

`--shape full` (the default): Flux- and SD3-shaped transformers at reduced width — Flux.1's 19 double and 38 single
blocks, SD3.5 Medium's 24 MMDiT blocks with its 2×2 patches, 4 heads of 32 (128 wide) — in the tests' tiny
pipelines (tests/helpers/tiny_flow.py: tiny text encoders and VAE, random weights). `--shape tiny`: those tiny
pipelines as they are (one or two blocks), so the ratio shows our overhead per step at its largest relative to the
model's work.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from helpers.tiny_flow import make_tiny_flux, make_tiny_sd3  # noqa: E402

from jupyter_sd.engine import Engine  # noqa: E402
from jupyter_sd.recipe.request import PaintRequest  # noqa: E402

PROMPT = "a red circle on a blue background"


def bench(name: str, folder: Path, cls: type, runs: int, steps: int, size: int) -> dict:
    engine = Engine()
    request = PaintRequest(prompt=PROMPT, model=str(folder), width=size, height=size, steps=steps, seed=3, rng="cpu",
                           preview="latent2rgb", preview_interval=0)  # fmt: skip
    engine.generate(request.replace(steps=1))  # load once
    raw = cls.from_pretrained(folder)
    raw.set_progress_bar_config(disable=True)
    extra = {"guidance_scale": 3.5} if name == "Flux" else {"guidance_scale": 7.0}

    def ours():
        return engine.generate(request).images[0]

    def theirs():
        generator = torch.Generator("cpu").manual_seed(3)
        return raw(PROMPT, width=size, height=size, num_inference_steps=steps, generator=generator, **extra).images[0]

    times: dict[str, list[float]] = {"ours": [], "raw": []}
    images = {}
    for _ in range(runs):
        for label, paint in (("ours", ours), ("raw", theirs)):
            started = time.perf_counter()
            images[label] = paint()
            times[label].append(time.perf_counter() - started)
    ratios = [a / b for a, b in zip(times["ours"], times["raw"])]
    diff = np.abs(np.asarray(images["ours"], np.int16) - np.asarray(images["raw"], np.int16)).max()
    return {
        "family": name,
        "raw_s_median": round(statistics.median(times["raw"]), 3),
        "ratio_min": round(min(ratios), 3),
        "ratio_median": round(statistics.median(ratios), 3),
        "max_pixel_diff": int(diff),
    }


def full_shaped(folder: Path, family: str) -> Path:
    """Replace the tiny pipeline's transformer in `folder` by one of the real model's depth at reduced width."""
    from diffusers import FluxTransformer2DModel, SD3Transformer2DModel
    from helpers.tiny_flow import T5_WIDTH

    torch.manual_seed(0)
    if family == "Flux":
        transformer = FluxTransformer2DModel(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38,
                                             attention_head_dim=32, num_attention_heads=4, pooled_projection_dim=32,
                                             joint_attention_dim=T5_WIDTH, guidance_embeds=True,
                                             axes_dims_rope=(8, 12, 12))  # fmt: skip
    else:
        transformer = SD3Transformer2DModel(sample_size=32, patch_size=2, in_channels=16, num_layers=24,
                                            attention_head_dim=32, num_attention_heads=4, joint_attention_dim=64,
                                            caption_projection_dim=128, pooled_projection_dim=64, out_channels=16,
                                            pos_embed_max_size=96)  # fmt: skip
    transformer.save_pretrained(folder / "transformer")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--shape", choices=("full", "tiny"), default="full")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)  # steadier timings on a shared machine
    from diffusers import FluxPipeline, StableDiffusion3Pipeline

    with tempfile.TemporaryDirectory() as tmp:
        shaped = full_shaped if args.shape == "full" else (lambda folder, family: folder)
        flux = shaped(make_tiny_flux(Path(tmp) / "flux"), "Flux")
        sd3 = shaped(make_tiny_sd3(Path(tmp) / "sd3"), "SD3")
        rows = [
            bench("Flux", flux, FluxPipeline, args.runs, args.steps, args.size),
            bench("SD3", sd3, StableDiffusion3Pipeline, args.runs, args.steps, args.size),
        ]
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
