"""Time the bundled tiny model on the CPU: load, then one 64x64 picture at 20 steps (DPM++ 2M Karras).

Usage: ``python benchmarks/bench_tiny_model.py [--threads 2] [--repeats 5]``
Targets: load (``from_pretrained``) <= 1 s, one picture end to end <= 2 s on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

MODEL = Path(__file__).resolve().parents[1] / "jupyter_sd" / "models" / "tiny"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--guidance", type=float, default=7.0)
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    t = time.perf_counter()
    import torch
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    import_s = time.perf_counter() - t
    torch.set_num_threads(args.threads)

    loads = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        pipe = StableDiffusionPipeline.from_pretrained(MODEL, safety_checker=None, local_files_only=True)
        loads.append(time.perf_counter() - t)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, use_karras_sigmas=True)

    def once(seed: int) -> float:
        t = time.perf_counter()
        pipe(
            "a red circle on a blue background",
            num_inference_steps=20,
            guidance_scale=args.guidance,
            height=64,
            width=64,
            generator=torch.Generator().manual_seed(seed),
        )
        return time.perf_counter() - t

    once(0)  # warm-up
    gens = [once(i + 1) for i in range(args.repeats)]
    size = sum(f.stat().st_size for f in MODEL.rglob("*") if f.is_file())
    print(f"threads: {args.threads}, torch {torch.__version__}")
    print(f"model folder size: {size / 1e6:.2f} MB")
    print(f"import torch+diffusers: {import_s:.2f} s")
    print(f"load (from_pretrained): first {loads[0]:.3f} s, median {statistics.median(loads):.3f} s (target <= 1 s)")
    print(
        f"64x64, 20 steps, CFG {args.guidance:g}, batch 1: median {statistics.median(gens):.3f} s, "
        f"min {min(gens):.3f} s (target <= 2 s)"
    )


if __name__ == "__main__":
    main()
