"""Generation data pasted into a cell (or read from a PNG): which A1111 keys we honour, and what we say about the rest.

A1111's keys map onto `PaintRequest` fields through their ``infotext=`` metadata; this module adds what the mapping
alone can't say: a ``Model`` / ``Model hash`` looked up in the models folder, a ``<lora:NAME>`` found by its pasted
hash, values spelled differently from the option's, and one line naming every key that is neither applied nor known.
"""

from __future__ import annotations

import re
from typing import Any

from .. import library
from .control_units import WEIGHTS_KEY
from .values import INFOTEXT_KEYS, parse_size

_HUB_ID_RE = re.compile(r"^[\w.-]+/[\w.-]+$")


def options_from_params(params: dict[str, str]) -> dict[str, Any]:
    """Map A1111 parameters onto request options, keeping only those we can honour.

    ``Size`` becomes width and height. ``Model`` / ``Model hash`` are looked up in the models folder's
    ``Stable-diffusion/`` (by file stem, then by hash); otherwise ``Model`` is applied only when it names something
    loadable here (the bundled ``tiny`` model or a hub id), and the kernel's model paints (`pasted_notes` says so).
    """
    options: dict[str, Any] = {}
    for key, value in params.items():
        key = _KEY_ALIASES.get(key, key)
        if OFF_VALUES.get(key) == value.strip():
            continue
        if key == "Size":
            try:
                options["width"], options["height"] = parse_size(value)
            except ValueError:
                options["size"] = value  # refused or painted around by `paste.read_pasted`, with its reason
        elif key in _INFOTEXT_VALUES:
            name, values = _INFOTEXT_VALUES[key]
            if value in values:
                options[name] = values[value]
        elif key in INFOTEXT_KEYS and INFOTEXT_KEYS[key] not in ("model", "refiner"):
            options[INFOTEXT_KEYS[key]] = value
    refiner = _pasted_refiner(params.get("Refiner", ""))
    if refiner:
        options["refiner"] = refiner
    model = _pasted_model(params)
    if model:
        options["model"] = model
    options.update(_pasted_modules(params))
    if ("Hires upscale" in params or "Hires resize" in params) and "strength" in options:
        options["hires_denoise"] = options.pop("strength")  # a txt2img picture's strength is its hires pass's
    return options


OFF_VALUES = {"Seed resize from": "-1x-1", "Denoising strength": "0"}
"""Values older A1111 versions (and its API) wrote for a setting that is off, which we write as no key at all."""

_KEY_ALIASES = {"Hires CFG scale": "Hires CFG Scale"}
"""Keys written in more than one spelling (the hires-fix-tweaks extension's, Forge's) → the one a field declares."""

_INFOTEXT_VALUES = {
    "Inpaint area": ("inpaint_area", {"Only masked": "masked", "Whole picture": "whole"}),
    "Mask mode": ("invert_mask", {"Inpaint not masked": True, "Inpaint masked": False}),
    "RNG": ("rng", {"GPU": "gpu", "NV": "nv", "CPU": "cpu"}),
}
"""Infotext keys whose A1111 values are spelled differently from the option's."""


def _pasted_model(params: dict[str, str]) -> str | None:
    """The model a pasted ``Model`` / ``Model hash`` names, if we can load it here."""
    name, model_hash = params.get("Model", "").strip(), params.get("Model hash", "").strip()
    if name == "tiny" or _HUB_ID_RE.match(name):
        return name
    for wanted in (name, model_hash):
        found = library.find_model("checkpoint", wanted, hash_big_files=False) if wanted else None
        if found is not None:
            return str(found.path)
    return None


def _pasted_modules(params: dict[str, str]) -> dict[str, str]:
    """Forge's ``Module 1..n`` (its VAE / Text Encoder list) → ``vae`` and ``text_encoder``, for files found here."""
    names = [params[key].strip() for key in params if re.fullmatch(r"Module \d+", key)]
    options: dict[str, str] = {}
    folder = library.models_dir() / "text_encoder"
    encoders = [n for n in names if any((folder / f"{n}{suffix}").is_file() for suffix in (".safetensors", ".gguf"))]
    vae = [n for n in names if n not in encoders and library.find_model("vae", n, hash_big_files=False)]
    if vae:
        options["vae"] = vae[0]
    if encoders:
        options["text_encoder"] = ",".join(encoders)
    return options


def _pasted_refiner(value: str) -> str | None:
    """A pasted ``Refiner`` (A1111 writes ``name [hash]``) if it is loadable here: a hub id or in the models folder."""
    name = re.sub(r"\s*\[[0-9a-fA-F]+\]$", "", value.strip())
    if _HUB_ID_RE.match(name):
        return name
    found = library.find_model("checkpoint", name) if name else None
    return str(found.path) if found is not None else None


