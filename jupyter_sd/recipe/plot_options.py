"""What a plot is in a recipe: the ``--x/--y/--z`` options and A1111's grid keys (``Script: X/Y/Z plot, X Type …``).

They describe a plot, not one picture, so they are not `PaintRequest` fields; declared here once for the parser
(`options`), the pasted-data reader and `plots/`.
"""

from __future__ import annotations

from typing import Any

PLOT_OPTIONS: dict[str, str] = {
    "x": "X/Y/Z plot: an axis as 'Name: values', e.g. 'Steps: 10, 20, 30' (one picture per value; see docs/plots.md).",
    "y": "X/Y/Z plot: the Y axis, e.g. 'CFG scale: 3-9 [4]'.",
    "z": "X/Y/Z plot: the Z axis (one sub-grid per value), e.g. 'Sampler: Euler a, DPM++ 2M'.",
}
"""The plot options: they describe a plot, not one picture, so they are not `PaintRequest` fields. Declared here
once; `options.build_parser` adds ``--x/--y/--z`` from this for ``%%paint``, ``%paint`` and ``jupyter-sd``."""


def split_plot_options(options: dict[str, Any]) -> dict[str, str]:
    """Take the plot options (``x``, ``y``, ``z``) out of an options dict; return those that were given."""
    given = {name: options.pop(name, None) for name in PLOT_OPTIONS}
    return {name: value for name, value in given.items() if value not in (None, "")}


SCRIPT_TITLE = "X/Y/Z plot"
"""A1111's ``Script`` value in a grid's generation data."""


def plot_infotext_keys() -> tuple[str, ...]:
    """The grid's own infotext keys: ``Script``, ``X Type``, ``X Values``, ``Fixed X Values``, … ."""
    return ("Script",) + tuple(
        f"{prefix}{which.upper()} {part}"
        for which in PLOT_OPTIONS
        for prefix, part in (("", "Type"), ("", "Values"), ("Fixed ", "Values"))
    )


def plot_from_params(params: dict[str, str]) -> dict[str, str]:
    """The axes of a pasted X/Y/Z grid's generation data (``Script: X/Y/Z plot, X Type: Steps, X Values: …``).

    Fixed seed values (``Fixed X Values``) win over the ``-1`` typed, so the same grid is painted again.
    """
    if params.get("Script", "").strip() != SCRIPT_TITLE:
        return {}
    specs = {}
    for which in PLOT_OPTIONS:
        name = which.upper()
        kind, values = params.get(f"{name} Type"), params.get(f"Fixed {name} Values") or params.get(f"{name} Values")
        if kind and values:
            specs[which] = f"{kind}: {values}"
    return specs


# -- axes ----------------------------------------------------------------------------------------------------------
