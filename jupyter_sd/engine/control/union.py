"""SDXL Union and ProMax ControlNets (xinsir's controlnet-union-sdxl-1.0): one model, a control type per unit.

A union model is diffusers' ``ControlNetUnionModel``, painted by its own pipelines
(``StableDiffusionXLControlNetUnion[Img2Img|Inpaint]Pipeline``, made from the resident one with ``from_pipe``). Each
unit tells it what its map is (diffusers' ``control_mode``: 0 OpenPose … 7 Inpaint), taken from the unit's module as
sd-webui-controlnet's Control Type filter does, or from its ``Union Control Type``. Several units of union models run
one forward each and add up (``MultiControlNetUnionModel``), as the extension runs each unit on its own, so every
unit keeps its weight, guidance window and control mode.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable

from ...recipe.control_names import UNION_CONTROL_TYPES, UNKNOWN_UNION_TYPE

UNION_MARKS = ("task_embedding", "transformer_layes.", "spatial_ch_projs.", "control_add_embedding.")
"""Tensor names only a union ControlNet has (diffusers' and xinsir's layout; ``transformer_layes`` is theirs)."""
_CLASS_NAMES = ("ControlNetUnionModel", "ControlNetModel_Union")
"""A union folder's ``config.json`` class: diffusers' name, or xinsir's own."""
_MODULE_TYPES = (
    (("openpose", "dw_openpose", "animal_openpose", "densepose"), "OpenPose"),
    (("depth",), "Depth"),
    (("softedge", "scribble", "hed", "pidinet", "teed"), "Soft Edge"),
    (("canny", "lineart", "mlsd"), "Hard Edge"),
    (("normal",), "Normal Map"),
    (("seg", "oneformer", "anime_face_segment"), "Segmentation"),
    (("tile", "blur"), "Tile"),
    (("inpaint",), "Inpaint"),
)
"""Module name prefixes → the Control Type filter sd-webui-controlnet lists them under (their tags)."""
_PIPELINES = {
    "txt2img": "StableDiffusionXLControlNetUnionPipeline",
    "img2img": "StableDiffusionXLControlNetUnionImg2ImgPipeline",
    "inpaint": "StableDiffusionXLControlNetUnionInpaintPipeline",
}


def is_union_model(model: Any) -> bool:
    """Whether `model` (a loaded ControlNet, or several) is a union one."""
    from diffusers.models.controlnets import ControlNetUnionModel, MultiControlNetUnionModel

    return isinstance(model, (ControlNetUnionModel, MultiControlNetUnionModel))


def is_union_config(config: dict[str, Any]) -> bool:
    """Whether a ControlNet folder's ``config.json`` is a union model's."""
    return config.get("_class_name") in _CLASS_NAMES or "num_control_type" in config


def is_union_weights(weights: dict[str, Any]) -> bool:
    """Whether a single file's tensors are a union ControlNet's."""
    return any(key.removeprefix("control_model.").startswith(UNION_MARKS) for key in weights)


def controlnet_class(config: dict[str, Any]) -> Any:
    """The diffusers class a ControlNet folder's config loads as."""
    from diffusers import ControlNetModel, ControlNetUnionModel

    return ControlNetUnionModel if is_union_config(config) else ControlNetModel


def unit_control_type(unit: Any, index: int = 0) -> str:
    """The unit's control type: its ``Union Control Type``, or its module's (the extension's Control Type filter).

    Raises
    ------
    ValueError
        One line: a module of no one type (``none``, ``invert`` …) and no ``Union Control Type``.
    """
    if unit.union_control_type != UNKNOWN_UNION_TYPE:
        return unit.union_control_type
    module = str(unit.module).strip().lower()
    for prefixes, name in _MODULE_TYPES:
        if module.startswith(prefixes):
            return name
    msg = f"controlnet: unit {index} on a union ControlNet with module {unit.module!r} needs a 'Union Control Type: "
    msg += "Depth' (or OpenPose, Soft Edge, Hard Edge, Normal Map, Segmentation, Tile, Inpaint)"
    raise ValueError(msg)


