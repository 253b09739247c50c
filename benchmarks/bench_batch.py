"""A batch of 24 requests on an SD-1.5-shaped CPU model: raw diffusers, the local batch, and Ray with 2 actors.

On one thread each (the two Ray actors are single-threaded, as on a 2-core machine), in one process:

- raw diffusers (a plain loop over the same requests) against the local batch, interleaved A B A B: min and median;
- the same batch through Ray (``ray.init(num_cpus=2)``, 2 actors of 1 CPU): images/s, Ray's overhead per request
  (the time per request per actor not spent painting: scheduling, transfer, the driver's saving), the driver's
  saving cost per image, and the time until the first picture is on disk (actor start and model load included).

    python benchmarks/bench_batch.py [--requests 24] [--steps 4] [--size 128] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sd_shapes import make_sd15_shaped, plain_call  # noqa: E402

import jupyter_sd  # noqa: E402
from jupyter_sd.batches.views import BatchView
from jupyter_sd.recipe.request import PaintRequest


def requests_for(count: int, model: Path, steps: int, size: int) -> list[dict]:
    shapes = ("circle", "square", "triangle", "star")
    colours = ("red", "green", "blue", "yellow", "white", "black")
    return [
        {
            "prompt": f"a {colours[k % len(colours)]} {shapes[k % len(shapes)]} on a grey background",
            "seed": 1000 + k,
            "model": str(model),
            "steps": steps,
            "width": size,
            "height": size,
        }
        for k in range(count)
    ]


def raw_loop(pipe, base, requests) -> float:
    started = time.perf_counter()
    for options in requests:
        plain_call(pipe, PaintRequest(**options), base)
    return time.perf_counter() - started


def local_batch(requests, out: Path) -> tuple[float, jupyter_sd.BatchResult]:
    started = time.perf_counter()
    result = jupyter_sd.batch(requests, outdir=str(out), view=BatchView())
    assert result.painted == len(requests), result
    return time.perf_counter() - started, result


def steady_rate(result: jupyter_sd.BatchResult) -> float:
    """Images/s from the first picture on disk to the last (start-up left out)."""
    images = len(result.paths)
    return (images - 1) / max(result.elapsed - (result.first_image_s or 0.0), 1e-9) if images > 1 else 0.0


def ray_overheads(result: jupyter_sd.BatchResult) -> tuple[float, float]:
    """Medians of Ray's costs per request: an actor's idle gap between two requests, and worker-done → saved here."""
    by_worker: dict[str, list] = {}
    for item in result.items:
        by_worker.setdefault(item.worker, []).append(item.times)
    gaps = [
        later["start"] - earlier["end"]
        for times in by_worker.values()
        for earlier, later in zip(sorted(times, key=lambda t: t["start"]), sorted(times, key=lambda t: t["start"])[1:])
    ]
    delivery = [item.times["saved"] - item.times["end"] for item in result.items]
    return statistics.median(gaps) if gaps else float("nan"), statistics.median(delivery)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=24)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--width", type=int, default=64, help="UNet base width (SD 1.5: 320)")
    args = parser.parse_args()
    import torch
    from diffusers import StableDiffusionPipeline

    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = make_sd15_shaped(tmp / "model", width=args.width, text_width=256, text_layers=4)
        requests = requests_for(args.requests, model, args.steps, args.size)
        pipe = StableDiffusionPipeline.from_pretrained(model, safety_checker=None)
        pipe.set_progress_bar_config(disable=True)
        base = dict(pipe.scheduler.config)
        local_batch(requests[:1], tmp / "warm")  # load the engine's pipeline once, as a kernel would have
        raw_loop(pipe, base, requests[:1])
        raw_times, local_times, local_results = [], [], []
        for run in range(args.runs):
            raw_times.append(raw_loop(pipe, base, requests))
            seconds, result = local_batch(requests, tmp / f"local-{run}")
            local_times.append(seconds)
            local_results.append(result)
        del pipe

        import ray

        os.environ["RAY_DISABLE_DOCKER_CPU_WARNING"] = "1"
        started = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        ray_start = time.perf_counter() - started
        ray_runs = []
        for run in range(2):
            started = time.perf_counter()
            result = jupyter_sd.batch(
                requests, cluster="local", workers=2, outdir=str(tmp / f"ray-{run}"), view=BatchView()
            )
            ray_runs.append((time.perf_counter() - started, result))
            assert result.painted == len(requests), result
        ray.shutdown()

    n = args.requests
    local = local_results[-1]
    local_paint = statistics.median(item.seconds for r in local_results for item in r.items)
    print(f"{n} requests, SD-1.5-shaped UNet width {args.width}, {args.size}x{args.size}, {args.steps} steps, 1 thread")
    print("path | wall s (min / median) | images/s | first picture on disk s")
    print(
        f"raw diffusers loop | {min(raw_times):.2f} / {statistics.median(raw_times):.2f} | "
        f"{n / statistics.median(raw_times):.2f} | -"
    )
    print(
        f"local batch | {min(local_times):.2f} / {statistics.median(local_times):.2f} | "
        f"{n / statistics.median(local_times):.2f} | {local.first_image_s:.2f}"
    )
    ratios = [ours / raw for ours, raw in zip(local_times, raw_times)]
    print(f"local batch / raw diffusers: min {min(ratios):.3f}, median {statistics.median(ratios):.3f}")
    for run, (seconds, result) in enumerate(ray_runs):
        paint = statistics.median(item.seconds for item in result.items)
        idle, delivery = ray_overheads(result)
        save_ms = 1000 * result.save_seconds / len(result.paths)
        print(
            f"ray, 2 actors, run {run + 1} | {seconds:.2f} | {n / seconds:.2f} overall, {steady_rate(result):.2f} "
            f"steady | {result.first_image_s:.2f}"
        )
        print(
            f"  per request (medians): painting on an actor {paint:.3f} s (local batch {local_paint:.3f} s); actor "
            f"idle between requests {1000 * idle:.1f} ms (scheduling); worker done -> saved here "
            f"{1000 * delivery:.1f} ms (transfer + saving, overlapped with the next picture); saving "
            f"{save_ms:.1f} ms/image"
        )
    print(f"ray.init(num_cpus=2): {ray_start:.1f} s (once per session)")
    best_save = min(result.save_seconds / len(result.paths) for _, result in ray_runs)
    print(
        f"scaling: actors are independent, so G GPUs paint about G x one GPU's rate; the driver's saving is shared "
        f"and caps the batch at about {1 / best_save:.0f} images/s"
    )


if __name__ == "__main__":
    main()
