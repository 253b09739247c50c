"""The panel's ControlNet section: one tab per unit, as sd-webui-controlnet lays a unit out, and *preview map*.

Each tab holds a unit's picture (uploaded, kept once in the output folder as ``control-HASH.png`` as the init
picture is, so a recipe names a real file), its effective region mask (region_mask.py), Enable, the preprocessor
("module") with its own sliders, the model (the models folder's ``ControlNet/``), weight, guidance start/end, control
and resize modes and Pixel Perfect. The section is the ``controlnet`` option's control: its `value` is the enabled
units as sd-webui-controlnet's API dicts. The module names and sliders are plain data (``engine.control.modules``,
no torch); *preview map* runs the unit's preprocessor through ``engine.control.unit_maps`` at the size the panel
paints and shows the detected map.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import numpy as np
from PIL import Image

from .. import library
from ..engine.control.apply import max_units
from ..painting.store import save_input
from ..recipe.control_names import CONTROL_MODES, RESIZE_MODES, UNION_CONTROL_TYPES, UNKNOWN_UNION_TYPE
from ..recipe.control_units import ControlUnit, read_units, unit_from_dict, weights_text
from ..recipe.result import png_bytes
from .controls import Controls, css_class, set_tooltip
from .images import last_uploaded_picture, loaded_picture
from .region_mask import RegionMask

SLIDERS = ("processor_res", "threshold_a", "threshold_b")
"""The preprocessor's sliders, in the unit's field names; a module without one leaves it at -1 (its default)."""
NO_MODEL = "None"
THUMB = 128
_STYLE = {"description_width": "8em"}


def module_names() -> list[str]:
    """The preprocessors a unit offers: the built-in ones, those that need annotator weights, then IP-Adapter's."""
    from ..engine.control.ip_adapter_files import MODULE_ENCODERS
    from ..engine.control.modules import MODULES, NEEDS_WEIGHTS

    built_in = [name for name in MODULES if name != "inpaint"]  # "inpaint" is inpaint_global_harmonious's name
    return built_in + sorted(name for name in NEEDS_WEIGHTS if name not in MODULES) + list(MODULE_ENCODERS)


def model_names() -> list[str]:
    """``None`` and the ControlNet models in the models folder's ``ControlNet/`` (files and diffusers folders)."""
    return [NO_MODEL, *dict.fromkeys(model.name for model in library.list_models("controlnet"))]


def _sliders_of(module: str) -> dict[str, Any]:
    """The module's slider specs by field name (None where it has none; all None for a module not built in)."""
    from ..engine.control.modules import ALIASES, MODULES

    found = MODULES.get(ALIASES.get(module, module).lower())
    if found is None:
        return dict.fromkeys(SLIDERS)
    return {"processor_res": found.resolution, "threshold_a": found.threshold_a, "threshold_b": found.threshold_b}


def _block_weights_box() -> widgets.Text:
    """The unit's per-block weights (``advanced_weighting``) as text, ``[1, 0.5, …]``; empty: none."""
    box = widgets.Text(value="", description="Block Weights", placeholder="[1, 0.5, …]")
    box.add_class(css_class("cn-block-weights"))
    blocks = "13 on SD1.5, 10 on SDXL; IP-Adapter: 16 on SD1.5, 11 on SDXL"
    set_tooltip(box, f"Per-block weights in place of Control Weight, one per block ({blocks})")
    return box


def _dropdown(options: list[str], value: str, description: str, css: str, tip: str) -> widgets.Dropdown:
    widget = widgets.Dropdown(options=options, value=value, description=description, style=dict(_STYLE))
    widget.add_class(css_class(f"cn-{css}"))
    set_tooltip(widget, tip)
    return widget


def _slider(value: float, low: float, high: float, step: float, description: str, css: str) -> widgets.FloatSlider:
    widget = widgets.FloatSlider(
        value=value, min=low, max=high, step=step, description=description, continuous_update=False, style=dict(_STYLE)
    )
    widget.add_class(css_class(f"cn-{css}"))
    return widget


def _choose(dropdown: widgets.Dropdown, value: str) -> None:
    """Select `value`, adding it first when it is not offered (a model or module named by a pasted recipe)."""
    if value not in dropdown.options:
        dropdown.options = (*dropdown.options, value)
    dropdown.value = value


