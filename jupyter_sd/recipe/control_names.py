"""sd-webui-controlnet's names for a unit's resize and control modes, with the aliases its API accepts (no torch)."""

from __future__ import annotations

RESIZE_MODES = ("Just Resize", "Crop and Resize", "Resize and Fill")
"""In sd-webui-controlnet's order: its API also takes them as 0, 1, 2."""

_RESIZE_ALIASES = {
    "inner fit (scale to fit)": "Crop and Resize",
    "scale to fit (inner fit)": "Crop and Resize",
    "outer fit (shrink to fit)": "Resize and Fill",
    "envelope (outer fit)": "Resize and Fill",
}

CONTROL_MODES = ("Balanced", "My prompt is more important", "ControlNet is more important")
"""In sd-webui-controlnet's order: its API also takes them as 0, 1, 2."""


def _named(value: object, names: tuple[str, ...], aliases: dict[str, str], what: str) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and int(value) == value:
        if 0 <= int(value) < len(names):
            return names[int(value)]
    text = str(value).strip()
    for name in names:
        if text.lower() == name.lower():
            return name
    if text.lower() in aliases:
        return aliases[text.lower()]
    raise ValueError(f"controlnet: unknown {what} {text!r}; one of: {', '.join(names)} (or 0-{len(names) - 1})")


def resize_mode_name(value: object) -> str:
    """``Just Resize`` / ``Crop and Resize`` / ``Resize and Fill`` from a name, an old alias or 0-2."""
    return _named(value, RESIZE_MODES, _RESIZE_ALIASES, "resize mode")


def control_mode_name(value: object) -> str:
    """``Balanced`` / ``My prompt is more important`` / ``ControlNet is more important`` from a name or 0-2."""
    return _named(value, CONTROL_MODES, {}, "control mode")


UNION_CONTROL_TYPES = (
    "OpenPose",
    "Depth",
    "Soft Edge",
    "Hard Edge",
    "Normal Map",
    "Segmentation",
    "Tile",
    "Inpaint",
)
"""sd-webui-controlnet's "Union Control Type" names, in xinsir's order: a name's index is diffusers' ``control_mode``
(0 openpose … 7 repaint; the first union model knows 0-5, ProMax all 8)."""

UNKNOWN_UNION_TYPE = "Unknown"
"""The extension's value for "take it from the module" (no type chosen)."""

_UNION_ALIASES = {
    "unknown": UNKNOWN_UNION_TYPE,
    "auto": UNKNOWN_UNION_TYPE,
    "openpose": "OpenPose",
    "pose": "OpenPose",
    "softedge": "Soft Edge",
    "scribble": "Soft Edge",
    "hed": "Soft Edge",
    "canny": "Hard Edge",
    "lineart": "Hard Edge",
    "mlsd": "Hard Edge",
    "normal": "Normal Map",
    "normalmap": "Normal Map",
    "segment": "Segmentation",
    "seg": "Segmentation",
    "blur": "Tile",
    "repaint": "Inpaint",
}
"""The extension's own tags (its ``from_str``) and ComfyUI's type names."""


def union_control_type_name(value: object) -> str:
    """A union unit's control type from its name, a tag (``canny``, ``softedge`` …), ``Unknown`` or 0-7."""
    return _named(value, UNION_CONTROL_TYPES, _UNION_ALIASES, "union control type")
