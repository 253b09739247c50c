"""A plot's plan: read the axes, build and check every cell's request, and choose the order they are painted in.

Everything is checked before anything is loaded (one line for a bad value); the costliest axis runs outermost
(checkpoint, then VAE, then the rest) so each model loads once.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from ..recipe.fields import MAX_SEED
from ..recipe.plot_options import PLOT_OPTIONS
from ..recipe.request import PaintRequest
from .axes import AxisValues, parse_axis
from .result import Index


@dataclass
class Plan:
    """A checked plot: its axes and one validated request per cell, in the order they will be painted."""

    base: PaintRequest
    axes: list[AxisValues]
    requests: dict[Index, PaintRequest]
    order: list[Index]
    shape: tuple[int, int, int]

    def labels(self, which: str) -> list[str]:
        """The grid labels of axis `which` (one empty label when that axis is not used)."""
        for axis in self.axes:
            if axis.which == which:
                return axis.labels
        return [""]


def plan(base: PaintRequest, specs: Mapping[str, str]) -> Plan:
    """Read the axes and build every cell's request, refusing a bad axis or value before anything runs.

    A base seed of -1 is fixed once for the whole plot (A1111 does so), and ``-1`` on a seed axis becomes a random
    seed, so every cell can be repainted alone from its file.

    Raises
    ------
    ValueError
        One line naming the axis, the value and what is allowed.
    """
    unknown = sorted(set(specs) - set(PLOT_OPTIONS))
    if unknown:
        msg = f"plot: unknown axis option '{unknown[0]}' (allowed: {', '.join(PLOT_OPTIONS)})"
        raise ValueError(msg)
    base.validate()
    axes = [parse_axis(specs[which], which) for which in PLOT_OPTIONS if specs.get(which)]
    if not axes:
        msg = "plot: give at least one axis, e.g. x='Steps: 10, 20'"
        raise ValueError(msg)
    if base.seed == -1:
        base = base.replace(seed=secrets.randbelow(MAX_SEED - base.n * base.repeat))
    for axis in axes:
        _fix_seeds(axis)
        _confirm(axis, base)
    counts = {axis.which: len(axis) for axis in axes}
    shape = (counts.get("x", 1), counts.get("y", 1), counts.get("z", 1))
    requests: dict[Index, PaintRequest] = {}
    for iz in range(shape[2]):
        for iy in range(shape[1]):
            for ix in range(shape[0]):
                requests[(ix, iy, iz)] = _cell_request(base, axes, (ix, iy, iz))
    return Plan(base, axes, requests, _run_order(axes, shape), shape)


def _fix_seeds(axis: AxisValues) -> None:
    if not axis.axis.random_minus_one:
        return
    for i, value in enumerate(axis.values):
        if value == -1:
            axis.values[i] = secrets.randbelow(MAX_SEED)
            axis.texts[i] = str(axis.values[i])


def _confirm(axis: AxisValues, base: PaintRequest) -> None:
    """Checks an axis needs beyond each request's own validation (A1111's ``confirm``)."""
    label = axis.axis.label
    if label == "Prompt S/R":
        search = axis.values[0]
        if search not in base.prompt and search not in base.negative_prompt:
            msg = f"{axis.which}: Prompt S/R did not find '{search}' in the prompt or negative prompt"
            raise ValueError(msg)
    elif label == "Lora weight":
        from ..recipe.prompts import extract_networks

        if not extract_networks(base.prompt)[1]:
            msg = f"{axis.which}: Lora weight varies the first <lora:name:weight> tag, and the prompt has none"
            raise ValueError(msg)
    elif label == "VAE":
        _confirm_files(axis, "vae", skip=("", "none", "automatic", "auto"))
    elif label == "Checkpoint name":
        from ..engine.models import resolve_model

        for value in axis.values:
            try:
                resolve_model(value, base.allow_pickle)
            except ValueError as error:
                msg = f"{axis.which}: Checkpoint name value '{value}': {error}"
                raise ValueError(msg) from None


def _confirm_files(axis: AxisValues, kind: str, skip: tuple[str, ...]) -> None:
    """Every value names a file or folder, or a model in the models folder (``library``)."""
    from pathlib import Path

    from .. import library

    for value in axis.values:
        if value.lower() in skip or Path(value).expanduser().exists() or library.find_model(kind, value):
            continue
        msg = f"{axis.which}: {axis.axis.label} value '{value}': {library.not_found_message(kind, value)}"
        raise ValueError(msg)


def _cell_request(base: PaintRequest, axes: list[AxisValues], index: Index) -> PaintRequest:
    request = base
    for axis in axes:
        i = index["xyz".index(axis.which)]
        try:
            request = request.replace(**axis.axis.changes(request, axis.values[i], axis.values)).validate()
        except (ValueError, TypeError) as error:
            msg = f"{axis.which}: {axis.axis.label} value '{axis.texts[i]}': {error}"
            raise ValueError(msg) from None
    return request


def _run_order(axes: list[AxisValues], shape: tuple[int, int, int]) -> list[Index]:
    """Cells in painting order: loops nested by axis cost, costliest outermost (ties: z, then y, then x, as A1111)."""
    cost = {axis.which: axis.axis.cost for axis in axes}
    loops = sorted("zyx", key=lambda which: -cost.get(which, 0.0))
    order: list[Index] = []

    def walk(depth: int, index: dict[str, int]) -> None:
        if depth == 3:
            order.append((index["x"], index["y"], index["z"]))
            return
        which = loops[depth]
        for i in range(shape["xyz".index(which)]):
            walk(depth + 1, {**index, which: i})

    walk(0, {})
    return order


def pasted_plot(base: PaintRequest, specs: Mapping[str, str]) -> tuple[dict[str, str], str]:
    """A pasted grid's axes when this plot can be painted here; else none, and a line saying why.

    A grid's generation data is its first cell's, so without the plot the cell paints that first picture (A1111's
    grid of checkpoints we do not have, or an axis of an extension, still gives its first picture).
    """
    try:
        plan(base, specs)
    except ValueError as error:
        reason = str(error).split(" (allowed")[0]
        reason = reason if len(reason) <= 110 else reason[:109] + "…"
        return {}, f"X/Y/Z plot not painted ({reason}); painted the grid's first picture"
    return dict(specs), ""