def control_modes(units: list[Any], loaded: list[Any]) -> list[int] | None:
    """The ``control_mode`` (diffusers') of each unit, or None when no unit's model is a union one.

    Ordinary ControlNets beside union ones get 0, which their wrapper (`pipeline_model`) drops.

    Raises
    ------
    ValueError
        One line: a union unit of no control type, a type the model lacks.
    """
    union = [is_union_model(item.model) for item in loaded]
    if not any(union):
        return None
    modes = []
    for index, (unit, item) in enumerate(zip(units, loaded)):
        if not is_union_model(item.model):  # an ordinary ControlNet beside union ones: no type (PlainInUnion)
            modes.append(0)
            continue
        name = unit_control_type(unit, index)
        mode, known = UNION_CONTROL_TYPES.index(name), int(item.model.config.num_control_type)
        if mode >= known:
            msg = f"controlnet: {item.name} knows {known} control types ({', '.join(UNION_CONTROL_TYPES[:known])}), "
            raise ValueError(f"{msg}not {name}; ProMax has all 8"[:199])
        modes.append(mode)
    return modes


def union_infotext(unit: Any, loaded: Any) -> dict[str, str]:
    """The unit's ``Union Control Type`` as written beside a union model's unit (``Unknown``: not written)."""
    return {"union_control_type": unit_control_type(unit) if is_union_model(loaded.model) else UNKNOWN_UNION_TYPE}


def union_arguments(arguments: dict[str, Any], modes: list[int] | None) -> dict[str, Any]:
    """A ControlNet pipeline's `arguments` as the union pipelines take them: every map is ``control_image``.

    An Inpaint unit's map is ProMax's: the area to repaint black.
    """
    if modes is None:
        return arguments
    arguments = dict(arguments)
    maps = arguments.pop("image", None)
    maps = arguments.pop("control_image") if maps is None else maps
    single = len(modes) == 1
    hints = [_repaint_hint(hint) if mode == _INPAINT else hint for hint, mode in zip([maps] if single else maps, modes)]
    arguments["control_image"] = hints[0] if single else hints
    arguments["control_mode"] = modes[0] if single else modes
    return arguments


_INPAINT = UNION_CONTROL_TYPES.index("Inpaint")


def _repaint_hint(hint: Any) -> Any:
    """ProMax's inpaint map: the picture with the area to repaint black, as xinsir trained it.

    The extension's ``inpaint_promax`` gives the same; an inpaint module's hint is −1 there, for SD1.5's inpaint model.
    """
    return hint.clamp(min=0.0)


def pipeline_model(models: list[Any]) -> Any:
    """What a union pipeline is given: the one model, or the units' models (one forward each, summed).

    An ordinary ``ControlNetModel`` among them goes in wrapped (`_plain_class`), so union and ordinary units paint one
    picture, each net's residuals added as diffusers' Multi models add them.
    """
    if len(models) == 1:
        return models[0]
    return _units_class()([model if is_union_model(model) else _plain_class()(model) for model in models])


@functools.cache
def _plain_class() -> type:
    import torch
    from diffusers.configuration_utils import FrozenDict

    class PlainInUnion(torch.nn.Module):
        """An ordinary ControlNet as a union pipeline's Multi model calls its nets: its one map, no control type.

        The union pipeline hands each net a list of maps with ``control_type``/``control_type_idx``/``from_multi``
        and reads ``config.num_control_type``: the net gets its map and the rest of the call (scale, guess mode …).
        """

        def __init__(self, net: Any) -> None:
            super().__init__()
            self.net = net
            self.config = FrozenDict({**net.config, "num_control_type": 1})

        def forward(self, *args: Any, controlnet_cond: Any, **kwargs: Any) -> Any:
            for name in ("control_type", "control_type_idx", "from_multi"):
                kwargs.pop(name, None)
            return self.net(*args, controlnet_cond=controlnet_cond[0], **kwargs)

    return PlainInUnion


