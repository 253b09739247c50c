"""Model families, one file each: detection from a pipeline, a folder's ``model_index.json`` or a file's tensors.

`FAMILIES` lists them most specific first (SD 2 before SD 1, which share their pipeline classes). Everything in
the engine that depends on the kind of model asks `family_of` (a loaded pipeline) and reads the `Family`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .base import FEATURES, Family
from .chroma import FAMILY as CHROMA
from .flux import FAMILY as FLUX
from .flux2dev import FAMILY as FLUX2_DEV
from .flux2klein import FAMILY as FLUX2_KLEIN
from .qwenimage import FAMILY as QWENIMAGE
from .sd1 import FAMILY as SD1
from .sd2 import FAMILY as SD2
from .sd3 import FAMILY as SD3
from .sdxl import FAMILY as SDXL
from .zimage import FAMILY as ZIMAGE

__all__ = [
    "CHROMA",
    "FAMILIES",
    "FEATURES",
    "FLUX",
    "FLUX2_DEV",
    "FLUX2_KLEIN",
    "QWENIMAGE",
    "SD1",
    "SD2",
    "SD3",
    "SDXL",
    "ZIMAGE",
    "Family",
    "family_for_class",
    "family_named",
    "family_of",
]
__all__ += ["family_of_checkpoint", "family_of_folder"]

FAMILIES: tuple[Family, ...] = (SDXL, SD2, SD1, CHROMA, FLUX2_DEV, FLUX2_KLEIN, FLUX, SD3, ZIMAGE, QWENIMAGE)
"""(Chroma and Flux.2 before Flux: their files have Flux's block names too; Flux.2 [dev] before klein: its files
have klein's names and a guidance embedder.)"""


def family_named(name: str) -> Family:
    """The family called `name` (``SD1``, ``SDXL`` …)."""
    for family in FAMILIES:
        if family.name == name:
            return family
    msg = f"model: no family '{name}' (allowed: {', '.join(f.name for f in FAMILIES)})"
    raise ValueError(msg)


def family_for_class(class_name: str, text_width: int = 0, unet: bool = False, second_encoder: bool = False) -> Family:
    """The family of a pipeline class, told apart by its UNet's cross-attention width where classes are shared.

    A UNet pipeline of a class no family declares (ControlNet, PAG …) is SDXL when it is an XL class or has a
    second text encoder, else SD 1/2 by the text width, as before families were declared.

    Raises
    ------
    ValueError
        For a pipeline that is none of the families (one line naming those supported).
    """
    found = [family for family in FAMILIES if family.owns_class(class_name)]
    if not found and unet:
        found = [SDXL] if "XL" in class_name or second_encoder else [SD2, SD1]
    for family in found:
        if family.text_width in (0, text_width):
            return family
    names = ", ".join(family.name for family in FAMILIES)
    msg = f"model: {class_name or 'this model'} is not a model family jupyter_sd paints yet (supported: {names})"
    raise ValueError(msg)


def family_of(pipe: Any) -> Family:
    """The family of a loaded pipeline (any mode's: ``from_pipe`` siblings answer the same)."""
    unet = getattr(pipe, "unet", None)
    width = int(getattr(unet.config, "cross_attention_dim", 0) or 0) if unet is not None else 0
    second = getattr(pipe, "text_encoder_2", None) is not None
    return family_for_class(type(pipe).__name__, width, unet is not None, second)


def family_of_folder(folder: str | Path) -> Family:
    """The family of a diffusers folder, from its ``model_index.json`` (and its UNet's config), loading nothing."""
    folder = Path(folder)
    index = json.loads((folder / "model_index.json").read_text())
    width = 0
    unet_config = folder / "unet" / "config.json"
    if unet_config.is_file():
        width = int(json.loads(unet_config.read_text()).get("cross_attention_dim") or 0)
    second = bool([part for part in index.get("text_encoder_2") or [] if part])
    return family_for_class(index.get("_class_name", ""), width, "unet" in index, second)


FOREIGN = {"Lumina 2": ("cap_embedder.0.", "model.diffusion_model.cap_embedder.0.")}
"""Files of models we do not paint whose names a family's could be taken for, by diffusers' signatures (checked
after every family's: Z-Image's files hold a ``cap_embedder`` too)."""


def family_of_checkpoint(keys: Iterable[str], what: str = "this file") -> Family:
    """The family of a single-file checkpoint from its tensor names (SD 1 when no signature matches).

    Raises
    ------
    ValueError
        One line for a file of a model in `FOREIGN` (`what` names the file).
    """
    keys = list(keys)
    for family in FAMILIES:
        also = family.checkpoint_also
        if family.checkpoint_keys and any(key.startswith(family.checkpoint_keys) for key in keys):
            if also and not any(key.startswith(also) for key in keys):
                continue
            _refuse_foreign(keys, family.relatives, what)
            return family
    _refuse_foreign(keys, FOREIGN, what)
    return SD1


def _refuse_foreign(keys: list[str], models: dict[str, tuple[str, ...]], what: str) -> None:
    """One line when `keys` carry the signature of one of `models` (models we do not paint)."""
    for model, signature in models.items():
        if any(key.startswith(signature) for key in keys):
            names = ", ".join(family.name for family in FAMILIES)
            msg = f"model: {what} is a {model} model; {model} is not a family jupyter_sd paints (supported: {names})"
            raise ValueError(msg[:199])
