"""An A1111 recipe (weighted prompt, one LoRA, clip skip) through the %%paint path against raw diffusers.

On an SD-1.5-shaped UNet at reduced width (random weights, a kohya-format LoRA made here), in one process, on the
very same pipeline object, interleaved:

- **raw, fused**: diffusers given precomputed embeddings with the LoRA fused into the weights (the floor);
- **raw, unfused**: the same with the peft adapter active, not fused (what fusing buys = unfused / fused);
- **%%paint**: ``render()`` of the recipe — networks stage, conditioning, the unfused adapter, saving.

Then the time to switch the LoRA's weight between cells (the networks stage alone, against one image) and the
embedding cache (a second cell with the same prompt encodes nothing).

    python benchmarks/bench_recipes.py [--runs 5] [--steps 6] [--size 192] [--width 64]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from helpers.lora_files import kohya_lora  # noqa: E402
from sd_shapes import make_sd15_shaped  # noqa: E402

from jupyter_sd import library
from jupyter_sd.engine import Progress
from jupyter_sd.engine.networks import apply_networks, state_of
from jupyter_sd.engine.schedulers import make_scheduler
from jupyter_sd.painting.session import get_engine, render
from jupyter_sd.recipe.request import PaintRequest

PROMPT = "(a red circle:1.2), [blue] background, soft light <lora:detail:{weight}>"
NEGATIVE = "(lowres:1.3), blurry"


def _request(model: Path, outdir: Path, steps: int, size: int, weight: float) -> PaintRequest:
    options = dict(
        prompt=PROMPT.format(weight=weight),
        negative_prompt=NEGATIVE,
        model=str(model),
        steps=steps,
        seed=1234,
        width=size,
        height=size,
        outdir=str(outdir),
        preview="none",
        clip_skip=2,
    )
    return PaintRequest(**options)


def _median_ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.1f} ms (min {min(values) * 1000:.1f})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--width", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = make_sd15_shaped(tmp / "mid", width=args.width, text_width=256, text_layers=4)
        library.set_models_dir(tmp / "models")
        from diffusers import StableDiffusionPipeline

        kohya_lora(
            StableDiffusionPipeline.from_pretrained(model), _mkdir(tmp / "models" / "Lora") / "detail.safetensors"
        )
        request = _request(model, tmp / "out", args.steps, args.size, 0.8)
        render(request, Progress(), reraise_interrupt=False)  # load, load the LoRA, warm up
        engine = get_engine()
        pipe = engine._pipe
        base = pipe._jupyter_sd_base_scheduler_config
        adapter = next(iter(state_of(pipe).loras.values())).adapter
        with torch.no_grad():
            embeds, negative_embeds = pipe.encode_prompt("a red circle, blue background", "cpu", 1, True, NEGATIVE)

        def raw() -> float:
            pipe.scheduler = make_scheduler(request.sampler, request.schedule, base)
            started = time.perf_counter()
            pipe(
                prompt_embeds=embeds,
                negative_prompt_embeds=negative_embeds,
                num_inference_steps=args.steps,
                guidance_scale=request.guidance,
                width=args.size,
                height=args.size,
                generator=[torch.Generator("cpu").manual_seed(request.seed)],
            )
            return time.perf_counter() - started

        def ours(weight: float = 0.8) -> float:
            started = time.perf_counter()
            render(_request(model, tmp / "out", args.steps, args.size, weight), Progress(), reraise_interrupt=False)
            return time.perf_counter() - started

        fused, unfused, painted = [], [], []
        for _ in range(args.runs):
            pipe.fuse_lora(components=["unet", "text_encoder"], lora_scale=1.0, adapter_names=[adapter])
            fused.append(raw())
            pipe.unfuse_lora(components=["unet", "text_encoder"])
            unfused.append(raw())
            painted.append(ours())
        loads = state_of(pipe).loads
        switches = []
        for weight in [0.5, 0.8] * args.runs:
            started = time.perf_counter()
            apply_networks(pipe, _request(model, tmp / "out", args.steps, args.size, weight), lambda _: None)
            switches.append(time.perf_counter() - started)
        cells = [ours(weight) for weight in (0.5, 0.8, 0.5)]
        reloaded = state_of(pipe).loads - loads
        miss, hit = _embedding_cache(pipe, request)
    image = statistics.median(painted)
    print(f"SD-1.5-shaped UNet, width {args.width}, {args.size}x{args.size}, {args.steps} steps, {args.runs} runs, CPU")
    print("measure | median s | min s | ratio to raw fused (median)")
    for name, times in (("raw diffusers, LoRA fused", fused), ("raw diffusers, LoRA unfused", unfused),
                        ("%%paint recipe (unfused)", painted)):  # fmt: skip
        print(f"{name} | {statistics.median(times):.3f} | {min(times):.3f} | "
              f"{statistics.median(times) / statistics.median(fused):.3f}")  # fmt: skip
    print(f"%%paint / raw unfused (our overhead): {image / statistics.median(unfused):.3f} (target ≤ 1.05)")
    print(f"fusing buys: {1 - statistics.median(fused) / statistics.median(unfused):.1%} of the unfused time")
    switch = statistics.median(switches)
    print(f"LoRA weight switch (networks stage): {_median_ms(switches)} = {switch / image:.1%} of one image "
          f"(target < 10%); files reloaded while switching: {reloaded}; cells at 0.5/0.8/0.5: "
          f"{', '.join(f'{c:.3f} s' for c in cells)}")  # fmt: skip
    print(f"embedding cache: first encode {miss * 1000:.1f} ms, same prompt again {hit * 1000:.2f} ms"
          if miss is not None else "embedding cache: engine/conditioning.py not on this branch yet")  # fmt: skip


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _embedding_cache(pipe, request: PaintRequest) -> tuple[float | None, float | None]:
    """Encode the recipe's prompts with an empty cache, then again (a hit encodes nothing)."""
    try:
        from jupyter_sd.engine.conditioning import build_conditioning, clear_cache
    except ImportError:
        return None, None
    key = apply_networks(pipe, request, lambda _: None).text_key
    times = []
    clear_cache(pipe)
    for _ in range(2):
        started = time.perf_counter()
        build_conditioning(pipe, request.prompt, request.negative_prompt, request.steps,
                           getattr(request, "clip_skip", 1), networks_key=key)  # fmt: skip
        times.append(time.perf_counter() - started)
    return times[0], times[1]


if __name__ == "__main__":
    main()
