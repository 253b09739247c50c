"""What skipping CFG's negative half saves: A1111's NGMS (``--ngms``, ``--ngms-all``) and Skip Early CFG.

Interleaved runs (raw diffusers, then our path with each setting) on an SD-1.5-shaped UNet with random weights,
20 Euler steps, one CPU thread; each line gives the UNet halves skipped (counted on the UNet's input batch), the
ratio of medians to raw diffusers and the ratio of minimums. No timing gate: this machine is shared and noisy.

    python benchmarks/bench_cfg_skips.py [--runs 5] [--size 256] [--width 64]
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

from jupyter_sd.painting.session import get_engine, render  # noqa: E402
from jupyter_sd.recipe.request import PaintRequest  # noqa: E402

SETTINGS = {
    "off": {},
    "--ngms 1": {"ngms": 1.0},
    "--ngms 1 --ngms-all": {"ngms": 1.0, "ngms_all": True},
    "--skip-early-cfg 0.2": {"skip_early_cfg": 0.2},
}


def halves_skipped(pipe, request: PaintRequest) -> int:
    """Paint once, counting the UNet calls whose batch is one image (the negative half skipped)."""
    batches: list[int] = []
    hook = pipe.unet.conv_in.register_forward_pre_hook(lambda module, args: batches.append(args[0].shape[0]))
    try:
        render(request)
    finally:
        hook.remove()
    return sum(1 for batch in batches if batch == 1)


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--width", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        model = make_sd15_shaped(Path(tmp) / "sd15", width=args.width, text_width=256, text_layers=2)
        base = PaintRequest(
            prompt="a red circle on a blue background", model=str(model), steps=20, seed=7, sampler="Euler",
            width=args.size, height=args.size, preview="none", save=False, rng="cpu",
        )  # fmt: skip
        pipe = get_engine().pipeline(base)
        render(base)  # warm-up
        config = dict(pipe._jupyter_sd_base_scheduler_config)
        resolved = get_engine().last_result.request
        cases = {"raw diffusers": lambda: plain_call(pipe, resolved, config)}
        cases |= {name: (lambda changes=changes: render(base.replace(**changes))) for name, changes in SETTINGS.items()}
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.runs):
            for name, run in cases.items():
                started = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - started)
        raw = times.pop("raw diffusers")
        print(f"SD-1.5-shaped UNet (width {args.width}), {args.size}², 20 Euler steps, {args.runs} runs, 1 thread")
        print("setting                 halves skipped / 40   speed-up (medians)   (minimums)")
        for name, changes in SETTINGS.items():
            skipped = halves_skipped(pipe, base.replace(**changes))
            median = statistics.median(raw) / statistics.median(times[name])
            least = min(raw) / min(times[name])
            print(f"{name:24s}{skipped:>10d}            {median:10.2f}×          {least:8.2f}×")


if __name__ == "__main__":
    main()
