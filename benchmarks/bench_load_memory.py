"""Host RAM while loading a single-file checkpoint: peak RSS growth against the file's size (Colab has 12.7 GB).

Builds an SD-1.5-shaped pipeline with random weights, writes it as one original-layout fp16 ``.safetensors`` file,
then loads it in fresh processes, interleaved: our engine (``--model FILE --model-config CONFIGS --dtype float16``)
and raw diffusers' ``from_single_file(..., torch_dtype=float16)``. Each line: min and median of
(peak RSS − RSS before loading) / file size. Target ≤ 1.3×.

    python benchmarks/bench_load_memory.py [--runs 3]
    python benchmarks/bench_load_memory.py --shape flux [--runs 3]

``--shape flux``: a Flux-shaped transformer (2 double and 4 single blocks at width 1024, ~130 M parameters) as
a transformer-only BFL-layout bf16 file and as a city96-style GGUF Q8_0 file, each loaded by our engine with the
tiny pipeline's other parts from ``--model-config`` (diffusers' own converter assumes width 3072, so there is no
raw line); the ratio is against the transformer file's size.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

MEASURE = """
import sys, psutil, torch, diffusers, transformers
from diffusers import StableDiffusionPipeline
file, configs, which = sys.argv[1:4]


def hwm():  # this process's own peak RSS: ru_maxrss would carry over the parent's from before exec
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024


before = psutil.Process().memory_info().rss
if which == "ours":
    from jupyter_sd.engine import Engine
    from jupyter_sd.recipe.request import PaintRequest
    pipe = Engine().pipeline(PaintRequest(model=file, model_config=configs, dtype="float16", device="cpu"))
else:
    pipe = StableDiffusionPipeline.from_single_file(file, config=configs, torch_dtype=torch.float16)
with torch.no_grad():  # read every weight once, as painting (or moving to the GPU) does
    for module in (pipe.unet, pipe.vae, pipe.text_encoder):
        for param in module.parameters():
            param.view(-1)[::997].sum()
            param.abs().max()
print(hwm() - before)
"""


MEASURE_FLUX = """
import sys, psutil, torch, diffusers, transformers, gguf
from diffusers import FluxPipeline, FluxTransformer2DModel  # the imports loading needs, before the baseline
from diffusers.quantizers.gguf.utils import GGUFParameter
from transformers import CLIPTextModel, T5EncoderModel
from jupyter_sd.engine import Engine
from jupyter_sd.engine.loading import denoiser, single_file
from jupyter_sd.recipe.request import PaintRequest
file, configs = sys.argv[1:3]


def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024


before = psutil.Process().memory_info().rss
pipe = Engine().pipeline(PaintRequest(model=file, model_config=configs, dtype="bfloat16", device="cpu"))
with torch.no_grad():
    for param in pipe.transformer.parameters():  # GGUF weights as their plain uint8 blocks
        (param.as_tensor() if hasattr(param, "as_tensor") else param).view(-1)[::997].float().sum()
print(hwm() - before)
"""


def flux_files(tmp: Path) -> tuple[dict[str, Path], Path]:
    """A Flux-shaped transformer as a bf16 BFL file and a GGUF Q8_0 file, and configs with the tiny other parts."""
    import shutil

    import torch
    from diffusers import FluxTransformer2DModel
    from helpers.bfl_checkpoint import diffusers_to_bfl
    from helpers.gguf_files import write_gguf
    from helpers.tiny_flow import make_tiny_flux
    from safetensors.torch import save_file

    configs = make_tiny_flux(tmp / "configs")
    shutil.rmtree(configs / "transformer")
    torch.manual_seed(0)
    model = FluxTransformer2DModel(patch_size=1, in_channels=64, num_layers=2, num_single_layers=4,
                                   attention_head_dim=128, num_attention_heads=8, joint_attention_dim=32,
                                   pooled_projection_dim=32, guidance_embeds=True,
                                   axes_dims_rope=(16, 56, 56)).to(torch.bfloat16)  # fmt: skip
    model.save_config(configs / "transformer")
    state = diffusers_to_bfl(model.state_dict())
    del model
    files = {"safetensors bf16": tmp / "flux-shaped.safetensors", "GGUF Q8_0": tmp / "flux-shaped-Q8_0.gguf"}
    save_file(state, str(files["safetensors bf16"]))
    write_gguf(state, files["GGUF Q8_0"], "Q8_0")
    return files, configs


def main_flux(runs: int, env: dict[str, str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        files, configs = flux_files(Path(tmp))
        ratios: dict[str, list[float]] = {label: [] for label in files}
        for _ in range(runs):
            for label, file in files.items():
                cmd = [sys.executable, "-c", MEASURE_FLUX, str(file), str(configs)]
                done = subprocess.run(cmd, env=env, capture_output=True, text=True)
                if done.returncode:
                    raise SystemExit(f"{label}: {done.stderr.strip().splitlines()[-1]}")
                ratios[label].append(int(done.stdout.strip().splitlines()[-1]) / file.stat().st_size)
        print(f"Flux-shaped transformer (width 1024, 2+4 blocks), {runs} runs each, interleaved")
        for label, values in ratios.items():
            size = files[label].stat().st_size / 2**20
            print(f"{label:<18} {size:7.0f} MiB  peak RSS growth / file size: min {min(values):.2f}×  "
                  f"median {statistics.median(values):.2f}×")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--shape", choices=("sd15", "flux"), default="sd15")
    args = parser.parse_args()
    from helpers.ldm_checkpoint import config_only_copy, ldm_state_dict
    from safetensors.torch import save_file
    from sd_shapes import make_sd15_shaped

    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "HF_HUB_OFFLINE": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))
    if args.shape == "flux":
        main_flux(args.runs, env)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_sd15_shaped(Path(tmp) / "sd15")
        state = {name: tensor.half().contiguous() for name, tensor in ldm_state_dict(folder).items()}
        file = Path(tmp) / "sd15-fp16.safetensors"
        save_file(state, str(file), metadata={"format": "pt"})
        del state
        configs = config_only_copy(folder, Path(tmp) / "configs")
        size = file.stat().st_size
        ratios: dict[str, list[float]] = {"ours": [], "raw": []}
        for _ in range(args.runs):
            for which in ratios:
                cmd = [sys.executable, "-c", MEASURE, str(file), str(configs), which]
                done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
                ratios[which].append(int(done.stdout.strip().splitlines()[-1]) / size)
        print(f"file {size / 2**30:.2f} GiB (SD-1.5-shaped, fp16), {args.runs} runs each, interleaved")
        for which, label in (("ours", "jupyter_sd engine"), ("raw", "raw from_single_file")):
            values = ratios[which]
            median = statistics.median(values)
            print(f"{label:<22} peak RSS growth / file size: min {min(values):.2f}×  median {median:.2f}×")
        print(f"ratio of medians ours/raw: {statistics.median(ratios['ours']) / statistics.median(ratios['raw']):.2f}")


if __name__ == "__main__":
    main()