_KNOWN_KEYS = {"Size", "Model", "Model hash", "Lora hashes", "TI hashes", "VAE hash", "Hashes", "Version", "User"}
_KNOWN_KEYS |= {"First pass size"}  # A1111's old hires fix, read by `paste`
"""Keys applied without a field of their own (Size, Model), or ours to recompute (hashes) or say nothing (Version)."""
_HONOURED_VALUES = {"Emphasis": ("Original",)}
"""Keys with no option whose value is what we do anyway (A1111's default emphasis)."""


def ignored_infotext_keys(params: dict[str, str]) -> list[str]:
    """The pasted keys that are neither applied nor known, in the order pasted.

    Applied means an option's field declares the key (``infotext=`` metadata), so a new option stops being listed
    here as soon as its field exists.
    """
    known = set(INFOTEXT_KEYS) | _KNOWN_KEYS | set(_KEY_ALIASES)
    return [
        key
        for key, value in params.items()
        if key not in known
        and str(value).strip() not in _HONOURED_VALUES.get(key, ())
        and not re.fullmatch(r"Module \d+", key)  # Forge's VAE / Text Encoder list: `_pasted_modules`
        and not re.fullmatch(r"ControlNet( \d+)?", key)  # read as units (paste.py)
        and not WEIGHTS_KEY.fullmatch(key)  # a unit's per-block weights (control_units.py)
    ]


_LORA_TAG = re.compile(r"<(lora|lyco):([^:>]+)([:>])")


def relink_loras(prompt: str, params: dict[str, str]) -> tuple[str, list[str]]:
    """A1111's paste rule: a ``<lora:NAME>`` not in ``Lora/`` is looked up by its pasted ``Lora hashes`` entry.

    Returns
    -------
    tuple
        The prompt with such tags renamed to the local file's name, and one line per renamed tag.
    """
    hashes = {}
    for item in params.get("Lora hashes", "").split(","):
        name, _, value = item.strip().rpartition(":")
        if name.strip() and value.strip():
            hashes[name.strip()] = value.strip()
    notes: list[str] = []
    if not hashes:
        return prompt, notes

    def relink(match: re.Match[str]) -> str:
        name = match.group(2).strip()
        if name not in hashes or library.find_model("lora", name) is not None:
            return match.group(0)
        found = library.find_model("lora", hashes[name], hash_big_files=False)
        if found is None:
            return match.group(0)
        notes.append(f"lora: '{name}' is not in {library.subfolder('lora')}; using {found.name}, which has its hash")
        return f"<{match.group(1)}:{found.name}{match.group(3)}"

    return _LORA_TAG.sub(relink, prompt), notes


def pasted_notes(params: dict[str, str], painted_model: str, model_given: bool = False, prompt: str = "") -> list[str]:
    """Lines to show after painting from pasted generation data: a model we could not find, keys we ignored.

    Parameters
    ----------
    params
        The pasted ``Key: value`` parameters.
    painted_model
        The short name of the model that painted.
    model_given
        Whether ``--model`` was given too (then the pasted model was overridden on purpose, not missed).
    prompt
        The pasted prompt (for the LoRA found by hash rather than by name, see `relink_loras`).
    """
    notes = relink_loras(prompt, params)[1]
    name, model_hash = params.get("Model", "").strip(), params.get("Model hash", "").strip()
    if (name or model_hash) and not model_given and name != painted_model and _pasted_model(params) is None:
        parts = (f"'{name}'" if name else "", f"(hash {model_hash})" if model_hash else "")
        what = " ".join(part for part in parts if part)
        hints = library.close_matches("checkpoint", name) if name else []
        closest = f" (closest: {', '.join(hints)})" if hints else ""
        if model_hash and not hints:
            closest = " (%paint models finds big files by hash)"
        notes.append(
            f"model: {what} is not in the models folder's Stable-diffusion/; painted with {painted_model}{closest}"
        )
    refiner = params.get("Refiner", "").strip()
    if refiner and _pasted_refiner(refiner) is None:
        switch = f" (nor its Refiner switch at {params['Refiner switch at']})" if "Refiner switch at" in params else ""
        notes.append(
            f"Refiner: '{refiner}' is not in the models folder's Stable-diffusion/; painted without a refiner{switch}"
        )
    ignored = ignored_infotext_keys(params)
    if ignored:
        notes.append(f"ignored from the generation data: {_grouped(ignored)}")
    return notes


def _grouped(keys: list[str]) -> str:
    """Keys named compactly: an extension's many keys as one (``ADetailer … (11 keys)``), the rest as they are."""
    firsts = [key.split()[0] for key in keys]
    named: list[str] = []
    for key, first in zip(keys, firsts):
        count = firsts.count(first)
        if count < 3:
            named.append(key)
        elif f"{first} … ({count} keys)" not in named:
            named.append(f"{first} … ({count} keys)")
    return ", ".join(named)
