"""Token merging (``--tome``) against raw diffusers at a size where attention matters, in one process.

An SD-1.5-shaped UNet at reduced width (random weights) paints 512×512 (64×64 latents: 4096 tokens in the
high-res attention blocks, which ToMe merges). Raw ``pipe(...)`` on the engine's own pipeline, then the %%paint path
without and with ``--tome 0.5``, alternating (A B C A B C …); min and median seconds and the ratios of medians.

    python benchmarks/bench_tome.py [--runs 3] [--steps 4] [--width 64]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sd_shapes import make_sd15_shaped, plain_call  # noqa: E402

from jupyter_sd.engine import token_merging
from jupyter_sd.painting.session import get_engine, render
from jupyter_sd.recipe.request import PaintRequest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--width", type=int, default=64, help="UNet width (SD 1.5 is 320)")
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = make_sd15_shaped(Path(tmp) / "sd15", width=args.width, text_width=256, text_layers=2)
        base = PaintRequest(
            prompt="a red circle on a blue background",
            model=str(model),
            steps=args.steps,
            seed=7,
            width=args.size,
            height=args.size,
            sampler="Euler",
            preview="none",
            save=False,
        )
        engine = get_engine()
        pipe = engine.pipeline(base)
        render(base)  # warm-up: loads, builds the scheduler config, first-call costs
        config = dict(pipe._jupyter_sd_base_scheduler_config)
        cases = {
            "raw diffusers": lambda: plain_call(pipe, base, config),
            "%%paint": lambda: render(base),
            "%%paint --tome 0.5": lambda: render(base.replace(token_merging=0.5)),
        }
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.runs):
            for name, run in cases.items():
                token_merging.set_ratio(pipe, 0.0)  # raw diffusers must not inherit the last run's patch
                started = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - started)
        render(base)  # leave the UNet unpatched
    raw = statistics.median(times["raw diffusers"])
    print(f"SD-1.5-shaped UNet (width {args.width}), {args.size}x{args.size}, {args.steps} steps, {args.runs} runs")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<22} min {min(values):6.2f} s   median {median:6.2f} s   speed vs raw {raw / median:.2f}×")


if __name__ == "__main__":
    main()
