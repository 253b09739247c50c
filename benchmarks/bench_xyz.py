"""An X/Y/Z plot against the same nine pictures painted one by one, and against raw diffusers, in one process.

A 3×3 Steps × CFG plot on an SD-1.5-shaped UNet at reduced width (random weights), at a small size. Three ways to
make the same nine pictures, interleaved A B C A B C:

- raw: nine plain diffusers calls (`plain_call`), nothing saved or shown;
- singles: nine ``%%paint`` runs (`painter.render` with the inline view, saving each PNG, plus the cell's output);
- plot: one ``%%paint --x "Steps: …" --y "CFG scale: …"`` (`run_plot` with the inline plot view: live grid, cell
  files, the grid file and the cell's output).

Prints min and median seconds and the ratios plot/singles (target ≤ 1.05) and plot/raw, and the time from the
first cell's picture being ready (its render returning) to the grid showing it (the display update sent).

    python benchmarks/bench_xyz.py [--runs 3] [--size 128] [--width 64]
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

from sd_shapes import make_sd15_shaped, plain_call  # noqa: E402

from jupyter_sd.painting import session as painter
from jupyter_sd.painting.views import InlineView
from jupyter_sd.plots.plan import plan
from jupyter_sd.plots.run import run_plot
from jupyter_sd.plots.views import InlinePlotView
from jupyter_sd.recipe.request import PaintRequest
from jupyter_sd.recipe.result import png_bytes

xyz_module = sys.modules["jupyter_sd.plots.run"]


def _quiet_shell():
    """An IPython shell whose display messages are kept in a list (what a kernel would send, minus the socket)."""
    from IPython.core.displaypub import CapturingDisplayPublisher
    from IPython.testing import globalipapp

    shell = globalipapp.start_ipython() or globalipapp.get_ipython()
    shell.display_pub = CapturingDisplayPublisher()
    return shell


class _TimedRender:
    """Wraps `painter.render` as the plot calls it, noting when each cell's picture is ready."""

    def __init__(self) -> None:
        self.original = painter.render
        self.returned: list[float] = []

    def __call__(self, *args, **kwargs):
        result = self.original(*args, **kwargs)
        self.returned.append(time.perf_counter())
        return result


class _TimedPlotView(InlinePlotView):
    def __init__(self) -> None:
        super().__init__()
        self.shown: list[float] = []

    def cell(self, index, result, grid, number, total):
        super().cell(index, result, grid, number, total)
        self.shown.append(time.perf_counter())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--width", type=int, default=64, help="UNet base width (SD 1.5: 320)")
    parser.add_argument("--steps", default="4, 6, 8")
    parser.add_argument("--cfg", default="3, 5, 7")
    args = parser.parse_args()
    shell = _quiet_shell()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = make_sd15_shaped(tmp / "mid", width=args.width, text_width=256, text_layers=4)
        base = PaintRequest(
            prompt="a red circle on a blue background",
            model=str(model),
            seed=1234,
            width=args.size,
            height=args.size,
            preview="auto",
            rng="cpu",  # the baseline draws from CPU generators: the same noise, the same picture
        )
        specs = {"x": f"Steps: {args.steps}", "y": f"CFG scale: {args.cfg}"}
        checked = plan(base, specs)
        cells = [checked.requests[index] for index in checked.order]
        painter.render(cells[0].replace(outdir=str(tmp / "warm")), reraise_interrupt=False)  # load once
        pipe = painter.get_engine()._pipe
        scheduler_config = pipe._jupyter_sd_base_scheduler_config

        def raw() -> float:
            started = time.perf_counter()
            for request in cells:
                plain_call(pipe, request, scheduler_config)
            return time.perf_counter() - started

        def singles(run: int) -> float:
            started = time.perf_counter()
            for request in cells:
                result = painter.render(
                    request.replace(outdir=str(tmp / f"singles-{run}")), InlineView(), reraise_interrupt=False
                )
                png_bytes(result.grid())  # the cell's output
            return time.perf_counter() - started

        latencies: list[float] = []

        def plot(run: int) -> float:
            timed, view = _TimedRender(), _TimedPlotView()
            xyz_module.painter.render = timed
            try:
                started = time.perf_counter()
                result = run_plot(base.replace(outdir=str(tmp / f"plot-{run}")), specs, view, reraise_interrupt=False)
                png_bytes(result.grid)  # the cell's output
                elapsed = time.perf_counter() - started
            finally:
                xyz_module.painter.render = timed.original
            assert len(result) == 9 and result.path is not None
            latencies.append(view.shown[0] - timed.returned[0])
            return elapsed

        times: dict[str, list[float]] = {"raw": [], "singles": [], "plot": []}
        for run in range(args.runs):
            times["raw"].append(raw())
            times["singles"].append(singles(run))
            times["plot"].append(plot(run))
            shell.display_pub.outputs.clear()
    print(f"3×3 plot ({specs['x']} × {specs['y']}), SD-1.5-shaped UNet width {args.width}, {args.size}×{args.size}")
    print("way | min s | median s")
    for name, values in times.items():
        print(f"{name} | {min(values):.3f} | {statistics.median(values):.3f}")
    for a, b in (("plot", "singles"), ("plot", "raw"), ("singles", "raw")):
        ratio_min = min(times[a]) / min(times[b])
        ratio_median = statistics.median(times[a]) / statistics.median(times[b])
        print(f"{a}/{b} | min {ratio_min:.3f} | median {ratio_median:.3f}")
    print(
        f"first finished cell → shown in the grid: min {min(latencies) * 1000:.1f} ms, "
        f"median {statistics.median(latencies) * 1000:.1f} ms"
    )
    print("target: plot/singles ≤ 1.05")


if __name__ == "__main__":
    torch.set_num_threads(max(1, torch.get_num_threads()))
    main()
