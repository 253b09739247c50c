"""The panel's X/Y/Z plot section: three axis rows (type and values), Plot and Stop, the live grid.

The axis types are the generated axis list (`xyz_axes.axes`), so a new option shows up here too. A plot paints the
panel's current settings through the same `xyz.run_plot` as ``%%paint --x``, on its own thread (in Colab, in the
foreground; see `background_default`), and only touches widgets, never prints. The running cell's ControlNet maps
stand beside its preview, as in a picture's live area.
"""

from __future__ import annotations

import html
import threading
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets
from PIL import Image

from ..painting.views import detected_html
from ..plots.axes import axes
from ..plots.result import Index, PlotResult
from ..plots.views import PlotView, live_jpeg, summary
from ..recipe.plot_options import PLOT_OPTIONS
from ..recipe.result import PaintResult, png_bytes
from .controls import set_tooltip
from .worker import error_line, jpeg_bytes

if TYPE_CHECKING:
    from ..plots.plan import Plan

NOTHING = "Nothing"
"""A1111's name for an unused axis."""
GRID_WIDTH = "512"


class _WidgetPlotView(PlotView):
    """A plot view that only sets widget traits (safe from a thread)."""

    def __init__(self, section: XYZSection) -> None:
        self.section = section
        self._maps: dict[str, Image.Image] = {}

    def start(self, plan: Plan, placeholder: Image.Image | None) -> None:  # noqa: D102
        self.section.say(f"X/Y/Z plot: {len(plan.order)} cells · starting…")
        if placeholder is not None:
            self.section.show(placeholder)

    def notice(self, text: str) -> None:  # noqa: D102
        self.section.say(text)

    def status(self, text: str, done: int, total: int, final: bool = False) -> None:  # noqa: D102
        with self.section.bar.hold_sync():
            self.section.bar.max, self.section.bar.value = max(total, 1), min(done, total)
        self.section.say(text)

    def preview(self, image: Image.Image) -> None:  # noqa: D102
        self.section.preview.value = jpeg_bytes(image)
        self.section.preview.layout.display = ""

    def detected(self, maps: list[Image.Image], labels: list[str]) -> None:  # noqa: D102
        self._maps.update(zip(labels, maps))
        self.section.maps.value = detected_html(self._maps)

    def cell(self, index: Index, result: PaintResult, grid: Image.Image, number: int, total: int) -> None:  # noqa: D102
        self.section.show(grid)
        self._maps = {}  # the next cell's replace them

    def finish(self, plot: PlotResult) -> None:  # noqa: D102
        self.section.preview.layout.display = "none"
        self.section.maps.value = ""
        self.section.bar.bar_style = "warning" if plot.interrupted else "success"
        if plot.grid is not None:
            self.section.show(plot.grid, final=True)
        self.section.say(summary(plot))


