"""The panel's option controls, generated from `PaintRequest`'s fields (STYLE P3).

Each field's metadata gives the widget: choices make a Dropdown, a range makes a slider whose limits are the
validation range (ipywidgets clamps a value above ``max``, so the two must agree), a bool makes a Checkbox. Only API
ipywidgets 7.7 (Colab) and 8 share is used. Every control carries the CSS class ``jupyter-sd-<field>``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import ipywidgets as widgets

from .. import library
from ..recipe.control_units import units_text
from ..recipe.request import PaintRequest
from ..recipe.values import field_kind, option_fields

SIZES = ("512x512", "512x768", "768x512", "768x768", "1024x1024", "832x1216", "1216x832", "256x256")
"""Common sizes offered besides the model's native one and "custom"."""
NATIVE, CUSTOM = "native", "custom"

MAIN_FIELDS = ("prompt", "negative_prompt", "steps", "guidance", "seed", "sampler", "schedule", "n", "model", "preview")
"""Fields shown up front (width and height are the size row); every other field goes under "More options"."""
SECTIONS = {
    "img2img": ("init", "strength", "resize_mode", "outpaint", "outpaint_blend", "outpaint_noise"),
    "inpaint": ("mask", "mask_blur", "inpaint_area", "padding", "masked_content", "invert_mask"),
    "hires": (
        "hires",
        "hires_size",
        "hires_steps",
        "hires_denoise",
        "hires_upscaler",
        "hires_sampler",
        "hires_schedule",
        "hires_guidance",
        "hires_prompt",
    ),
    "controlnet": ("controlnet",),
}
"""Fields shown in a section of their own, hidden under a toggle until used; while a section is off its fields
keep their declared defaults in the request (what the panel shows is what it paints)."""
DEFAULT_HIRES_FACTOR = 2.0
"""The upscale factor the hires section starts from when switched on (A1111's default)."""
_SIZE_FIELDS = ("width", "height")
_SECTION_OF = {name: section for section, names in SECTIONS.items() for name in names}
_LABELS = {
    "negative_prompt": "Negative",
    "n": "Images",
    "preview": "Preview",
    "guidance": "CFG scale",
    "schedule": "Schedule",
    "init": "Init image",
    "strength": "Denoising",
    "resize_mode": "Resize mode",
    "hires": "Upscale by",
    "hires_size": "Resize to",
    "masked_content": "Masked content",
    "inpaint_area": "Inpaint area",
    "padding": "Padding",
    "invert_mask": "Invert mask (repaint the black part)",
    "hires_steps": "Hires steps",
    "hires_denoise": "Denoising",
    "hires_upscaler": "Upscaler",
    "hires_sampler": "Hires sampler",
    "hires_schedule": "Hires schedule",
    "hires_guidance": "Hires CFG",
    "hires_prompt": "Hires prompt",
}
_SLIDER_SPAN = 10_000
"""An int range wider than this gets a bounded text box instead of a slider (the seed)."""
_DESCRIPTION = {"description_width": "7em"}


def label(f: dataclasses.Field) -> str:
    """The control's label: the A1111 name where the option has one (``CFG scale``), else the field name."""
    return _LABELS.get(f.name) or f.metadata.get("infotext") or f.name.replace("_", " ").capitalize()


def css_class(name: str) -> str:
    """The CSS class a control for option `name` carries."""
    return f"jupyter-sd-{name.replace('_', '-')}"


def set_tooltip(widget: widgets.Widget, text: str) -> None:
    """Set a hover text: ``tooltip`` in ipywidgets 8, ``description_tooltip`` in 7."""
    name = "tooltip" if widget.has_trait("tooltip") else "description_tooltip"
    if widget.has_trait(name):
        setattr(widget, name, text)


def _decimals(step: float) -> int:
    text = f"{step:g}"
    return len(text.split(".")[1]) if "." in text else 0


