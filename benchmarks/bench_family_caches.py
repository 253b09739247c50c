"""diffusers' transformer caches on SD3, Chroma, Z-Image, Qwen-Image and Flux.2 klein: time against ``--cache off``.

The tests' tiny random pipelines (tests/helpers: widths 16–32, built from config; Z-Image also 256 wide with 6
layers), CFG on, interleaved runs of ``off`` and each mode the family runs (A B C … A B C …), one CPU thread; min and
median seconds, the ratio of medians to ``off`` and SSIM to the uncached picture. The models are tiny and random:
their times show what the cache skips against the text encoder, VAE and Python overhead that stay, and their SSIM
says nothing about a real picture.

    python benchmarks/bench_family_caches.py [--runs 3] [--steps 20] [--size 64] [--only SD3]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tests' shared helpers

from helpers import tiny_families, tiny_flow  # noqa: E402
from helpers.pixels import ssim  # noqa: E402

from jupyter_sd.painting.session import get_engine, render  # noqa: E402
from jupyter_sd.recipe.request import PaintRequest  # noqa: E402

FAMILIES = {
    "SD3": functools.partial(tiny_flow.make_tiny_sd3, layers=2),
    "Chroma": tiny_families.make_tiny_chroma,
    "Z-Image": tiny_families.make_tiny_zimage,
    "Z-Image, 256 wide": functools.partial(tiny_families.make_tiny_zimage, heads=16, layers=6),
    "Qwen-Image": tiny_families.make_tiny_qwenimage,
    "Flux.2 klein": tiny_families.make_tiny_flux2_klein,
}
MODES = ("taylorseer:2", "taylorseer:3", "taylorseer:4", "fbcache:0.08", "fbcache:0.2", "auto")


def measure(base: PaintRequest, runs: int) -> None:
    """Interleaved runs of ``off`` and each mode the loaded family runs; one line per case."""
    from jupyter_sd.engine import transformer_cache

    get_engine().pipeline(base)
    allowed = transformer_cache.modes(get_engine()._pipe)
    cases = ["off", *(mode for mode in MODES if mode.split(":")[0] in (*allowed, "auto"))]
    render(base)  # first-call costs
    times: dict[str, list[float]] = {case: [] for case in cases}
    pictures: dict = {}
    for _ in range(runs):
        for case in cases:
            started = time.perf_counter()
            result = render(base.replace(cache=case))
            times[case].append(time.perf_counter() - started)
            pictures.setdefault(case, (result.images[0], result.request.cache))
    off = statistics.median(times["off"])
    for case, values in times.items():
        picture, ran = pictures[case]
        print(f"  {case:<14} {ran:<14} {min(values):6.2f} {statistics.median(values):8.2f} "
              f"{off / statistics.median(values):10.2f} {ssim(pictures['off'][0], picture):8.3f}")  # fmt: skip


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--only", choices=list(FAMILIES), default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        for name, build in FAMILIES.items():
            if args.only not in (None, name):
                continue
            folder = build(Path(tmp) / name.replace(" ", "-").replace(",", ""))
            base = PaintRequest(prompt="a red circle on a blue background", negative_prompt="green", model=str(folder),
                                width=args.size, height=args.size, steps=args.steps, guidance=4.0, seed=7, rng="cpu",
                                preview="none", save=False)  # fmt: skip
            print(f"\n{name}, {args.size}², {args.steps} steps, CFG 4, {args.runs} runs, 1 thread")
            print(f"  {'case':<14} {'ran as':<14} {'min s':>6} {'median s':>8} {'× off':>10} {'SSIM':>8}")
            measure(base, args.runs)


if __name__ == "__main__":
    main()
