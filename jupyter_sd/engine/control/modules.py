"""sd-webui-controlnet's preprocessor names ("Module"), their sliders and defaults, and what the others need.

A unit carries ``processor_res``, ``threshold_a`` and ``threshold_b``; what each means depends on the module (canny's
A and B are its low and high thresholds, blur's A its sigma …). As in sd-webui-controlnet, -1 (or None) takes the
module's default and a value the module does not use is ignored; a used value out of its slider's range is refused
(sd-webui-controlnet quietly resets it to the default).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Slider:
    """One of a preprocessor's sliders, as sd-webui-controlnet shows it."""

    label: str
    minimum: float
    maximum: float
    default: float


@dataclass(frozen=True)
class Module:
    """A built-in preprocessor: its sliders (None where the module ignores that value) and whether it takes a mask.

    ``fixed_res``: the module always works at this resolution unless Pixel Perfect sets it (shuffle's 512).
    ``annotator``: the module runs an annotator network whose weights live in ``ControlNet/annotators/``.
    """

    name: str
    resolution: Slider | None = None
    threshold_a: Slider | None = None
    threshold_b: Slider | None = None
    takes_mask: bool = False
    fixed_res: int | None = None
    annotator: bool = False


RESOLUTION = Slider("Resolution", 64, 2048, 512)

MODULES: dict[str, Module] = {
    m.name: m
    for m in (
        Module("none"),
        Module("canny", RESOLUTION, Slider("Low Threshold", 1, 255, 100), Slider("High Threshold", 1, 255, 200)),
        Module("invert"),
        Module("blur_gaussian", RESOLUTION, Slider("Sigma", 0.01, 64.0, 9.0)),
        Module("scribble_xdog", RESOLUTION, Slider("XDoG Threshold", 1, 64, 32)),
        Module("shuffle", fixed_res=512),
        Module("lineart_standard", RESOLUTION),
        Module("tile_resample", threshold_a=Slider("Down Sampling Rate", 1.0, 8.0, 1.0)),
        Module("tile_colorfix", threshold_a=Slider("Variation", 3.0, 32.0, 8.0)),
        Module("tile_colorfix+sharp", None, Slider("Variation", 3.0, 32.0, 8.0), Slider("Sharpness", 0.0, 2.0, 1.0)),
        Module("threshold", RESOLUTION, Slider("Binarization Threshold", 0, 255, 127)),
        Module("inpaint", takes_mask=True),
        Module("inpaint_only", takes_mask=True),
        Module("inpaint_only+lama", takes_mask=True, annotator=True),
        *(
            Module(name, RESOLUTION, annotator=True)
            for name in (
                "softedge_hed",
                "softedge_hedsafe",
                "softedge_pidinet",
                "softedge_pidisafe",
                "scribble_hed",
                "scribble_pidinet",
                "lineart_realistic",
                "lineart_coarse",
                "lineart_anime",
                "lineart_anime_denoise",
                "depth_midas",
                "depth_zoe",
                "depth_anything",
                "depth_anything_v2",
                "openpose",
                "openpose_hand",
                "openpose_face",
                "openpose_faceonly",
                "openpose_full",
                "normal_bae",
                "seg_ofade20k",
                "seg_ofcoco",
                "seg_ufade20k",
                "dw_openpose_full",
                "animal_openpose",
                "seg_anime_face",
                "densepose",
                "densepose_parula",
            )
        ),
        *(
            Module(
                name,
                RESOLUTION,
                Slider("Remove Near %", 0, 100, 0),
                Slider("Remove Background %", 0, 100, 0),
                annotator=True,
            )
            for name in ("depth_leres", "depth_leres++")
        ),
        Module("softedge_teed", RESOLUTION, Slider("Safe Steps", 0, 10, 2), annotator=True),
        Module("depth_marigold", Slider("Resolution", 128, 2048, 768), Slider("Steps", 1, 50, 20), annotator=True),
        Module(
            "softedge_anyline", Slider("Resolution", 64, 2048, 1280), Slider("Safe Steps", 0, 10, 2), annotator=True
        ),
        Module("normal_midas", RESOLUTION, Slider("Normal Background Threshold", 0.0, 1.0, 0.4), annotator=True),
        Module(
            "normal_dsine", RESOLUTION, Slider("Fov", 0.0, 360.0, 60.0), Slider("Iterations", 1, 20, 5), annotator=True
        ),
        Module(
            "mlsd",
            RESOLUTION,
            Slider("MLSD Value Threshold", 0.01, 2.0, 0.1),
            Slider("MLSD Distance Threshold", 0.01, 20.0, 0.1),
            annotator=True,
        ),
    )
}
"""The preprocessors built in here: OpenCV and numpy, and (``annotator``) the ones running a network."""

