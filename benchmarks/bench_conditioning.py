"""A1111 conditioning (engine/conditioning.py) against diffusers' own ``encode_prompt``, in one process.

On an SD-1.5-shaped text encoder (768 wide, 12 layers, random weights): the time to encode a plain prompt and a
weighted three-chunk prompt with an empty cache, interleaved A B A B, min and median; the cost of a cache hit; and
the time per denoising step of ``AND`` (UNet wrapper, three UNet rows) against a plain prompt.

    python benchmarks/bench_conditioning.py [--runs 7]
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

from sd_shapes import make_sd15_shaped  # noqa: E402

from jupyter_sd.engine.conditioning import build_conditioning, clear_cache

PLAIN = "a red circle on a blue background"
WEIGHTED = ", ".join(["(a red circle:1.2) on a [blue] background BREAK a green square"] * 4)


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _row(name: str, ours: list[float], raw: list[float]) -> None:
    ratio_min, ratio_median = min(ours) / min(raw), statistics.median(ours) / statistics.median(raw)
    print(
        f"{name:34s} ours {statistics.median(ours) * 1000:8.2f} ms  diffusers {statistics.median(raw) * 1000:8.2f} ms"
        f"  ratio min {ratio_min:.3f} median {ratio_median:.3f}"
    )


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    from diffusers import StableDiffusionPipeline

    with tempfile.TemporaryDirectory() as folder:
        pipe = StableDiffusionPipeline.from_pretrained(make_sd15_shaped(Path(folder) / "sd15", width=32))
    pipe.set_progress_bar_config(disable=True)

    chunks = build_conditioning(pipe, WEIGHTED, "", 20).pipeline_kwargs()["prompt_embeds"].shape[1] // 77
    print(f"the weighted prompt makes {chunks} chunks here; diffusers cuts it to one (77 tokens)")
    for name, prompt in (("plain prompt, empty cache", PLAIN), ("weighted long prompt, empty cache", WEIGHTED)):
        ours, raw = [], []
        for _ in range(args.runs):
            clear_cache(pipe)
            ours.append(_timed(lambda p=prompt: build_conditioning(pipe, p, "", 20).pipeline_kwargs()))
            raw.append(_timed(lambda p=prompt: pipe.encode_prompt(p, "cpu", 1, True, "")))
        _row(name, ours, raw)
    build_conditioning(pipe, PLAIN, "", 20)
    hits = [_timed(lambda: build_conditioning(pipe, PLAIN, "", 20).pipeline_kwargs()) for _ in range(args.runs)]
    print(f"{'plain prompt, cache hit':34s} ours {statistics.median(hits) * 1000:8.3f} ms (encodes nothing)")

    def paint(prompt: str) -> float:
        cond = build_conditioning(pipe, prompt, "", 4)
        with cond.applied(pipe):
            return _timed(
                lambda: pipe(
                    **cond.pipeline_kwargs(),
                    num_inference_steps=4,
                    width=64,
                    height=64,
                    generator=torch.Generator().manual_seed(1),
                    callback_on_step_end=lambda p, i, t, k: cond.on_step(p, i, t, k),
                )
            )

    conj, plain = [], []
    for _ in range(args.runs):
        conj.append(paint("a red circle AND a blue square :0.5"))
        plain.append(paint(PLAIN))
    _row("4 steps 64x64, AND (2 parts) vs plain", conj, plain)


if __name__ == "__main__":
    main()
