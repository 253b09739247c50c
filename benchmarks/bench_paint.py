"""The %%paint path (engine + live previews + saving) against raw diffusers, in one process, same seeds.

Prints wall-time ratios (median of alternating runs), pixel equality and time to first preview, for the tiny test
pipeline and an SD-1.5-shaped UNet at reduced width (random weights) at 256×256.

    python benchmarks/bench_paint.py [--runs 3] [--steps 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from helpers.tiny_pipeline import make_tiny_pipeline  # noqa: E402
from sd_shapes import make_sd15_shaped, plain_call  # noqa: E402

from jupyter_sd.engine import Progress
from jupyter_sd.painting.session import get_engine, render
from jupyter_sd.recipe.request import PaintRequest


class Clock(Progress):
    def __init__(self) -> None:
        self.begin = time.perf_counter()
        self.first_frame = None
        self.first_frame_step = None

    def step(self, step, total, previews):
        if previews and self.first_frame is None:
            self.first_frame = time.perf_counter() - self.begin
            self.first_frame_step = step


def bench(name: str, model: Path, size: int, steps: int, runs: int, outdir: Path) -> dict:
    """Time raw ``pipe(...)`` against the %%paint path, alternating, on the very same pipeline object.

    Timing both on the engine's own pipeline keeps weight placement out of the ratio (two loaded copies of one
    model differ by a few per cent on their own here). A separately loaded plain ``from_pretrained`` pipeline
    checks that our loader and path give the same pixels as raw diffusers.
    """
    from diffusers import StableDiffusionPipeline

    request = PaintRequest(
        prompt="a red circle on a blue background",
        model=str(model),
        steps=steps,
        seed=1234,
        width=size,
        height=size,
        outdir=str(outdir),
        preview="auto",
        preview_interval=0.2,
        rng="cpu",  # the baseline draws from CPU generators: the same noise, so the same picture
    )

    def raw_run(pipe):
        started = time.perf_counter()
        image = plain_call(pipe, request, base)
        return time.perf_counter() - started, image

    def our_run():
        clock = Clock()
        started = time.perf_counter()
        result = render(request, clock, reraise_interrupt=False)
        return time.perf_counter() - started, result.images[0], clock

    _, our_image, _ = our_run()  # warm up (and load the engine's pipeline)
    engine_pipe = get_engine()._pipe
    base = engine_pipe._jupyter_sd_base_scheduler_config
    plain = StableDiffusionPipeline.from_pretrained(model, safety_checker=None)
    plain.set_progress_bar_config(disable=True)
    _, plain_image = raw_run(plain)
    del plain
    raw_run(engine_pipe)
    raw_times, our_times, firsts = [], [], []
    for _ in range(runs):
        raw_times.append(raw_run(engine_pipe)[0])
        t_ours, our_image, clock = our_run()
        our_times.append(t_ours)
        firsts.append((clock.first_frame, clock.first_frame_step))
    same = np.array_equal(np.asarray(plain_image), np.asarray(our_image))
    step_time = statistics.median(raw_times) / steps
    row = {
        "pipeline": name,
        "size": f"{size}x{size}",
        "steps": steps,
        "raw s": statistics.median(raw_times),
        "%%paint s": statistics.median(our_times),
        "ratio": statistics.median(our_times) / statistics.median(raw_times),
        "pixels equal": same,
        "first preview s": statistics.median(f for f, _ in firsts),
        "at step": max(s for _, s in firsts),
        "one step s": step_time,
        "preview ms": _preview_cost(request) * 1000,
    }
    get_engine().unload()
    return row


def _preview_cost(request: PaintRequest) -> float:
    """Seconds one preview frame adds to the step that shows it (the latent→RGB map and the PNG-ready image)."""

    engine = get_engine()
    pipe = engine._pipe
    previewer = engine._previewer(request, pipe)
    latents = torch.randn(1, 4, request.height // 8, request.width // 8)
    previewer(latents)
    started = time.perf_counter()
    for _ in range(10):
        previewer(latents)
    return (time.perf_counter() - started) / 10


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--mid-width", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rows = [bench("tiny (random)", make_tiny_pipeline(tmp / "tiny"), 64, args.steps, args.runs, tmp / "out")]
        mid = make_sd15_shaped(tmp / "mid", width=args.mid_width, text_width=256, text_layers=4)
        rows.append(bench(f"SD-1.5-shaped, width {args.mid_width}", mid, 256, args.steps, args.runs, tmp / "out"))
    keys = list(rows[0])
    print(" | ".join(keys))
    for row in rows:
        print(" | ".join(f"{row[k]:.3f}" if isinstance(row[k], float) else str(row[k]) for k in keys))
    print("targets: ratio ≤ 1.05 tiny, ≤ 1.02 mid-size; identical pixels; first preview within one step + 150 ms")


if __name__ == "__main__":
    main()
