"""How soon the first picture comes: a fresh CLI process, and a fresh kernel's first ``%%paint`` cell.

(a) ``jupyter-sd PROMPT`` from process start to the PNG on disk, against a plain-diffusers script doing the same
    (import, load the bundled model, paint, save) in its own process.
(b) A real kernel: ``%load_ext jupyter_sd``, a 3 s pause (a user typing), then a ``%%paint`` cell on the bundled
    model: the cell's wall time, with the background imports on (the default) and off
    (``%config PaintMagics.warm_imports = False``), against a plain-diffusers cell after the same pause.

(c) The warm-up thread's phases in a fresh process (``--only phases``): the background imports, the bundled model's
    preload, then the first and second picture after it, with the quick load (engine/fast_load.py) on and off.

Runs are interleaved (A B C A B C …); each line gives min and median of the runs and the ratio of medians.

    python benchmarks/bench_coldstart.py [--runs 5] [--pause 3] [--only cli|kernel|phases]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from queue import Empty

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = ROOT / "jupyter_sd" / "models" / "tiny"
PROMPT = "a red circle on a blue background"
STEPS = 20
ENV = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "HF_HUB_OFFLINE": "1"}
ENV["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))

RAW_SCRIPT = f"""
import sys, torch
from diffusers import DiffusionPipeline
pipe = DiffusionPipeline.from_pretrained({str(BUNDLED)!r}, safety_checker=None, requires_safety_checker=False)
pipe.set_progress_bar_config(disable=True)
image = pipe({PROMPT!r}, num_inference_steps={STEPS}, generator=torch.Generator("cpu").manual_seed(1)).images[0]
image.save(sys.argv[1])
"""


def cli_run(folder: Path) -> float:
    started = time.perf_counter()
    cmd = [sys.executable, "-m", "jupyter_sd.cli", PROMPT, "--seed", "1", "--steps", str(STEPS), "-o", str(folder)]
    subprocess.run(cmd, env=ENV, check=True, capture_output=True)
    elapsed = time.perf_counter() - started
    assert list(folder.glob("*.png")), "the CLI wrote no PNG"
    return elapsed


def raw_cli_run(folder: Path) -> float:
    started = time.perf_counter()
    out = folder / "raw.png"
    subprocess.run([sys.executable, "-c", RAW_SCRIPT, str(out)], env=ENV, check=True, capture_output=True)
    elapsed = time.perf_counter() - started
    assert out.is_file()
    return elapsed


def _execute(client, code: str, timeout: float = 300) -> tuple[float, str]:
    """Run a cell; return its wall time (request sent → kernel idle) and its stream/error text."""
    started = time.perf_counter()
    msg_id = client.execute(code)
    text = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            message = client.get_iopub_msg(timeout=1)
        except Empty:
            continue
        if message["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = message["msg_type"], message["content"]
        if kind == "stream":
            text.append(content["text"])
        elif kind == "error":
            text.append(f"{content['ename']}: {content['evalue']}")
        elif kind == "status" and content["execution_state"] == "idle":
            return time.perf_counter() - started, "".join(text)
    raise TimeoutError(code)


def kernel_run(setup: str, cell: str, folder: Path, pause: float) -> float:
    from jupyter_client import KernelManager

    manager = KernelManager(kernel_cmd=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"])
    manager.start_kernel(cwd=str(folder), env=ENV)
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=120)
        _execute(client, setup)
        time.sleep(pause)
        elapsed, text = _execute(client, cell)
        if "Error" in text:
            raise RuntimeError(text)
        return elapsed
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


PHASES_SCRIPT = f"""
import json, sys, time
started = time.perf_counter()
from jupyter_sd.engine import fast_load, warmup
if sys.argv[1] == "off":
    fast_load.bundled_components = lambda *args: {{}}
    fast_load.first_call = lambda pipe: pipe
warmup._import_all()
imports = time.perf_counter() - started
from jupyter_sd.painting import session as painter
painter.get_engine().preload(painter.new_request())
preload = time.perf_counter() - started - imports
request = painter.new_request(prompt={PROMPT!r}, steps={STEPS}, seed=1, save=False, preview="none")
pictures = []
for _ in range(2):
    begun = time.perf_counter()
    painter.render(request)
    pictures.append(time.perf_counter() - begun)
print(json.dumps(dict(imports=imports, preload=preload, first=pictures[0], second=pictures[1])))
"""


def phases_run(mode: str) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", PHASES_SCRIPT, mode], env=ENV, check=True, capture_output=True)
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


PAINT_CELL = f"%%paint --steps {STEPS} --seed 1 -o {{folder}}\n{PROMPT}"
RAW_CELL = RAW_SCRIPT.replace("sys.argv[1]", "{out!r}")


def _line(name: str, times: list[float], baseline: list[float] | None = None) -> str:
    text = f"{name:<46} min {min(times):6.2f} s   median {statistics.median(times):6.2f} s"
    if baseline:
        text += f"   ratio of medians {statistics.median(times) / statistics.median(baseline):.2f}×"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pause", type=float, default=3.0)
    parser.add_argument("--only", choices=("cli", "kernel", "phases"), default=None)
    args = parser.parse_args()
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            base = Path(tmp) / str(run)
            if args.only == "phases":
                for mode in ("on", "off"):
                    for phase, seconds in phases_run(mode).items():
                        times.setdefault(f"{phase} (quick load {mode})", []).append(seconds)
                print(f"run {run + 1}/{args.runs}", flush=True)
                continue
            if args.only != "kernel":
                for name, fn in (("cli", cli_run), ("raw_cli", raw_cli_run)):
                    folder = base / name
                    folder.mkdir(parents=True)
                    times.setdefault(name, []).append(fn(folder))
            if args.only != "cli":
                cases = {
                    "warm": ("%load_ext jupyter_sd", PAINT_CELL),
                    "cold": ("%load_ext jupyter_sd\n%config PaintMagics.warm_imports = False", PAINT_CELL),
                    "raw": ("pass", RAW_CELL),
                }
                for name, (setup, cell) in cases.items():
                    folder = base / name
                    folder.mkdir(parents=True)
                    cell = cell.format(folder=folder, out=str(folder / "raw.png"))
                    times.setdefault(name, []).append(kernel_run(setup, cell, folder, args.pause))
            print(f"run {run + 1}/{args.runs}: " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in times.items()), flush=True)
    print(f"\n{args.runs} runs, {STEPS} steps on the bundled model, OMP_NUM_THREADS={ENV['OMP_NUM_THREADS']}")
    for name, values in times.items():
        if "quick load" in name:
            print(_line(name, values))
    if "cli" in times:
        print(_line("(a) jupyter-sd: process start → PNG", times["cli"], times["raw_cli"]))
        print(_line("    plain diffusers script: start → PNG", times["raw_cli"]))
    if "warm" in times:
        print(_line(f"(b) first %%paint cell, {args.pause:g} s after %load_ext", times["warm"], times["raw"]))
        print(_line("    the same, warm_imports = False", times["cold"], times["raw"]))
        print(_line("    plain diffusers cell (import, load, paint)", times["raw"]))


if __name__ == "__main__":
    main()
