"""One short check for a CUDA machine: the %%paint path and --fast against raw diffusers at real model sizes.

Random-weight pipelines (nothing to download), fp16, 20 steps: SD-1.5-shaped at 512² and SDXL-shaped at 1024².
For each it prints raw diffusers it/s; %%paint it/s with previews on (and saving) and the ratio; --fast: the first
call's seconds (compiling) and its warm it/s and ratio; peak GPU memory; the full VAE decode and a TAESD decode in
ms; time to the first preview; whether the pixels match raw diffusers. Raw and ours run interleaved (A B A B).
Targets: %%paint ≥ 0.98× raw; --fast ≥ 1.3× raw when warm. Then a 4x-UltraSharp-shaped ESRGAN (random weights)
enlarging 512² to 2048² as the hires fix does: our 192-pixel tiles against one whole-picture call, and peak memory.

    python benchmarks/gpu_check.py [--only sd15|sdxl|esrgan] [--runs 3]
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

from sd_shapes import make_sd15_shaped, make_sdxl_shaped, make_taesd_shaped, plain_call  # noqa: E402

from jupyter_sd.engine import Progress
from jupyter_sd.painting.session import get_engine, render
from jupyter_sd.recipe.request import PaintRequest

STEPS = 20
SHAPES = {"sd15": ("SD-1.5-shaped", 512, make_sd15_shaped), "sdxl": ("SDXL-shaped", 1024, make_sdxl_shaped)}


class FirstFrame(Progress):
    def __init__(self) -> None:
        self.begin = time.perf_counter()
        self.first = None
        self.notices: list[str] = []

    def notice(self, text):
        self.notices.append(text)

    def step(self, step, total, previews):
        if previews and self.first is None:
            torch.cuda.synchronize()
            self.first = time.perf_counter() - self.begin


def _timed(fn):
    torch.cuda.synchronize()
    started = time.perf_counter()
    out = fn()
    torch.cuda.synchronize()
    return time.perf_counter() - started, out


def _decode_ms(vae, latents, runs: int = 5) -> float:
    times = []
    with torch.no_grad():
        for _ in range(runs):
            t, _ = _timed(lambda: vae.decode(latents.to(vae.dtype)))
            times.append(t)
    return statistics.median(times) * 1000


def check(shape: str, runs: int, tmp: Path) -> list[tuple[str, str]]:
    from diffusers import AutoencoderTiny, DiffusionPipeline

    title, size, make = SHAPES[shape]
    folder = make(tmp / shape)
    taesd = make_taesd_shaped(tmp / f"taesd-{shape}")
    raw = DiffusionPipeline.from_pretrained(folder, torch_dtype=torch.float16).to("cuda")
    raw.set_progress_bar_config(disable=True)
    base = dict(raw.scheduler.config)
    request = PaintRequest(
        prompt="a watercolor fox in a snowy forest", model=str(folder), steps=STEPS, seed=42, width=size,
        height=size, dtype="float16", device="cuda", outdir=str(tmp / "out"), preset="none",
    )  # fmt: skip

    def raw_run():
        return _timed(lambda: plain_call(raw, request, base))

    def our_run(req):
        view = FirstFrame()
        t, result = _timed(lambda: render(req, view, reraise_interrupt=False))
        return t, result.images[0], view

    raw_run(), our_run(request)  # warm-up (cuDNN autotune, the engine's own load)
    torch.cuda.reset_peak_memory_stats()
    raw_times, our_times, firsts = [], [], []
    for _ in range(runs):
        t, raw_image = raw_run()
        raw_times.append(t)
        t, our_image, view = our_run(request)
        our_times.append(t)
        firsts.append(view.first or 0.0)
    peak = torch.cuda.max_memory_allocated() / 2**30
    diff = np.abs(np.asarray(raw_image, dtype=np.int16) - np.asarray(our_image, dtype=np.int16)).max()
    latents = torch.randn(1, 4, size // 8, size // 8, device="cuda", dtype=torch.float16)
    vae_ms = _decode_ms(raw.vae, latents)
    tiny = AutoencoderTiny.from_pretrained(taesd, torch_dtype=torch.float16).to("cuda")
    taesd_ms = _decode_ms(tiny, latents)
    del tiny
    # --fast: a separate load in the engine (channels_last, fused QKV, regional compile); first call compiles
    fast_request = request.replace(fast=True)
    first_fast, _, fast_view = our_run(fast_request)
    fast_times, raw_again = [], []
    for _ in range(runs):
        t, fast_image, _ = our_run(fast_request)
        fast_times.append(t)
        raw_again.append(raw_run()[0])
    fast_diff = np.abs(np.asarray(raw_image, dtype=np.int16) - np.asarray(fast_image, dtype=np.int16)).max()
    get_engine().unload()
    raw = None  # free it before the next shape
    torch.cuda.empty_cache()
    raw_t, our_t = statistics.median(raw_times), statistics.median(our_times)
    fast_t, raw2_t = statistics.median(fast_times), statistics.median(raw_again)
    fast_line = next((n for n in fast_view.notices if n.startswith("fast mode:")), "")
    return [
        ("pipeline", f"{title}, random weights, {size}x{size} fp16, {STEPS} steps, DPM++ 2M Karras"),
        ("raw diffusers it/s", f"{STEPS / raw_t:.2f}  (min {STEPS / max(raw_times):.2f})"),
        ("%%paint it/s (previews on, saving)", f"{STEPS / our_t:.2f}  (min {STEPS / max(our_times):.2f})"),
        ("ratio %%paint/raw (it/s, medians)", f"{raw_t / our_t:.3f}"),
        ("--fast first call (load + compile)", f"{first_fast:.1f} s"),
        ("--fast warm it/s", f"{STEPS / fast_t:.2f}"),
        ("ratio --fast/raw (it/s, medians)", f"{raw2_t / fast_t:.3f}"),
        ("--fast set-up", fast_line),
        ("peak GPU memory (raw + ours)", f"{peak:.2f} GiB"),
        ("VAE decode", f"{vae_ms:.0f} ms"),
        ("TAESD decode", f"{taesd_ms:.1f} ms"),
        ("time to first preview", f"{statistics.median(firsts) * 1000:.0f} ms (a step: {raw_t / STEPS * 1000:.0f} ms)"),
        ("max pixel difference to raw: %%paint, --fast", f"{diff}, {fast_diff} (of 255)"),
    ]


def check_upscaler(runs: int, tmp: Path) -> list[tuple[str, str]]:
    """A 4x-UltraSharp-shaped RRDBNet (64 features, 23 blocks), fp16: tiles (ours) against one call, interleaved."""
    from PIL import Image
    from safetensors.torch import save_file

    from jupyter_sd.engine.upscaler_nets import RRDBNet
    from jupyter_sd.engine.upscalers import Upscaler

    path = tmp / "4x-shaped.safetensors"
    save_file({k: v.contiguous() for k, v in RRDBNet(3, 64, 23, 32, 2, 1).state_dict().items()}, str(path))
    upscaler = Upscaler(path, False, torch.device("cuda"), torch.float16)
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8))
    upscaler.upscale_once(picture)  # warm-up (cuDNN picks its kernels)
    tiled, whole, peaks = [], [], {}
    for _ in range(runs):
        for name, tile, times in (("tiled", 192, tiled), ("whole", 4096, whole)):
            torch.cuda.reset_peak_memory_stats()
            t, _ = _timed(lambda tile=tile: upscaler.upscale_once(picture, tile=tile))
            times.append(t)
            peaks[name] = torch.cuda.max_memory_allocated() / 2**30
    return [
        ("upscaler", "4x-UltraSharp-shaped ESRGAN (64 features, 23 blocks), fp16, 512² → 2048²"),
        ("192-px tiles (ours): seconds", f"{statistics.median(tiled):.2f}  (min {min(tiled):.2f})"),
        ("one whole-picture call: seconds", f"{statistics.median(whole):.2f}  (min {min(whole):.2f})"),
        ("ratio tiles/whole (medians)", f"{statistics.median(tiled) / statistics.median(whole):.2f}"),
        ("peak GPU memory: tiles, whole", f"{peaks['tiled']:.2f} GiB, {peaks['whole']:.2f} GiB"),
    ]


def main() -> None:
    if not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device here; run it on a GPU machine")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=(*SHAPES, "esrgan"), default=None)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        for shape in [args.only] if args.only else [*SHAPES, "esrgan"]:
            rows = check_upscaler(args.runs, Path(tmp)) if shape == "esrgan" else check(shape, args.runs, Path(tmp))
            width = max(len(k) for k, _ in rows)
            print()
            for key, value in rows:
                print(f"{key:<{width}}  {value}", flush=True)


if __name__ == "__main__":
    main()