ALIASES = {
    "invert (from white bg & black line)": "invert",
    "lineart_standard (from white bg & black line)": "lineart_standard",
    "inpaint_global_harmonious": "inpaint",
    "hed": "softedge_hed",
    "hed_safe": "softedge_hedsafe",
    "pidinet": "softedge_pidinet",
    "pidinet_safe": "softedge_pidisafe",
    "lineart": "lineart_realistic",
    "depth": "depth_midas",
    "pidinet_scribble": "scribble_pidinet",
    "normal_map": "normal_midas",
    "oneformer_ade20k": "seg_ofade20k",
    "oneformer_coco": "seg_ofcoco",
    "segmentation": "seg_ufade20k",
}
"""The labels sd-webui-controlnet's dropdown shows (and its infotext writes) for modules whose name differs."""

NEEDS_WEIGHTS: dict[str, str] = {
    "depth_hand_refiner": "the hand refiner's depth weights (MeshGraphormer)",
    "mediapipe_face": "the mediapipe package",
}
"""Modules not built yet, and what they would need."""


_HIDDEN = ("tile_colorfix+sharp", "inpaint")
_BUILT_IN = ", ".join(n for n, m in MODULES.items() if n not in _HIDDEN and not m.annotator) + " …"


def find_module(name: str) -> Module:
    """The built-in preprocessor called `name` (its label too), or one line saying why there is none."""
    key = str(name).strip()
    key = ALIASES.get(key, key)
    lowered = key.lower()
    if lowered in MODULES:
        return MODULES[lowered]
    if lowered in NEEDS_WEIGHTS:
        raise ValueError(
            f"controlnet: preprocessor {key!r} needs {NEEDS_WEIGHTS[lowered]}, not built in yet; "
            "give a ready map with module 'none' or use a built-in one"
        )
    if lowered.startswith("ip-adapter"):
        raise ValueError(f"controlnet: {key!r} is an IP-Adapter module: no map, its picture goes to the image encoder")
    if lowered.startswith(("clip_vision", "reference", "revision", "t2ia", "instant_id", "recolor")):
        raise ValueError(f"controlnet: preprocessor {key!r} is not built yet; built in: {_BUILT_IN}")
    raise ValueError(f"controlnet: unknown preprocessor {key!r}; built in: {_BUILT_IN}")


def _pick(module: Module, slider: Slider | None, value: float | None, what: str) -> float | None:
    """`value` for `slider`: the default for -1/None, refused out of range; None where the module has no slider."""
    if slider is None:
        return None
    if value is None or float(value) == -1:
        return slider.default
    if not slider.minimum <= float(value) <= slider.maximum:
        raise ValueError(
            f"controlnet: {module.name}'s {what} ({slider.label}) must be {slider.minimum:g}..{slider.maximum:g}, "
            f"not {float(value):g} (-1 for its default {slider.default:g})"
        )
    return float(value)


def module_params(
    module: Module, processor_res: float | None = -1, threshold_a: float | None = -1, threshold_b: float | None = -1
) -> tuple[int | None, float | None, float | None]:
    """The values `module` works with: ``(processor_res, threshold_a, threshold_b)``, None for those it ignores."""
    res = _pick(module, module.resolution, processor_res, "Processor Res")
    if module.fixed_res is not None:
        res = module.fixed_res
    a = _pick(module, module.threshold_a, threshold_a, "Threshold A")
    b = _pick(module, module.threshold_b, threshold_b, "Threshold B")
    return (None if res is None else int(res)), a, b
