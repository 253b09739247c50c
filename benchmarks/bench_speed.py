"""Step caching (``--cache``) against raw diffusers: wall time and how close the picture stays, in one process.

Three models: an SD-1.5-shaped UNet at reduced width (random weights, built from config) at 256×256, the bundled
model at 64×64, and a Flux.1-shaped transformer at reduced width and depth (random weights) at 256×256; 20 steps of
the default sampler (Flux: its own flow-matching Euler). Raw ``pipe(...)`` on the engine's own pipeline, then the
%%paint path with ``--cache off`` and each cache mode, interleaved (A B C … A B C …); min and median seconds, the
ratio of medians to raw diffusers, and PSNR/SSIM of each mode's picture against the uncached one of the same seed. On
the bundled model also its colour judge (tools/train_tiny_model.py) over the 24 held-out prompts, off and cached.

    python benchmarks/bench_speed.py [--runs 5] [--steps 20] [--width 64] [--size 256] [--threads 1]
                                     [--only sd15|tiny|flux]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tests' shared helpers

from helpers.pixels import psnr, ssim  # noqa: E402
from sd_shapes import make_flux_shaped, make_sd15_shaped, plain_call  # noqa: E402

from jupyter_sd.painting.session import get_engine, render  # noqa: E402
from jupyter_sd.recipe.request import PaintRequest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODES = ("deepcache:2", "deepcache:3", "deepcache:4", "deepcache:5")
FLUX_MODES = ("fbcache:0.08", "fbcache:0.2", "taylorseer:2", "taylorseer:3", "taylorseer:4", "magcache:0.06",
              "magcache:0.12")  # fmt: skip
PROMPTS = (
    "a red circle on a blue background",
    "a yellow square on a green background",
    "a blue triangle on a red background",
)


def timed(base: PaintRequest, modes: tuple[str, ...], runs: int) -> tuple[dict, dict]:
    """Interleaved runs of raw diffusers, %%paint off and each mode: seconds per case, and each case's picture."""
    engine = get_engine()
    pipe = engine.pipeline(base)
    render(base)  # warm-up: loads, builds the scheduler config, first-call costs
    config = dict(pipe._jupyter_sd_base_scheduler_config)
    resolved = engine.last_result.request
    raw = flux_call if hasattr(pipe, "transformer") else plain_call
    cases = {"raw diffusers": lambda: raw(pipe, resolved, config)}
    cases |= {f"--cache {mode}": (lambda mode=mode: render(base.replace(cache=mode)).images[0]) for mode in modes}
    times: dict[str, list[float]] = {name: [] for name in cases}
    pictures: dict = {}
    for _ in range(runs):
        for name, run in cases.items():
            started = time.perf_counter()
            picture = run()
            times[name].append(time.perf_counter() - started)
            pictures.setdefault(name, picture)
    return times, pictures


def flux_call(pipe, request, base_config: dict):
    """The Flux baseline: a plain diffusers call with the model's own scheduler and the distilled guidance."""
    import torch

    pipe.scheduler = type(pipe.scheduler).from_config(base_config)
    return pipe(
        request.prompt,
        num_inference_steps=request.steps,
        guidance_scale=request.distilled_cfg,
        width=request.width,
        height=request.height,
        generator=torch.Generator("cpu").manual_seed(request.seed),
    ).images[0]


def quality(base: PaintRequest, modes: tuple[str, ...], prompts: tuple[str, ...]) -> dict[str, list[tuple]]:
    """(PSNR, SSIM) of each mode's picture against the uncached one, per prompt (seed = base seed + index)."""
    found: dict[str, list[tuple]] = {mode: [] for mode in modes}
    for index, prompt in enumerate(prompts):
        request = base.replace(prompt=prompt, seed=base.seed + index)
        plain = render(request).images[0]
        for mode in modes:
            cached = render(request.replace(cache=mode)).images[0]
            found[mode].append((psnr(plain, cached), ssim(plain, cached)))
    return found


