"""One ControlNet unit's cost over plain txt2img: ours (%%paint's path) against diffusers' own ControlNet pipeline.

Four calls per round, interleaved (raw ControlNet, ours with the unit, raw plain, ours plain), repeated; min and
median of each, the unit's cost over plain txt2img on both sides, and ours / diffusers' with the unit (target ≤ 1.03).
The pixels of the two ControlNet calls are compared too (max difference in 1/255).

    python benchmarks/bench_controlnet.py [--runs 5] [--steps 8] [--size 128] [--width 64] [--device cpu]

The model is SD-1.5-shaped (random weights, narrower with --width; benchmarks/sd_shapes.py), the ControlNet made
from its UNet (``ControlNetModel.from_unet``) and saved as a diffusers folder, loaded the way a user's is.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from helpers.tiny_controlnet import save_folder, tiny_controlnet  # noqa: E402
from sd_shapes import make_sd15_shaped  # noqa: E402

from jupyter_sd.engine import Progress  # noqa: E402
from jupyter_sd.engine.schedulers import make_scheduler  # noqa: E402
from jupyter_sd.painting.session import get_engine, render  # noqa: E402
from jupyter_sd.recipe.control_units import read_units  # noqa: E402
from jupyter_sd.recipe.request import PaintRequest  # noqa: E402

PROMPT = "a red circle on a blue background"


def control_map(size: int) -> Image.Image:
    image = Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(image)
    draw.ellipse([size // 4, size // 4, 3 * size // 4, 3 * size // 4], outline=(255, 255, 255), width=2)
    draw.line([0, size - 1, size - 1, 0], fill=(255, 255, 255), width=2)
    return image


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--width", type=int, default=64, help="UNet width (320 = SD 1.5's full size)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = make_sd15_shaped(Path(tmp) / "model", width=args.width, text_width=min(768, 4 * args.width))
        hint = control_map(args.size)
        plain = PaintRequest(
            prompt=PROMPT,
            model=str(model),
            steps=args.steps,
            seed=1234,
            width=args.size,
            height=args.size,
            rng="cpu",
            preview="none",
            save=False,
            device=args.device,
            cache="off",
        )
        render(plain, Progress(), reraise_interrupt=False)  # loads the pipeline
        pipe = get_engine()._pipe
        controlnet = tiny_controlnet(pipe.unet, scale=0.05, hint=(16, 32, 96, 256))  # SD's 8x hint block
        folder = save_folder(controlnet, Path(tmp) / "cn")
        unit = read_units([{"module": "none", "model": str(folder), "image": hint}])
        with_unit = plain.replace(controlnet=unit)
        render(with_unit, Progress(), reraise_interrupt=False)  # loads the ControlNet, makes its pipeline
        pipe = get_engine()._pipe
        from diffusers import ControlNetModel, StableDiffusionControlNetPipeline

        raw_cn = ControlNetModel.from_pretrained(str(folder)).to(pipe.device, pipe.unet.dtype)
        raw = StableDiffusionControlNetPipeline.from_pipe(pipe, controlnet=raw_cn)
        raw.set_progress_bar_config(disable=True)
        base = pipe._jupyter_sd_base_scheduler_config

        def theirs(control: bool):
            p = raw if control else pipe
            p.scheduler = make_scheduler(plain.sampler, plain.schedule, base)
            extra = {"image": hint, "controlnet_conditioning_scale": 1.0} if control else {}
            gens = [torch.Generator("cpu").manual_seed(plain.seed)]
            started = time.perf_counter()
            common = {"num_inference_steps": args.steps, "guidance_scale": plain.guidance}
            size = {"width": args.size, "height": args.size}
            image = p(PROMPT, generator=gens, **common, **size, **extra).images[0]
            return time.perf_counter() - started, image

        def ours(request):
            started = time.perf_counter()
            result = render(request, Progress(), reraise_interrupt=False)
            return time.perf_counter() - started, result.images[0]

        times: dict[str, list[float]] = {"raw cn": [], "ours cn": [], "raw plain": [], "ours plain": []}
        theirs(True)
        for _ in range(args.runs):
            t, raw_image = theirs(True)
            times["raw cn"].append(t)
            t, our_image = ours(with_unit)
            times["ours cn"].append(t)
            times["raw plain"].append(theirs(False)[0])
            times["ours plain"].append(ours(plain)[0])
        report = {"device": str(pipe.device), "size": args.size, "steps": args.steps, "unet width": args.width}
        for name, values in times.items():
            report[f"{name} min s"] = round(min(values), 4)
            report[f"{name} median s"] = round(statistics.median(values), 4)
        for side in ("raw", "ours"):
            report[f"{side} unit cost (median) s"] = round(
                statistics.median(times[f"{side} cn"]) - statistics.median(times[f"{side} plain"]), 4
            )
        report["ratio min (ours cn / raw cn)"] = round(min(times["ours cn"]) / min(times["raw cn"]), 4)
        report["ratio median"] = round(statistics.median(times["ours cn"]) / statistics.median(times["raw cn"]), 4)
        diff = np.abs(np.asarray(raw_image, np.int16) - np.asarray(our_image, np.int16)).max()
        report["max pixel diff"] = int(diff)
        print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
