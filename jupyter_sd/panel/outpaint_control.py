"""The img2img section's *outpaint* control: pixels to add on each side, plus the blend band and the noise fill.

The four boxes are the one ``outpaint`` option, read and written as a cell writes it (``LEFT,RIGHT,TOP,BOTTOM``,
empty when every side is 0), so the panel's request, its recipe and a loaded recipe agree with ``--outpaint``.
Blend and noise are the generated controls of ``outpaint_blend`` and ``outpaint_noise``, shown beside them.
"""

from __future__ import annotations

import ipywidgets as widgets

from ..recipe.values import MAX_OUTPAINT, parse_margins
from .controls import css_class, set_tooltip

SIDES = ("left", "right", "top", "bottom")
"""In ``--outpaint``'s order."""


class OutpaintControl(widgets.VBox):
    """Four direction boxes (pixels, 0 to 2048) whose `value` is ``--outpaint``'s text, with blend and noise.

    Parameters
    ----------
    value
        The ``outpaint`` text to start from (``""``, ``"64"`` or ``"64,0,0,32"``).
    extras
        The controls shown under the directions (the blend slider and the noise checkbox).
    """

    def __init__(self, value: str = "", extras: tuple[widgets.Widget, ...] = ()) -> None:
        self.sides: dict[str, widgets.BoundedIntText] = {}
        for side in SIDES:
            box = widgets.BoundedIntText(
                value=0,
                min=0,
                max=MAX_OUTPAINT,
                step=8,
                description=side,
                style={"description_width": "3em"},
                layout=widgets.Layout(width="9em"),
            )
            box.add_class(css_class(f"outpaint-{side}"))
            set_tooltip(box, f"Pixels to add on the {side} (0 to {MAX_OUTPAINT}); the new border is painted")
            self.sides[side] = box
        title = widgets.HTML(value="<small>Outpaint: grow the picture by (pixels)</small>")
        super().__init__([title, widgets.HBox(list(self.sides.values())), *extras])
        self.add_class(css_class("outpaint"))
        self.value = value

    @property
    def value(self) -> str:
        """``LEFT,RIGHT,TOP,BOTTOM`` as ``--outpaint`` takes it; empty when no side grows."""
        sides = [int(self.sides[side].value) for side in SIDES]
        return ",".join(str(side) for side in sides) if any(sides) else ""

    @value.setter
    def value(self, text: str) -> None:
        sides = parse_margins(text) if str(text or "").strip() else (0, 0, 0, 0)
        for side, pixels in zip(SIDES, sides):
            self.sides[side].value = pixels
