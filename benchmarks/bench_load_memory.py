"""Host RAM while loading a single-file checkpoint: peak RSS growth against the file's size (Colab has 12.7 GB).

Builds an SD-1.5-shaped pipeline with random weights, writes it as one original-layout fp16 ``.safetensors`` file,
then loads it in fresh processes, interleaved: our engine (``--model FILE --model-config CONFIGS --dtype float16``)
and raw diffusers' ``from_single_file(..., torch_dtype=float16)``. Each line: min and median of
(peak RSS − RSS before loading) / file size. Target ≤ 1.3×.

    python benchmarks/bench_load_memory.py [--runs 3]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    from helpers.ldm_checkpoint import config_only_copy, ldm_state_dict
    from safetensors.torch import save_file
    from sd_shapes import make_sd15_shaped

    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "HF_HUB_OFFLINE": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))
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