def control_for(f: dataclasses.Field, value: Any) -> widgets.Widget:
    """Make the widget for one request field, its limits and choices taken from the field's metadata."""
    meta, kind = f.metadata, field_kind(f)
    common: dict[str, Any] = {"description": label(f), "style": dict(_DESCRIPTION)}
    if f.name in ("prompt", "negative_prompt"):
        widget = widgets.Textarea(
            value=value or "",
            placeholder=meta["help"],
            rows=3 if f.name == "prompt" else 2,
            layout=widgets.Layout(width="98%"),
            **common,
        )
    elif kind == "tuple":  # ControlNet units, one a line, until they have a section of their own
        placeholder = "Module: canny, Model: NAME, Weight: 1, Image: FILE (one unit a line)"
        widget = widgets.Textarea(value=units_text(value), placeholder=placeholder, rows=2, **common)
    elif meta["choices"]:
        options = list(meta["choices"])
        if meta.get("models"):  # and the files of that kind in the models folder (the upscaler models)
            options += [model.name for model in library.list_models(meta["models"]) if model.name not in options]
        if value not in options:  # a name from a pasted recipe, say
            options.append(value)
        widget = widgets.Dropdown(options=options, value=value, **common)
    elif kind == "bool":
        widget = widgets.Checkbox(value=bool(value), indent=False, description=label(f))
    elif kind == "int" and meta["range"]:
        low, high = (int(x) for x in meta["range"])
        value = low if value is None else int(value)
        if high - low <= _SLIDER_SPAN:
            step = int(meta["step"] or 1)
            widget = widgets.IntSlider(value=value, min=low, max=high, step=step, continuous_update=False, **common)
        else:
            widget = widgets.BoundedIntText(value=value, min=low, max=high, **common)
    elif kind == "float" and meta["range"]:
        low, high = (float(x) for x in meta["range"])
        step = float(meta["step"] or 0.01)
        widget = widgets.FloatSlider(
            value=float(value),
            min=low,
            max=high,
            step=step,
            readout_format=f".{_decimals(step)}f",
            continuous_update=False,
            **common,
        )
    elif kind == "int":
        widget = widgets.IntText(value=int(value or 0), **common)
    elif kind == "float":
        widget = widgets.FloatText(value=float(value or 0.0), **common)
    else:
        widget = widgets.Text(
            value=value or "", placeholder=_first_sentence(meta["help"]), layout=widgets.Layout(width="60%"), **common
        )
    set_tooltip(widget, meta["help"])
    widget.add_class(css_class(f.name))
    return widget


def _first_sentence(text: str) -> str:
    return text.split(". ")[0].rstrip(".")


class SizeControl(widgets.HBox):
    """A Dropdown of common sizes (the model's native one first) plus width/height sliders for "custom"."""

    def __init__(self, width: int | None, height: int | None) -> None:
        fields = {f.name: f for f in option_fields()}
        low, high = fields["width"].metadata["range"]
        self._choices = [s for s in SIZES if all(low <= int(x) <= high for x in s.split("x"))]
        self.dropdown = widgets.Dropdown(
            options=self._options("model's native"),
            description="Size",
            style=dict(_DESCRIPTION),
        )
        set_tooltip(self.dropdown, "Image size; 'custom' shows width and height (multiples of 8).")
        self.dropdown.add_class(css_class("size"))
        self.native: tuple[int, int] | None = None
        start = 512 if low <= 512 <= high else int(low)
        self.width = control_for(fields["width"], width or start)
        self.height = control_for(fields["height"], height or start)
        self.width.description, self.height.description = "W", "H"
        for slider in (self.width, self.height):
            slider.style = {"description_width": "1.5em"}
        super().__init__([self.dropdown, self.width, self.height])
        self.dropdown.observe(self._toggle, names="value")
        self.set(width, height)

    def _options(self, native: str) -> list[tuple[str, str]]:
        return [(native, NATIVE)] + [(s.replace("x", "×"), s) for s in self._choices] + [(CUSTOM, CUSTOM)]

    def _toggle(self, change: Any = None) -> None:
        display = "" if self.dropdown.value == CUSTOM else "none"
        self.width.layout.display = self.height.layout.display = display

    def set_native(self, width: int, height: int) -> None:
        """Show the model's native size in the first choice's label once it is known."""
        self.native = (width, height)
        value = self.dropdown.value
        with self.dropdown.hold_sync():
            self.dropdown.options = self._options(f"native ({width}×{height})")
            self.dropdown.value = value

    def set(self, width: int | None, height: int | None) -> None:
        """Select a size: None for native, a listed size, or custom width and height."""
        if width is None or height is None or (width, height) == self.native:
            self.dropdown.value = NATIVE
        elif f"{width}x{height}" in self._choices:
            self.dropdown.value = f"{width}x{height}"
        else:
            self.width.value, self.height.value = width, height
            self.dropdown.value = CUSTOM
        self._toggle()

    def get(self) -> tuple[int | None, int | None]:
        """The chosen size as (width, height); (None, None) for the model's native size."""
        value = self.dropdown.value
        if value == NATIVE:
            return None, None
        if value == CUSTOM:
            return int(self.width.value), int(self.height.value)
        width, height = value.split("x")
        return int(width), int(height)