class XYZSection(widgets.Accordion):
    """A collapsed *X/Y/Z plot* section for a `Panel`: plots the panel's settings over up to three axes.

    Parameters
    ----------
    panel
        The panel whose settings (``panel.request()``), notebook namespace and threading mode the plot uses.
    """

    def __init__(self, panel: Any) -> None:
        self.panel = panel
        names = [NOTHING, *(axis.label for axis in axes() if axis.missing() is None)]
        self.rows: dict[str, tuple[widgets.Dropdown, widgets.Text]] = {}
        for which in PLOT_OPTIONS:
            kind = widgets.Dropdown(options=names, value=NOTHING, description=f"{which.upper()} type")
            values = widgets.Text(value="", placeholder="10, 20, 30 · 1-9 (+2) · 0-1 [5]", description="values")
            kind.add_class(f"jupyter-sd-xyz-{which}-type")
            values.add_class(f"jupyter-sd-xyz-{which}-values")
            self.rows[which] = (kind, values)
        self.plot_button = widgets.Button(description="Plot", icon="th", button_style="primary")
        self.plot_button.add_class("jupyter-sd-xyz-plot")
        set_tooltip(self.plot_button, "Paint one picture per axis value with the settings above, in one grid")
        self.stop_button = widgets.Button(description="Stop", icon="stop", button_style="danger", disabled=True)
        self.stop_button.add_class("jupyter-sd-xyz-stop")
        self.plot_button.on_click(lambda _: self.plot())
        self.stop_button.on_click(lambda _: self.stop())
        self.bar = widgets.IntProgress(value=0, min=0, max=1, layout=widgets.Layout(width="24em"))
        self.status = widgets.HTML(value="")
        self.status.add_class("jupyter-sd-xyz-status")
        self.error = widgets.HTML(value="")
        self.error.add_class("jupyter-sd-xyz-error")
        self.grid = widgets.Image(format="jpeg", width=GRID_WIDTH, layout=widgets.Layout(display="none"))
        self.grid.add_class("jupyter-sd-xyz-grid")
        self.preview = widgets.Image(format="jpeg", width="128", layout=widgets.Layout(display="none"))
        self.maps = widgets.HTML(value="")  # the running cell's detected maps (painting.views.detected_html)
        self.result: PlotResult | None = None
        self.last_error: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        body = widgets.VBox(
            [
                *(widgets.HBox(list(row)) for row in self.rows.values()),
                widgets.HBox([self.plot_button, self.stop_button]),
                self.bar,
                self.status,
                self.error,
                widgets.HBox([self.grid, self.preview, self.maps]),
            ]
        )
        super().__init__(children=[body], selected_index=None)
        self.set_title(0, "X/Y/Z plot")
        self.add_class("jupyter-sd-xyz")

    # -- what the view and the buttons call ---------------------------------------------------------------------

    def say(self, text: str) -> None:
        """Show the plot's status line (escaped)."""
        self.status.value = f"<code>{html.escape(text)}</code>"

    def fail(self, text: str) -> None:
        """Show an error line; empty clears it."""
        self.error.value = f'<span style="color:#c62828">⚠ {html.escape(text)}</span>' if text else ""

    def show(self, grid: Image.Image, final: bool = False) -> None:
        """Show the live grid (JPEG) or the final one (PNG)."""
        with self.grid.hold_sync():
            self.grid.format, self.grid.value = ("png", png_bytes(grid)) if final else ("jpeg", live_jpeg(grid))
            self.grid.layout.display = ""

    def specs(self) -> dict[str, str]:
        """The axes the rows describe, as ``{"x": "Steps: 10, 20"}`` (rows set to Nothing are left out)."""
        return {
            which: f"{kind.value}: {values.value}"
            for which, (kind, values) in self.rows.items()
            if kind.value != NOTHING
        }

    def plot(self) -> threading.Thread | None:
        """Start a plot of the panel's settings (None, with an error line, when they or the axes are refused)."""
        if self._thread is not None and self._thread.is_alive():
            self.fail("a plot is running; stop it first")
            return None
        from ..plots.plan import plan

        try:
            request = self.panel.request()
            specs = self.specs()
            plan(request, specs)  # refuse a bad axis here, in one line, before any thread starts
        except ValueError as error:
            self.last_error = error
            self.fail(error_line(error))
            return None
        self.fail("")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(request, specs), name="jupyter_sd-xyz", daemon=True)
        self.plot_button.disabled, self.stop_button.disabled = True, False
        self.bar.bar_style = ""
        self._thread.start()
        if not self.panel.background:
            self.wait()
        return self._thread

    def stop(self) -> None:
        """Stop the plot at the next step; finished cells are kept."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the running plot; False on timeout. A kernel interrupt while waiting stops it."""
        thread = self._thread
        if thread is None:
            return True
        try:
            thread.join(timeout)
        except KeyboardInterrupt:
            self.stop()
            thread.join()
        return not thread.is_alive()

    def _run(self, request: Any, specs: dict[str, str]) -> None:
        from ..plots.run import run_plot

        try:
            self.result = run_plot(
                request,
                specs,
                _WidgetPlotView(self),
                stop=self._stop,
                user_ns=self.panel.user_ns,
                reraise_interrupt=False,
            )
        except Exception as error:  # one line; the panel keeps working
            self.last_error = error
            self.fail(error_line(error))
        finally:
            self.plot_button.disabled, self.stop_button.disabled = False, True
