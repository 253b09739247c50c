"""One short check for a CUDA machine: the %%paint path against raw diffusers at SD 1.5's real size.

An SD-1.5-shaped pipeline with random weights (nothing to download), 512×512, fp16, 20 steps. Prints a small table:
raw diffusers it/s, %%paint it/s with previews on (and saving), their ratio, peak GPU memory, time to first
preview, and whether the pixels are identical.

    python benchmarks/gpu_check.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sd_shapes import make_sd15_shaped, plain_call  # noqa: E402

from jupyter_sd.engine import Progress  # noqa: E402
from jupyter_sd.painter import get_engine, render  # noqa: E402
from jupyter_sd.request import PaintRequest  # noqa: E402

STEPS, SIZE, RUNS = 20, 512, 3


class FirstFrame(Progress):
    def __init__(self) -> None:
        self.begin = time.perf_counter()
        self.first = None

    def step(self, step, total, previews):
        if previews and self.first is None:
            torch.cuda.synchronize()
            self.first = time.perf_counter() - self.begin


def main() -> None:
    if not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device here; run it on a GPU machine")
    from diffusers import StableDiffusionPipeline

    with tempfile.TemporaryDirectory() as tmp:
        folder = make_sd15_shaped(Path(tmp) / "sd15")
        raw = StableDiffusionPipeline.from_pretrained(folder, safety_checker=None, torch_dtype=torch.float16).to("cuda")
        raw.set_progress_bar_config(disable=True)
        base = dict(raw.scheduler.config)
        request = PaintRequest(
            prompt="a watercolor fox in a snowy forest",
            model=str(folder),
            steps=STEPS,
            seed=42,
            width=SIZE,
            height=SIZE,
            dtype="float16",
            device="cuda",
            outdir=str(Path(tmp) / "out"),
        )

        def raw_run():
            torch.cuda.synchronize()
            started = time.perf_counter()
            image = plain_call(raw, request, base)
            torch.cuda.synchronize()
            return time.perf_counter() - started, image

        def our_run():
            view = FirstFrame()
            torch.cuda.synchronize()
            started = time.perf_counter()
            result = render(request, view, reraise_interrupt=False)
            torch.cuda.synchronize()
            return time.perf_counter() - started, result.images[0], view.first

        raw_run(), our_run()  # warm-up (cuDNN autotune, the engine's own load)
        torch.cuda.reset_peak_memory_stats()
        raw_times, our_times, firsts = [], [], []
        for _ in range(RUNS):
            t, raw_image = raw_run()
            raw_times.append(t)
            t, our_image, first = our_run()
            our_times.append(t)
            firsts.append(first)
        peak = torch.cuda.max_memory_allocated() / 2**30
        same = np.array_equal(np.asarray(raw_image), np.asarray(our_image))
        raw_t, our_t = statistics.median(raw_times), statistics.median(our_times)
        rows = [
            ("GPU", torch.cuda.get_device_name()),
            ("pipeline", f"SD-1.5-shaped, random weights, {SIZE}x{SIZE} fp16, {STEPS} steps, DPM++ 2M Karras"),
            ("raw diffusers it/s", f"{STEPS / raw_t:.2f}"),
            ("%%paint it/s (previews on, saving)", f"{STEPS / our_t:.2f}"),
            ("wall ratio %%paint/raw", f"{our_t / raw_t:.3f}"),
            ("peak GPU memory (both pipelines)", f"{peak:.2f} GiB"),
            (
                "time to first preview",
                f"{statistics.median(firsts) * 1000:.0f} ms (one step ≈ {raw_t / STEPS * 1000:.0f} ms)",
            ),
            ("identical pixels", str(same)),
        ]
        width = max(len(k) for k, _ in rows)
        for key, value in rows:
            print(f"{key:<{width}}  {value}")
        get_engine().unload()


if __name__ == "__main__":
    main()