class SeedControl(widgets.HBox):
    """The seed box with "random" (-1) and "reuse last" buttons."""

    def __init__(self, f: dataclasses.Field, value: int) -> None:
        self.box = control_for(f, value)
        self.box.layout = widgets.Layout(width="16em")
        self.random = widgets.Button(description="random", icon="random", layout=widgets.Layout(width="auto"))
        self.random.add_class("jupyter-sd-seed-random")
        set_tooltip(self.random, "Seed -1: pick a new one each run (the seed used is recorded)")
        self.last = widgets.Button(description="reuse last", icon="recycle", layout=widgets.Layout(width="auto"))
        self.last.add_class("jupyter-sd-seed-last")
        self.last.disabled = True
        self.last_seed: int | None = None
        self.random.on_click(lambda _: setattr(self.box, "value", -1))
        self.last.on_click(self._reuse)
        super().__init__([self.box, self.random, self.last])

    def _reuse(self, _: Any = None) -> None:
        if self.last_seed is not None:
            self.box.value = self.last_seed

    def remember(self, seed: int) -> None:
        """Keep the seed of the last finished run for "reuse last"."""
        self.last_seed = seed
        self.last.disabled = False
        set_tooltip(self.last, f"Seed {seed}, the last run's")


class Section:
    """A toggle that switches a group of options on (showing their controls) or off (their defaults apply)."""

    def __init__(self, name: str, description: str, tip: str) -> None:
        self.name = name
        self.toggle = widgets.ToggleButton(
            value=False, description=description, icon="chevron-right", layout=widgets.Layout(width="auto")
        )
        self.toggle.add_class(css_class(f"{name}-toggle"))
        set_tooltip(self.toggle, tip)
        self.box = widgets.VBox(layout=widgets.Layout(display="none", border="1px solid #ddd", padding="4px"))
        self.box.add_class(css_class(f"{name}-section"))
        self.toggle.observe(self._show, names="value")

    @property
    def on(self) -> bool:
        """Whether the section's options apply."""
        return bool(self.toggle.value)

    def _show(self, change: Any = None) -> None:
        self.box.layout.display = "" if self.toggle.value else "none"
        self.toggle.icon = "chevron-down" if self.toggle.value else "chevron-right"


