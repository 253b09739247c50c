"""Our samplers against k-diffusion's (what AUTOMATIC1111 runs), on an SD-1.5-shaped UNet; no timing gate.

For each sampler and schedule type: the largest and mean pixel difference (levels of 255) between our picture
and k-diffusion's sampler driving the same UNet from the same noise, with diffusers' scheduler as it is
("before") and as ``engine.schedulers`` builds it ("after"). Needs ``pip install --no-deps k-diffusion``.

A random UNet's picture hardly depends on the noise level, so every sampler paints nearly the same one and the
differences hide; as in tests/engine/test_sampler_parity.py we make it lean on the timestep (time embedding's
first layer ×20) and on its prediction (output convolution ×10) unless ``--as-built``.

    python benchmarks/bench_samplers.py [--width 32] [--size 64] [--steps 10] [--samplers Euler "DPM++ 2M"]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(_HERE), str(_HERE.parent / "tests"), str(_HERE.parent / "tests" / "helpers")]

from helpers import kdiffusion  # noqa: E402
from sd_shapes import make_sd15_shaped  # noqa: E402

from jupyter_sd.engine.schedulers import make_scheduler, supported_schedules  # noqa: E402
from jupyter_sd.recipe.samplers import SAMPLERS, resolve_schedule  # noqa: E402

SCHEDULES = ("Automatic", "Karras", "Exponential")
SEED, GUIDANCE, PROMPT = 7, 7.0, "a red circle on a blue background"


def _ours(pipe, sampler: str, schedule: str, a1111: bool, steps: int, size: int, embeds):
    """The diffusers pipeline's latents with our scheduler (``a1111=False``: diffusers' class as it is)."""
    import torch

    pipe.scheduler = make_scheduler(sampler, schedule, pipe._bench_base_config, a1111=a1111)
    uncond, cond = embeds.chunk(2)
    return pipe(
        prompt_embeds=cond,
        negative_prompt_embeds=uncond,
        num_inference_steps=steps,
        guidance_scale=GUIDANCE,
        width=size,
        height=size,
        generator=[torch.Generator("cpu").manual_seed(SEED)],
        output_type="latent",
    ).images


def _diff(pipe, latents, reference) -> tuple[int, float]:
    import numpy as np

    a = np.asarray(kdiffusion.decode(pipe, latents)[0], dtype=np.int16)
    b = np.asarray(reference, dtype=np.int16)
    d = np.abs(a - b)
    return int(d.max()), float(d.mean())


def _cases(names: list[str] | None) -> list[tuple[str, str]]:
    cases = []
    for sampler, spec in SAMPLERS.items():
        if names and sampler not in names or kdiffusion.k_function(spec.scheduler, spec.overrides) is None:
            continue
        schedules = ["Automatic"] if spec.scheduler == "DDIMScheduler" else supported_schedules(sampler)
        cases += [(sampler, s) for s in schedules if s in SCHEDULES]
    return cases


def main() -> None:
    """Build the model, then print one row per sampler and schedule type."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=32, help="UNet base channels (320 is SD 1.5's full size)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--as-built", action="store_true", help="keep the random UNet's weights as built")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--samplers", nargs="*", default=None)
    args = parser.parse_args()
    try:
        kdiffusion.load()
    except ImportError:
        sys.exit(f"k-diffusion is not installed: {kdiffusion.INSTALL_HINT}")
    import torch
    from diffusers import StableDiffusionPipeline

    from jupyter_sd.engine.quiet import ignore_harmless_warnings

    ignore_harmless_warnings()  # torchsde's round-off notes on the Brownian tree's ends
    torch.set_grad_enabled(False)
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_sd15_shaped(Path(tmp) / "sd15", width=args.width, text_width=256, text_layers=2)
        pipe = StableDiffusionPipeline.from_pretrained(folder, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    if not args.as_built:
        pipe.unet.time_embedding.linear_1.weight *= 20
        pipe.unet.conv_out.weight *= 10
        pipe.unet.conv_out.bias *= 10
    pipe._bench_base_config = dict(pipe.scheduler.config)
    cond, uncond = pipe.encode_prompt(PROMPT, "cpu", 1, True, "")
    embeds = torch.cat([uncond, cond])
    latent = args.size // pipe.vae_scale_factor
    model = "as built" if args.as_built else "timestep ×20, output ×10"
    print(
        f"SD-1.5-shaped UNet (width {args.width}, {model}), {args.size}², {args.steps} steps, "
        f"seed {SEED}, CFG {GUIDANCE}"
    )
    print(f"{'sampler':<18}{'schedule':<13}{'before max':>11}{'mean':>8}{'after max':>11}{'mean':>8}{'s':>7}")
    for sampler, schedule in _cases(args.samplers):
        started = time.perf_counter()
        concrete = resolve_schedule(sampler, schedule)
        shape = (1, pipe.unet.config.in_channels, latent, latent)
        ref_latents = kdiffusion.reference_latents(pipe, sampler, concrete, args.steps, SEED, GUIDANCE, embeds, shape)
        reference = kdiffusion.decode(pipe, ref_latents)[0]
        rows = [
            _diff(pipe, _ours(pipe, sampler, schedule, a1111, args.steps, args.size, embeds), reference)
            for a1111 in (False, True)
        ]
        (b_max, b_mean), (a_max, a_mean) = rows
        took = time.perf_counter() - started
        print(f"{sampler:<18}{schedule:<13}{b_max:>11}{b_mean:>8.2f}{a_max:>11}{a_mean:>8.2f}{took:>7.1f}", flush=True)


if __name__ == "__main__":
    main()