class UnitTab(widgets.VBox):
    """One ControlNet unit's controls.

    Parameters
    ----------
    index
        The unit's number (0 for ``ControlNet 0``).
    folder
        Returns the output folder, where an uploaded picture is kept.
    size
        Returns the size the panel paints (width, height), which *preview map* prepares the map for.
    """

    def __init__(self, index: int, folder: Callable[[], Path], size: Callable[[], tuple[int, int]]) -> None:
        self.index, self.folder, self.size = index, folder, size
        self.image: Image.Image | None = None
        self.path: Path | None = None
        self.detected: np.ndarray | None = None
        self.enable = widgets.Checkbox(value=False, description="Enable", indent=False)
        self.enable.add_class(css_class("cn-enable"))
        self.pixel_perfect = widgets.Checkbox(value=False, description="Pixel Perfect", indent=False)
        self.pixel_perfect.add_class(css_class("cn-pixel-perfect"))
        set_tooltip(self.pixel_perfect, "Pick the processor resolution from the size painted")
        self.upload = widgets.FileUpload(accept="image/*", multiple=False, description="image")
        self.upload.add_class(css_class("cn-upload"))
        set_tooltip(self.upload, "The unit's picture: a photo to preprocess, or a ready map with module none")
        self.clear = widgets.Button(description="clear", icon="times", layout=widgets.Layout(width="auto"))
        self.clear.add_class(css_class("cn-clear"))
        self.thumb = widgets.Image(format="png", width=str(THUMB), layout=widgets.Layout(display="none"))
        self.thumb.add_class(css_class("cn-image"))
        self.about, self.error = widgets.HTML(value=""), widgets.HTML(value="")
        self.error.add_class(css_class("cn-error"))
        modules = module_names()
        self.module = _dropdown(modules, "none", "Preprocessor", "module", "The preprocessor that makes the map")
        self.model = _dropdown(model_names(), NO_MODEL, "Model", "model", "A ControlNet model from ControlNet/")
        self.refresh = widgets.Button(icon="refresh", description="", layout=widgets.Layout(width="3em"))
        set_tooltip(self.refresh, "List the models in the models folder's ControlNet/ again")
        union_tip = "A union (ProMax) model's control type; Unknown takes it from the preprocessor"
        types = [UNKNOWN_UNION_TYPE, *UNION_CONTROL_TYPES]
        self.union_control_type = _dropdown(types, UNKNOWN_UNION_TYPE, "Union Type", "union-type", union_tip)
        self.weight = _slider(1.0, 0.0, 2.0, 0.05, "Control Weight", "weight")
        self.advanced_weighting = _block_weights_box()
        self.guidance_start = _slider(0.0, 0.0, 1.0, 0.01, "Starting Step", "guidance-start")
        self.guidance_end = _slider(1.0, 0.0, 1.0, 0.01, "Ending Step", "guidance-end")
        self.control_mode = _dropdown(list(CONTROL_MODES), "Balanced", "Control Mode", "control-mode", "")
        self.resize_mode = _dropdown(list(RESIZE_MODES), "Crop and Resize", "Resize Mode", "resize-mode", "")
        self.sliders = {name: _slider(0.0, 0.0, 1.0, 1.0, name, name.replace("_", "-")) for name in SLIDERS}
        self.preview_button = widgets.Button(description="preview map", icon="eye", layout=widgets.Layout(width="auto"))
        self.preview_button.add_class(css_class("cn-preview"))
        set_tooltip(self.preview_button, "Run the preprocessor on the picture and show the map the ControlNet sees")
        self.map = widgets.Image(format="png", width=str(2 * THUMB), layout=widgets.Layout(display="none"))
        self.map.add_class(css_class("cn-map"))
        self.region = RegionMask(index, folder, self.say)
        super().__init__(self._rows())
        self.add_class(css_class("cn-unit"))
        self.upload.observe(self._uploaded, names="value")
        self.clear.on_click(lambda _: self.use(None))
        self.refresh.on_click(lambda _: self.refresh_models())
        self.preview_button.on_click(lambda _: self.preview_map())
        self.module.observe(self._module_changed, names="value")
        self.pixel_perfect.observe(self._module_changed, names="value")
        self._module_changed()

    def _rows(self) -> list[widgets.Widget]:
        """The tab's rows, as the extension lays a unit out."""
        return [
            widgets.HBox([self.upload, self.clear, self.enable, self.pixel_perfect]),
            widgets.HBox([self.thumb, self.map]),
            self.about,
            self.region,
            widgets.HBox([self.module, self.preview_button]),
            widgets.HBox([self.model, self.refresh, self.union_control_type]),
            widgets.HBox([self.weight, self.advanced_weighting]),
            widgets.HBox([self.guidance_start, self.guidance_end]),
            *self.sliders.values(),
            widgets.HBox([self.control_mode, self.resize_mode]),
            self.error,
        ]

    # -- the picture ----------------------------------------------------------------------------------------------

    def say(self, text: str) -> None:
        """Show a one-line error in the tab; empty clears it."""
        self.error.value = f'<span style="color:#c62828">⚠ {html.escape(text)}</span>' if text else ""

    def use(self, image: Image.Image | None, path: Path | None = None) -> None:
        """Make `image` the unit's picture (kept as ``control-HASH.png`` unless `path` is its file); None clears it.

        A new picture switches the unit on, as sd-webui-controlnet does on upload.
        """
        if image is not None and path is None:
            try:
                path = Path(save_input(image, self.folder(), "control")["path"])
            except OSError as error:
                self.say(f"controlnet: could not keep the picture in {self.folder()} ({error})")
                return
        self.image, self.path, self.detected = image, path, None
        self.map.layout.display = "none"
        self.say("")
        if image is None:
            self.thumb.layout.display, self.about.value = "none", ""
            return
        thumb = image.convert("RGB")
        thumb.thumbnail((THUMB, THUMB))
        with self.thumb.hold_sync():
            self.thumb.value, self.thumb.layout.display = png_bytes(thumb), ""
        where = f" · {path.name}" if path is not None else ""
        self.about.value = f"<small>{image.width}×{image.height}{where}</small>"
        self.enable.value = True

    def _uploaded(self, change: Any = None) -> None:
        try:
            image = last_uploaded_picture(self.upload)
        except ValueError as error:
            self.say(str(error).replace("init:", f"controlnet unit {self.index}:", 1))
            return
        if image is None:
            return
        self.use(image)

    def _load_image(self, image: Any) -> None:
        """A loaded unit's picture: a file path (shown when it exists), a PIL image or an array."""
        try:
            self.use(*loaded_picture(image))
        except OSError:
            self.use(None)
            self.say(f"controlnet unit {self.index}: cannot read its picture {str(image)!r}; upload it again")

    # -- the settings -----------------------------------------------------------------------------------------------

    def refresh_models(self) -> None:
        """Offer the models now in the folder (the chosen one stays chosen)."""
        chosen = self.model.value
        self.model.options = model_names()
        _choose(self.model, chosen)

    def _module_changed(self, change: Any = None) -> None:
        """Show the module's own sliders with its labels, ranges and defaults (as sd-webui-controlnet does)."""
        specs = _sliders_of(self.module.value)
        for name, slider in self.sliders.items():
            spec = specs[name]
            hidden = spec is None or (name == "processor_res" and self.pixel_perfect.value)
            slider.layout.display = "none" if hidden else ""
            if spec is None or change is not None and change["owner"] is self.pixel_perfect:
                continue
            whole = isinstance(spec.minimum, int) and isinstance(spec.maximum, int)  # declared 1..255, not 1.0..8.0
            with slider.hold_sync():
                slider.max = max(slider.max, spec.maximum)
                slider.min, slider.max = spec.minimum, spec.maximum
                slider.step, slider.readout_format = (1.0, ".0f") if whole else (0.01, ".2f")
                slider.value, slider.description = spec.default, spec.label

    def fields(self) -> dict[str, Any]:
        """The unit's settings with sd-webui-controlnet's API names (no image); -1 for a slider the module lacks."""
        values = {
            name: getattr(self, name).value
            for name in ("module", "model", "weight", "guidance_start", "guidance_end", "control_mode", "resize_mode")
        }
        values["union_control_type"] = self.union_control_type.value
        values["pixel_perfect"] = bool(self.pixel_perfect.value)
        values["advanced_weighting"] = self.advanced_weighting.value.strip() or None
        for name, slider in self.sliders.items():
            values[name] = float(slider.value) if slider.layout.display != "none" else -1
        return values

    def unit(self) -> dict[str, Any] | None:
        """The unit as an API dict with its picture (its file when kept), or None when it is not enabled.

        Raises
        ------
        ValueError
            When the unit is enabled without a picture.
        """
        if not self.enable.value:
            return None
        if self.image is None:
            msg = f"controlnet: unit {self.index} is enabled but has no picture; upload one or untick Enable"
            raise ValueError(msg)
        image = str(self.path) if self.path is not None else self.image
        mask = {} if self.region.path is None else {"effective_region_mask": str(self.region.path)}
        return {"enabled": True, "image": image, **self.fields(), **mask}

    def set_unit(self, unit: ControlUnit | None) -> None:
        """Show `unit`'s settings and picture; None resets the tab (off, no picture, defaults)."""
        given, unit = unit is not None, unit if unit is not None else ControlUnit()
        _choose(self.module, unit.module)
        known = unit.model in self.model.options or not unit.model_hash
        _choose(self.model, unit.model if known else f"{unit.model} [{unit.model_hash}]")  # keep a recipe's hash
        for name in ("weight", "guidance_start", "guidance_end", "control_mode", "resize_mode", "union_control_type"):
            getattr(self, name).value = getattr(unit, name)
        self.pixel_perfect.value = unit.pixel_perfect
        weights = unit.advanced_weighting
        self.advanced_weighting.value = "" if weights is None else weights_text(weights)
        self._module_changed()
        for name, slider in self.sliders.items():
            if float(getattr(unit, name)) != -1:
                slider.value = float(getattr(unit, name))
        self._load_image(unit.image)
        self.region.load(unit.effective_region_mask)
        self.enable.value = given  # a unit without its picture stays on: painting it names what is missing

    # -- preview map ----------------------------------------------------------------------------------------------

    def preview_map(self) -> np.ndarray | None:
        """Run the unit's preprocessor on its picture for the size painted; show and return the detected map."""
        if self.image is None:
            self.say(f"controlnet unit {self.index}: no picture to preview; upload one")
            return None
        from ..engine.control.unit_maps import unit_map

        picture = self.image if self.image.mode in ("RGB", "RGBA", "L") else self.image.convert("RGB")
        width, height = self.size()
        try:
            made = unit_map(unit_from_dict(self.fields()), np.asarray(picture), width, height)
        except ValueError as error:
            self.say(str(error))
            return None
        except ImportError:  # OpenCV is an extra
            self.say("controlnet: the preprocessors need OpenCV: pip install 'jupyter_sd[controlnet]'")
            return None
        self.detected = made.detected
        shown = Image.fromarray(np.ascontiguousarray(made.detected[:, :, :3]).astype(np.uint8))
        shown.thumbnail((2 * THUMB, 2 * THUMB))
        with self.map.hold_sync():
            self.map.value, self.map.layout.display = png_bytes(shown), ""
        self.say("")
        return made.detected