def report(title: str, times: dict, found: dict[str, list[tuple]]) -> None:
    raw = statistics.median(times["raw diffusers"])
    print(f"\n{title}")
    print(
        f"{'case':<22} {'min s':>7} {'median s':>9} {'× raw (median)':>15} {'× raw (min)':>12}  PSNR dB / SSIM vs off"
    )
    raw_min = min(times["raw diffusers"])
    for name, values in times.items():
        median = statistics.median(values)
        mode = name.removeprefix("--cache ")
        close = found.get(mode, [])
        text = ""
        if close:
            psnrs, ssims = [p for p, _ in close], [s for _, s in close]
            text = f"{min(psnrs):.1f}–{max(psnrs):.1f} / {min(ssims):.3f}–{max(ssims):.3f}"
            text += f" (median SSIM {statistics.median(ssims):.3f})"
        print(f"{name:<22} {min(values):7.2f} {median:9.2f} {raw / median:15.2f} {raw_min / min(values):12.2f}  {text}")


def tiny_task():
    """tools/train_tiny_model.py: the bundled model's palette, held-out prompts and colour judge."""
    spec = importlib.util.spec_from_file_location("_train_tiny_model", ROOT / "tools" / "train_tiny_model.py")
    task = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(task)
    return task


def colour_judge(base: PaintRequest, modes: tuple[str, ...]) -> None:
    """The bundled model's colour judge over its 24 held-out prompts, uncached and with each mode."""
    task = tiny_task()
    combos = task.heldout_combos()
    for mode in ("off", *modes):
        images = [
            render(base.replace(prompt=task.caption(*c), seed=2000 + i, cache=mode)).images[0]
            for i, c in enumerate(combos)
        ]
        accuracy, _ = task.colour_accuracy(images, combos)
        print(f"colour judge, --cache {mode:<12} {accuracy:.0%} of {len(combos)}")


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--width", type=int, default=64, help="UNet width (SD 1.5 is 320)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steadier on a shared machine)")
    parser.add_argument("--only", choices=("sd15", "tiny", "flux"), default=None)
    parser.add_argument("--flux-width", type=int, default=256, help="Flux transformer width (Flux.1 is 3072)")
    parser.add_argument("--prompts", type=int, default=24, help="held-out prompts for the bundled model's PSNR/SSIM")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    modes = (*MODES, "auto")
    common = dict(steps=args.steps, seed=7, preview="none", save=False, rng="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "sd15"):
            model = make_sd15_shaped(Path(tmp) / "sd15", width=args.width, text_width=256, text_layers=2)
            base = PaintRequest(prompt=PROMPTS[0], model=str(model), width=args.size, height=args.size, **common)
            times, _ = timed(base, ("off", *modes), args.runs)
            found = quality(base, modes, PROMPTS)
            title = f"SD-1.5-shaped UNet (width {args.width}, random weights), {args.size}², {args.steps} steps"
            report(f"{title}, {args.runs} runs, {args.threads} thread(s)", times, found)
        if args.only in (None, "flux"):
            model = make_flux_shaped(Path(tmp) / "flux", width=args.flux_width)
            base = PaintRequest(prompt=PROMPTS[0], model=str(model), width=args.size, height=args.size, **common)
            flux_modes = (*FLUX_MODES, "auto")
            times, _ = timed(base, ("off", *flux_modes), args.runs)
            found = quality(base, flux_modes, PROMPTS)
            title = f"Flux-shaped transformer (width {args.flux_width}, 4+8 blocks, random weights), {args.size}²"
            report(f"{title}, {args.steps} steps, {args.runs} runs, {args.threads} thread(s)", times, found)
    if args.only in (None, "tiny"):
        base = PaintRequest(prompt=PROMPTS[0], model="tiny", **common)
        times, _ = timed(base, ("off", *modes), args.runs)
        task = tiny_task()
        prompts = tuple(task.caption(*c) for c in task.heldout_combos()[: args.prompts])
        found = quality(base, modes, prompts)
        report(f"bundled model, 64², {args.steps} steps, {args.runs} runs, {args.threads} thread(s)", times, found)
        colour_judge(base, ("deepcache:2", "deepcache:3", "auto"))
        render(base)  # leave a plain picture last


if __name__ == "__main__":
    main()
