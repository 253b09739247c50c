"""Few-step models (SD-Turbo, SDXL-Turbo, LCM, Lightning, Hyper-SD): which one a model is, and its right defaults.

Turbo wants 1–4 steps and no CFG; LCM wants its own scheduler and CFG about 1; Lightning wants "trailing" timesteps
(A1111's *SGM Uniform*). Using SD's defaults (20 steps, CFG 7, DPM++ 2M) on them gives burnt or mushy pictures.
The table is data; `detect` reads what a model folder says about itself (its name, its scheduler config, its model
card, the LoRA it is used with). Pure Python: no torch, so request validation can use `PRESET_CHOICES`.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any, NamedTuple


class Preset(NamedTuple):
    """The defaults a few-step model wants."""

    title: str
    steps: int
    guidance: float
    sampler: str
    schedule: str


PRESETS: dict[str, Preset] = {
    "sd-turbo": Preset("SD-Turbo", 1, 0.0, "Euler a", "SGM Uniform"),
    "sdxl-turbo": Preset("SDXL-Turbo", 4, 0.0, "Euler a", "SGM Uniform"),
    "lcm": Preset("LCM", 4, 1.0, "LCM", "Automatic"),
    "lightning": Preset("Lightning", 4, 0.0, "Euler", "SGM Uniform"),
    "hyper-sd": Preset("Hyper-SD", 1, 0.0, "TCD", "Automatic"),
}
PRESET_CHOICES = ("auto", "none", *PRESETS)
"""``--preset``: auto (detect), none (never apply one), or force one by name."""
UNET_FAMILIES = ("SD1", "SD2", "SDXL")
"""The families these presets are for: a flow model named ``…-Turbo`` (Z-Image-Turbo) keeps its family's defaults."""
PRESET_FIELDS = ("steps", "guidance", "sampler", "schedule")
"""The request options a preset sets, each only where the user left it at its default."""

_NAME_RULES: tuple[tuple[str, str], ...] = (
    (r"sdxl[-_ ]?turbo", "sdxl-turbo"),
    (r"sd[-_ ]?(2[-_.]?1[-_ ]?)?turbo", "sd-turbo"),
    (r"lightning", "lightning"),
    (r"hyper[-_ ]?sd", "hyper-sd"),
    (r"(^|[^a-z])lcm([^a-z]|$)|latent[-_ ]?consistency", "lcm"),
)
_SCHEDULER_RULES = {"LCMScheduler": "lcm", "TCDScheduler": "hyper-sd"}
_STEPS_IN_NAME = re.compile(r"(\d+)[-_ ]?steps?", re.IGNORECASE)
_LORA_TAG = re.compile(r"<lora:([^:>]+)", re.IGNORECASE)


def _from_names(names: list[str], family: str) -> str | None:
    for name in names:
        lowered = name.lower()
        for pattern, key in _NAME_RULES:
            if re.search(pattern, lowered):
                return key
        if "turbo" in lowered:
            return "sdxl-turbo" if family == "SDXL" else "sd-turbo"
    return None


def _card_header(card: str) -> str:
    """The part of a model card that says what the model is: its YAML front matter and its first heading."""
    header = ""
    if card.startswith("---"):
        end = card.find("\n---", 3)
        header = card[3:end] if end > 0 else ""
    heading = re.search(r"^#\s+(.+)$", card, re.MULTILINE)
    return header + "\n" + (heading.group(1) if heading else "")


def lora_names(prompt: str) -> list[str]:
    """The LoRA named in a prompt's ``<lora:NAME:weight>`` tags (LCM-LoRA, Lightning and Hyper-SD LoRA)."""
    return _LORA_TAG.findall(prompt or "")


def detect(
    names: list[str], scheduler_config: dict[str, Any] | None = None, card: str = "", family: str = ""
) -> tuple[str, int | None] | None:
    """Tell which few-step model this is, from what the model says about itself.

    Parameters
    ----------
    names
        The model's name (hub id, folder or file stem) and the LoRA used with it, most telling first.
    scheduler_config
        The model's saved scheduler config (an LCM or TCD scheduler says so).
    card
        The model card (README.md): its front matter tags, base model and title.
    family
        ``SD1``, ``SD2``, ``SDXL``…: tells SD-Turbo from SDXL-Turbo when the name only says "turbo".

    Returns
    -------
    tuple or None
        The preset's key and the step count the name states (``sdxl_lightning_4step`` → 4), or None.
    """
    if family and family not in UNET_FAMILIES:  # the presets' samplers and schedules are k-diffusion's
        return None
    key = _from_names(names, family)
    where = next((name for name in names if key and _from_names([name], family) == key), "")
    if key is None and scheduler_config:
        key = _SCHEDULER_RULES.get(str(scheduler_config.get("_class_name", "")))
    if key is None and card:
        header = _card_header(card)
        key = _from_names([header], family)
        where = header
    if key is None:
        return None
    steps = _STEPS_IN_NAME.search(where)
    return key, int(steps.group(1)) if steps and 1 <= int(steps.group(1)) <= 50 else None


def apply(
    values: dict[str, Any], given: Collection[str], key: str, steps: int | None = None
) -> tuple[dict[str, Any], str]:
    """The preset's changes to `values` (only options the user did not set: not in `given`), and the line."""
    preset = PRESETS[key]
    wanted = preset._asdict()
    if steps:
        wanted["steps"] = steps
    changes = {name: wanted[name] for name in PRESET_FIELDS if name not in given and values[name] != wanted[name]}
    kept = [name for name in PRESET_FIELDS if name in given]
    schedule = wanted["schedule"]
    schedule = " trailing" if schedule == "SGM Uniform" else "" if schedule == "Automatic" else f" {schedule}"
    cfg = f"{wanted['guidance']:g}"
    line = f"{preset.title} detected: {wanted['steps']} steps, CFG {cfg}, {wanted['sampler']}{schedule}"
    if kept:
        line += f" (your {', '.join('--cfg' if k == 'guidance' else '--' + k for k in kept)} kept)"
    else:
        line += " — pass --steps/--cfg to override"
    return changes, line