class ControlSection(widgets.Tab):
    """The ControlNet tabs, which become the ``controlnet`` option's control in `controls`.

    Parameters
    ----------
    controls
        The panel's controls: the section replaces their ``controlnet`` text box and reads their size.
    folder
        Returns the output folder, where uploaded pictures are kept.
    units
        How many tabs to show: by default the units a request may have (3, or ``%paint config controlnet_units=N``,
        as sd-webui-controlnet's unit number setting); a loaded recipe with more units adds tabs.
    """

    def __init__(self, controls: Controls, folder: Callable[[], Path], units: int | None = None) -> None:
        self.controls, self.folder = controls, folder
        self.units: list[UnitTab] = []
        super().__init__()
        self.add_class(css_class("controlnet-units"))
        for _ in range(max_units() if units is None else units):
            self._add_tab()
        old = controls.widgets.get("controlnet")
        controls.widgets["controlnet"] = self
        if old is not None:
            old.close()
        self.value = controls.defaults.controlnet

    def _add_tab(self) -> None:
        tab = UnitTab(len(self.units), self.folder, self.target_size)
        self.units.append(tab)
        self.children = tuple(self.units)
        self.set_title(tab.index, f"Unit {tab.index}")

    def target_size(self) -> tuple[int, int]:
        """The size the panel paints: the size row's, else the model's native size once known, else 512×512."""
        width, height = self.controls.size.get()
        if width is None or height is None:
            return self.controls.size.native or (512, 512)
        return width, height

    @property
    def value(self) -> tuple[dict[str, Any], ...]:
        """The enabled units as API dicts (none while the section is switched off)."""
        if not self.controls.section_on("controlnet"):
            return ()
        return tuple(unit for unit in (tab.unit() for tab in self.units) if unit is not None)

    @value.setter
    def value(self, units: Any) -> None:
        units = read_units(units)
        while len(self.units) < len(units):
            self._add_tab()
        for i, tab in enumerate(self.units):
            tab.set_unit(units[i] if i < len(units) else None)
