"""img2img, inpaint and the hires fix through %%paint's path against raw diffusers calls, same pipeline, same seeds.

For each mode: wall-time ratio (runs interleaved A B A B; min and median), whether the pixels agree (max difference
in 1/255), and the time to the first preview. Then, in a fresh process, peak RSS after switching txt2img → img2img
→ inpaint → txt2img against txt2img alone (the modes share one set of components, so it should barely move).

    python benchmarks/bench_modes.py [--runs 5] [--steps 8] [--size 128] [--width 64]

The model is SD-1.5-shaped (random weights, narrower with --width; benchmarks/sd_shapes.py) on the CPU.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from sd_shapes import make_sd15_shaped  # noqa: E402

from jupyter_sd.engine import Progress
from jupyter_sd.engine.mode_pipelines import derived_pipeline
from jupyter_sd.engine.schedulers import make_scheduler
from jupyter_sd.painting.session import get_engine, render
from jupyter_sd.recipe.request import PaintRequest

PROMPT = "a red circle on a blue background"


class Clock(Progress):
    def __init__(self) -> None:
        self.begin = time.perf_counter()
        self.first_frame: float | None = None

    def step(self, step, total, previews):
        if previews and self.first_frame is None:
            self.first_frame = time.perf_counter() - self.begin


def pictures(size: int) -> tuple[Image.Image, Image.Image]:
    x = np.linspace(0, 255, size, dtype=np.float32)
    init = Image.fromarray(
        np.stack([np.tile(x, (size, 1)), np.tile(x[:, None], (1, size)), np.full((size, size), 90)], -1).astype(
            np.uint8
        )
    )
    mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(mask).ellipse([size // 4, size // 4, 3 * size // 4, 3 * size // 4], fill=255)
    return init, mask


def _gens(seed: int) -> list:
    return [torch.Generator("cpu").manual_seed(seed)]


def raw_call(mode: str, pipe, request: PaintRequest, init, mask):
    """The plain diffusers calls a user would write for the same picture."""
    base = pipe._jupyter_sd_base_scheduler_config
    common = dict(num_inference_steps=request.steps, guidance_scale=request.guidance)
    # the same steps as A1111 (and we) run: t_enc + 1 of them, t_enc = int(min(strength, 0.999) × steps)
    run = int(min(request.strength, 0.999) * request.steps) + 1
    strength = min(1.0, (run + 0.5) / request.steps)
    if mode == "img2img":
        p = derived_pipeline(pipe, "img2img")
        p.scheduler = make_scheduler(request.sampler, request.schedule, base)
        return p(PROMPT, image=init, strength=strength, generator=_gens(request.seed), **common).images[0]
    if mode == "inpaint":
        p = derived_pipeline(pipe, "inpaint")
        p.scheduler = make_scheduler(request.sampler, request.schedule, base)
        size = dict(width=request.width, height=request.height)
        out = p(
            PROMPT,
            image=init,
            mask_image=mask,
            strength=strength,
            generator=_gens(request.seed),
            **common,
            **size,
        ).images[0]
        return Image.composite(out, init, mask)  # A1111's paste-back, blur 0
    pipe.scheduler = make_scheduler(request.sampler, request.schedule, base)
    latents = pipe(
        PROMPT,
        width=request.width,
        height=request.height,
        generator=_gens(request.seed),
        output_type="latent",
        **common,
    ).images
    big = torch.nn.functional.interpolate(latents, scale_factor=request.hires, mode="bilinear")
    p = derived_pipeline(pipe, "img2img")
    p.scheduler = make_scheduler(request.sampler, request.schedule, base)
    scheduled = int(request.hires_steps / min(request.hires_denoise, 0.999))
    return p(
        PROMPT,
        image=big,
        strength=request.hires_denoise,
        num_inference_steps=scheduled,
        guidance_scale=request.guidance,
        generator=_gens(request.seed),
    ).images[0]


def requests(model: Path, size: int, steps: int, outdir: Path) -> dict[str, PaintRequest]:
    base = PaintRequest(
        prompt=PROMPT,
        model=str(model),
        steps=steps,
        seed=1234,
        width=size,
        height=size,
        outdir=str(outdir),
        preview="auto",
        rng="cpu",  # the baseline draws from CPU generators: the same noise, the same picture
        preview_interval=0.2,
    )
    return {
        "img2img": base.replace(init="<object>", strength=0.75),
        "inpaint": base.replace(init="<object>", mask="<object>", strength=1.0, mask_blur=0),
        "hires": base.replace(width=size // 2, height=size // 2, hires=2, hires_steps=steps // 2, hires_denoise=0.5),
    }


def bench(mode: str, request: PaintRequest, runs: int, init, mask) -> dict:
    objects = {"init": init, "mask": mask} if mode == "inpaint" else {"init": init} if mode == "img2img" else {}

    def ours():
        clock = Clock()
        started = time.perf_counter()
        result = render(request, clock, reraise_interrupt=False, pictures=objects)
        return time.perf_counter() - started, result.images[0], clock.first_frame

    def theirs(pipe):
        started = time.perf_counter()
        image = raw_call(mode, pipe, request, init, mask)
        return time.perf_counter() - started, image

    ours()  # warm up: loads the pipeline, makes the img2img / inpaint pipelines from it
    pipe = get_engine()._pipe
    theirs(pipe)
    raw_times, our_times, firsts = [], [], []
    for _ in range(runs):
        t, raw_image = theirs(pipe)
        raw_times.append(t)
        t, our_image, first = ours()
        our_times.append(t)
        firsts.append(first)
    diff = np.abs(np.asarray(raw_image, np.int16) - np.asarray(our_image, np.int16)).max()
    return {
        "mode": mode,
        "size": f"{our_image.width}x{our_image.height}",
        "raw min s": min(raw_times),
        "raw median s": statistics.median(raw_times),
        "ours min s": min(our_times),
        "ours median s": statistics.median(our_times),
        "ratio min": min(our_times) / min(raw_times),
        "ratio median": statistics.median(our_times) / statistics.median(raw_times),
        "max pixel diff": int(diff),
        "first preview s": statistics.median(f for f in firsts if f is not None) if any(firsts) else float("nan"),
    }


def memory_run(model: str, size: int, steps: int) -> None:
    """In a fresh process: peak RSS after txt2img alone, then after img2img, inpaint and txt2img again."""
    init, mask = pictures(size)
    with tempfile.TemporaryDirectory() as tmp:
        reqs = requests(Path(model), size, steps, Path(tmp))
        txt2img = reqs["img2img"].replace(init="", save=False)

        def peak() -> float:
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB (Linux reports KiB)

        render(txt2img, Progress(), reraise_interrupt=False)
        render(txt2img, Progress(), reraise_interrupt=False)
        alone = peak()
        render(reqs["img2img"].replace(save=False), Progress(), reraise_interrupt=False, pictures={"init": init})
        render(
            reqs["inpaint"].replace(save=False),
            Progress(),
            reraise_interrupt=False,
            pictures={"init": init, "mask": mask},
        )
        render(txt2img, Progress(), reraise_interrupt=False)
        print(json.dumps({"txt2img alone MiB": alone, "after switching MiB": peak(), "loads": get_engine().load_count}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--width", type=int, default=64, help="UNet base width (320 is SD 1.5's full size)")
    parser.add_argument("--memory-run", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_run:
        memory_run(args.memory_run, args.size, args.steps)
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = make_sd15_shaped(tmp / "sd15", width=args.width, text_width=256, text_layers=4)
        init, mask = pictures(args.size)
        rows = [
            bench(mode, request, args.runs, init, mask)
            for mode, request in requests(model, args.size, args.steps, tmp / "out").items()
        ]
        keys = list(rows[0])
        print(" | ".join(keys))
        for row in rows:
            print(" | ".join(f"{row[k]:.3f}" if isinstance(row[k], float) else str(row[k]) for k in keys))
        done = subprocess.run(
            [
                sys.executable,
                __file__,
                "--memory-run",
                str(model),
                "--size",
                str(args.size),
                "--steps",
                str(args.steps),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        memory = json.loads(done.stdout.strip().splitlines()[-1])
        growth = memory["after switching MiB"] / memory["txt2img alone MiB"] - 1
        print(
            f"peak RSS: txt2img alone {memory['txt2img alone MiB']:.0f} MiB, after txt2img → img2img → inpaint → "
            f"txt2img {memory['after switching MiB']:.0f} MiB ({growth:+.1%}), loads {memory['loads']}"
        )
    print("targets: ratio ≤ 1.03; pixels within 1/255; RSS ≤ +5% after switching modes")


if __name__ == "__main__":
    main()