class Controls:
    """Every option's control, built from the request's fields; reads a request out and loads one in."""

    def __init__(self, defaults: PaintRequest) -> None:
        self.defaults = defaults
        self.fields = {f.name: f for f in option_fields()}
        self.widgets: dict[str, widgets.Widget] = {}
        self.seed = SeedControl(self.fields["seed"], defaults.seed)
        self.size = SizeControl(defaults.width, defaults.height)
        for name, f in self.fields.items():
            if name == "seed":
                self.widgets[name] = self.seed.box
            elif name not in _SIZE_FIELDS:
                self.widgets[name] = control_for(f, getattr(defaults, name))
        self.widgets["width"], self.widgets["height"] = self.size.width, self.size.height
        for name in _SECTION_OF:
            widget = self.widgets.get(name)
            if widget is not None and not isinstance(widget, widgets.Checkbox):
                widget.style = {"description_width": "9em"}
            if isinstance(widget, widgets.Text):
                widget.layout = widgets.Layout(width="90%")
        self.sections = {
            "img2img": Section("img2img", "img2img / inpaint", "Start from a picture: upload one or send one here"),
            "inpaint": Section("inpaint", "inpaint: paint a mask", "Repaint only where you paint over the picture"),
            "hires": Section("hires", "Hires fix", "Paint small, upscale, then denoise again at the bigger size"),
            "controlnet": Section("controlnet", "ControlNet", "Guide the picture with maps: edges, pose, depth"),
        }
        self.sections["inpaint"].toggle.observe(self._inpaint_needs_init, names="value")
        self.sections["img2img"].toggle.observe(self._one_mode, names="value")
        self.sections["hires"].toggle.observe(self._one_mode, names="value")
        self.open_used(defaults)

    def section_fields(self, section: str) -> list[str]:
        """The names of a section's fields that this request type has (in declaration order)."""
        return [name for name in SECTIONS[section] if name in self.fields]

    def section_on(self, section: str) -> bool:
        """Whether a section's options apply: it is switched on (inpaint also needs img2img on)."""
        on = self.sections[section].on
        return on and self.sections["img2img"].on if section == "inpaint" else on

    def open_used(self, request: PaintRequest) -> None:
        """Switch on each section where the request sets an option away from its declared default."""
        for section in SECTIONS:
            if any(getattr(request, n) != self.fields[n].default for n in self.section_fields(section)):
                self.sections[section].toggle.value = True
                if section == "inpaint":
                    self.sections["img2img"].toggle.value = True

    def _inpaint_needs_init(self, change: dict[str, Any]) -> None:
        if change["new"]:
            self.sections["img2img"].toggle.value = True

    def _one_mode(self, change: dict[str, Any]) -> None:
        """img2img and the hires fix exclude each other (hires is for text-to-image): one on turns the other off.

        Switching hires on with no factor and no size set starts from A1111's usual factor 2.
        """
        if not change["new"]:
            return
        img2img, hires = self.sections["img2img"], self.sections["hires"]
        other = hires if change["owner"] is img2img.toggle else img2img
        other.toggle.value = False
        if other is img2img and "hires" in self.widgets:
            factor, size = self.widgets["hires"], self.widgets.get("hires_size")
            if not factor.value and not (size is not None and size.value):
                factor.value = DEFAULT_HIRES_FACTOR

    def main_rows(self) -> list[widgets.Widget]:
        """The controls shown up front, two or three to a row."""
        w = self.widgets
        row = widgets.HBox
        return [
            w["prompt"],
            w["negative_prompt"],
            row([w["steps"], w["guidance"]]),
            self.seed,
            self.size,
            row([w["sampler"], w["schedule"]]),
            row([w["n"], w["preview"]]),
            w["model"],
        ]

    def more(self) -> widgets.Widget:
        """Every other option, in a collapsed "More options" section."""
        rest = [
            self.widgets[n]
            for n in self.fields
            if n not in MAIN_FIELDS and n not in _SIZE_FIELDS and n not in _SECTION_OF
        ]
        accordion = widgets.Accordion(children=[widgets.VBox(rest)], selected_index=None)
        accordion.set_title(0, "More options")
        return accordion

    def values(self) -> dict[str, Any]:
        """The options as the controls show them (the size row's; a section switched off: its fields' defaults)."""
        values = {name: widget.value for name, widget in self.widgets.items() if name not in _SIZE_FIELDS}
        values["width"], values["height"] = self.size.get()
        for section in SECTIONS:
            if not self.section_on(section):
                values.update({n: self.fields[n].default for n in self.section_fields(section)})
        return values

    def request(self) -> PaintRequest:
        """The request the controls describe, on top of the panel's defaults (not yet validated)."""
        return self.defaults.replace(**self.changes(self.values()))

    def changes(self, values: dict[str, Any]) -> dict[str, Any]:
        """The `values` the user set (those not the panel's defaults: the rest keep the family's)."""
        return {name: value for name, value in values.items() if value != getattr(self.defaults, name, None)}

    def load(self, request: PaintRequest, keep: tuple[str, ...] = ("n", "repeat")) -> None:
        """Put a request's settings into the controls (``keep`` names controls left as they are)."""
        for name, widget in self.widgets.items():
            if name in _SIZE_FIELDS or name in keep:
                continue
            value = getattr(request, name)
            if isinstance(widget, widgets.Dropdown) and value not in widget.options:
                if not self.fields[name].metadata.get("models"):
                    continue
                widget.options = (*widget.options, value)  # an upscaler model added to the folder since
            if isinstance(value, tuple) and isinstance(widget, widgets.Textarea):  # units, as text
                value = units_text(value)
            if value is not None:
                widget.value = value
        self.size.set(request.width, request.height)
        self.open_used(request)
