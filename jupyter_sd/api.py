"""`paint()`, `plot()` and `batch()`: the one way from options to pictures, used by Python, the magic and the CLI.

Every front end hands its parsed options to `dispatch`: it splits off the plot axes, builds the request over the
kernel's defaults, validates it once, and paints one picture (`painting.session.render`) or a plot
(`plots.run.run_plot`). Batches are lists of requests painted through that same `render` (`batches.run`).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from .batches.run import batch
from .painting.inputs import OBJECT
from .painting.session import default_view, new_request, render, user_namespace
from .plots.result import PlotResult
from .plots.run import run_plot
from .recipe.plot_options import split_plot_options
from .recipe.result import PaintResult

__all__ = ["batch", "dispatch", "paint", "plot", "xyz"]


def dispatch(
    options: dict[str, Any],
    *,
    plot_axes: Mapping[str, str] | None = None,
    view: Any = None,
    stop: threading.Event | None = None,
    user_ns: Mapping[str, Any] | None = None,
    pictures: Mapping[str, Any] | None = None,
    reraise_interrupt: bool = True,
) -> PaintResult | PlotResult:
    """Paint `options` (request options, maybe with ``x``/``y``/``z`` axes): one picture, or a plot of them.

    Raises
    ------
    ValueError
        For a bad option, axis or value (one line), before anything is loaded or painted.
    """
    options = dict(options)
    axes = {**split_plot_options(options), **(plot_axes or {})}
    request = new_request(**options).validate()
    if axes:
        return run_plot(request, axes, view, stop=stop, user_ns=user_ns, reraise_interrupt=reraise_interrupt)
    view = view if view is not None else default_view()
    return render(request, view, stop=stop, user_ns=user_ns, reraise_interrupt=reraise_interrupt, pictures=pictures)


def paint(prompt: str = "", *, view: Any = None, **options: Any) -> PaintResult | PlotResult:
    """Paint `prompt` with the same options as ``%%paint`` (``steps=``, ``guidance=``, ``seed=``, ``size=`` …).

    In a notebook the previews show in the cell; the result renders as the pictures. With ``x=``/``y=``/``z=``
    axes (``x="Steps: 10, 20"``) it paints an X/Y/Z plot and returns a `PlotResult` (see `plot`). ``init=`` and
    ``mask=`` also take pictures as objects (PIL image, `PaintResult`, numpy array).

    Returns
    -------
    PaintResult
        The pictures, their seeds and files, and the resolved request.

    Raises
    ------
    ValueError
        For an unknown option or an invalid value (one line, naming the option).
    """
    objects = {name: options.pop(name) for name in ("init", "mask") if not isinstance(options.get(name, ""), str)}
    options.update({name: OBJECT for name in objects})
    return dispatch({"prompt": prompt, **options}, view=view, user_ns=user_namespace(), pictures=objects)


def plot(
    prompt: str = "",
    *,
    x: str | None = None,
    y: str | None = None,
    z: str | None = None,
    view: Any = None,
    stop: threading.Event | None = None,
    **options: Any,
) -> PlotResult:
    """Paint an X/Y/Z plot of `prompt`: ``plot("a fox", x="Steps: 10, 20", y="CFG scale: 5, 7", seed=1)``.

    Options are those of ``%%paint`` (``steps=``, ``size=`` …); axes use A1111's syntax (see docs/plots.md).

    Returns
    -------
    PlotResult
        The cells (``plot[20, 7.0]``), the grid (renders in the notebook) and ``plot.table()``.

    Raises
    ------
    ValueError
        For a bad axis, value or option (one line), before anything is painted.
    """
    axes = {which: spec for which, spec in (("x", x), ("y", y), ("z", z)) if spec}
    if not axes:
        raise ValueError("plot: give at least one axis, e.g. x='Steps: 10, 20' (see docs/plots.md)")
    return dispatch({"prompt": prompt, **options}, plot_axes=axes, view=view, stop=stop, user_ns=user_namespace())


xyz = plot
"""A1111's name for `plot`."""