@functools.cache
def _units_class() -> type:
    from diffusers.models.controlnets import MultiControlNetUnionModel

    class UnionUnits(MultiControlNetUnionModel):
        """diffusers' several union ControlNets, whose injection hooks see only the units that run this step.

        diffusers skips a net whose scale is 0 (outside its guidance window); injection.py takes a model's units in
        turn, so for one step each hook is handed the injections of the units that run, in order.
        """

        def forward(self, *args: Any, **kwargs: Any) -> Any:
            scales = kwargs.get("conditioning_scale", args[6] if len(args) > 6 else ())
            saved: dict[int, tuple[Any, list, int]] = {}
            running: dict[int, list] = {}
            for net, scale in zip(self.nets, scales):
                hook = getattr(net, "net", net).__dict__.get("_jupyter_sd_injection")  # (PlainInUnion's own net)
                if hook is None or not hook.injections:
                    continue
                _, injections, _ = saved.setdefault(id(hook), (hook, hook.injections, hook.calls))
                uses = running.setdefault(id(hook), [])
                uses.append(injections[len(uses) % len(injections)] if scale != 0.0 else None)
            try:
                for key, (hook, _, _) in saved.items():
                    hook.injections, hook.calls = [i for i in running[key] if i is not None], 0
                return super().forward(*args, **kwargs)
            finally:
                for hook, injections, calls in saved.values():
                    hook.injections, hook.calls = injections, calls

    return UnionUnits


def union_pipeline(pipe: Any, kind: str, controlnet: Any) -> Any:
    """The SDXL union pipeline (diffusers') of `kind` over `pipe`'s modules (``from_pipe``: nothing is loaded again)."""
    import diffusers

    return getattr(diffusers, _PIPELINES[kind]).from_pipe(pipe, controlnet=controlnet)


def from_folder(where: Path | str, **kwargs: Any) -> Any:
    """A ControlNet folder (or hub id) by its config's class: union or not."""
    from diffusers import ControlNetModel

    config = ControlNetModel.load_config(str(where), **kwargs)
    return controlnet_class(config).from_pretrained(str(where), **kwargs)


def from_single_file(pipe: Any, weights: dict[str, Any], label: str, check_family: Callable) -> Any:
    """A union ControlNet from one file (xinsir's ``diffusion_pytorch_model[_promax].safetensors``), offline.

    Its shape is the resident UNet's (as ``ControlNetUnionModel.from_unet`` derives it); the hint block, the number
    of control types (6, ProMax 8) and the type transformer's width and depth are read from the tensors.
    """
    from accelerate import init_empty_weights
    from diffusers import ControlNetUnionModel

    weights = {key.removeprefix("control_model."): value for key, value in weights.items()}
    if "controlnet_cond_embedding.conv_in.weight" not in weights:
        msg = f"controlnet: {label} is a union ControlNet in another layout; use xinsir's diffusers file "
        raise ValueError(msg + "(diffusion_pytorch_model_promax.safetensors) or its folder (config.json + weights)")
    width = next((v.shape[1] for k, v in weights.items() if k.endswith("attn2.to_k.weight")), None)
    if width is not None:
        check_family(pipe, int(width), label)
    hint = weights["controlnet_cond_embedding.conv_in.weight"]
    blocks = [weights[f"controlnet_cond_embedding.blocks.{i}.weight"] for i in range(1, 64, 2) if _has(weights, i)]
    layers = {key.split(".")[1] for key in weights if key.startswith("transformer_layes.")}
    with init_empty_weights():
        shaped = ControlNetUnionModel.from_unet(
            pipe.unet,
            conditioning_embedding_out_channels=(int(hint.shape[0]), *(int(b.shape[0]) for b in blocks)),
            load_weights_from_unet=False,
        )
        config = {key: value for key, value in shaped.config.items() if not key.startswith("_")}
        config.update(
            conditioning_channels=int(hint.shape[1]),
            num_control_type=int(weights["task_embedding"].shape[0]),
            num_trans_channel=int(weights["task_embedding"].shape[1]),
            num_trans_layer=len(layers),
            num_proj_channel=int(weights["spatial_ch_projs.weight"].shape[0]),
        )
        model = ControlNetUnionModel.from_config(config)
    try:
        model.load_state_dict(weights, strict=True, assign=True)
    except RuntimeError as error:
        lines = str(error).splitlines()
        first = lines[1].strip() if len(lines) > 1 else str(error)
        raise ValueError(f"controlnet: {label} does not fit this model's UNet ({first[:80]})"[:199]) from None
    return model


def _has(weights: dict[str, Any], index: int) -> bool:
    return f"controlnet_cond_embedding.blocks.{index}.weight" in weights


__all__ = [
    "UNION_MARKS",
    "control_modes",
    "controlnet_class",
    "from_folder",
    "from_single_file",
    "is_union_model",
    "is_union_weights",
    "pipeline_model",
    "union_arguments",
    "union_infotext",
    "union_pipeline",
    "unit_control_type",
]
