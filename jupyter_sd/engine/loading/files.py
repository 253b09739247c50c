"""What a single model file holds, from its header alone: family, parts (denoiser, VAE, text encoders), GGUF type.

A civitai or ComfyUI Flux/SD3 file may be a whole checkpoint (the transformer under ``model.diffusion_model.``,
the VAE under ``vae.``/``first_stage_model.``, text encoders under ``text_encoders.``) or the transformer alone
(BFL names, no prefix; city96's GGUF files are these). Nothing here reads tensor data.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

VAE_PREFIXES = ("first_stage_model.", "vae.")
TEXT_PREFIXES = ("cond_stage_model.", "conditioner.", "text_encoders.")
SUFFIXES = (".safetensors", ".gguf")


@dataclass(frozen=True)
class ModelFile:
    """One file's contents as its header tells them."""

    path: str
    format: str
    """``safetensors`` or ``gguf``."""
    family: Any
    """The `families.Family` its tensor names belong to."""
    parts: frozenset[str]
    """``denoiser``, ``vae``, ``text``: what the file holds."""
    quant: str = ""
    """The GGUF quantization most of its tensors use (``Q8_0``, ``Q4_K`` …; ``F16`` for a GGUF file of halves);
    '' for a safetensors file."""

    @property
    def denoiser_only(self) -> bool:
        """A transformer-only (or UNet-only) file: the other parts come from ``--model-config``."""
        return self.parts == frozenset({"denoiser"})


def parts_of(names: list[str]) -> frozenset[str]:
    """The parts a list of tensor names holds."""
    found = set()
    if any(n.startswith(VAE_PREFIXES) for n in names):
        found.add("vae")
    if any(n.startswith(TEXT_PREFIXES) for n in names):
        found.add("text")
    if any(not n.startswith(VAE_PREFIXES + TEXT_PREFIXES) for n in names):
        found.add("denoiser")
    return frozenset(found)


def gguf_names(path: str | Path) -> tuple[list[str], str]:
    """The tensor names of a GGUF file and its main quantization type (memory-mapped: no tensor is read).

    Raises
    ------
    ValueError
        When the ``gguf`` package is missing, or the file is not a GGUF file (one line each).
    """
    try:
        from gguf import GGMLQuantizationType, GGUFReader
    except ImportError as error:
        msg = "model: .gguf files need the gguf package (pip install 'jupyter_sd[gguf]', or pip install gguf)"
        raise ValueError(msg) from error
    try:
        reader = GGUFReader(str(path))
    except Exception as error:  # a damaged or foreign file: the reader raises many kinds
        msg = f"model: '{Path(path).name}' is not a readable GGUF file ({type(error).__name__}: {error})"
        raise ValueError(msg[:199]) from error
    halves = {GGMLQuantizationType.F16, GGMLQuantizationType.BF16}
    types = Counter(t.tensor_type for t in reader.tensors if t.tensor_type != GGMLQuantizationType.F32)
    quantized = Counter({kind: count for kind, count in types.items() if kind not in halves})
    quant = (quantized or types).most_common(1)[0][0].name if types else ""
    return [t.name for t in reader.tensors], quant


def inspect(path: str | Path) -> ModelFile:
    """What `path` (a ``.safetensors`` or ``.gguf`` file) holds.

    Raises
    ------
    ValueError
        For a damaged file, or one whose tensor names are of no family we paint (one line).
    """
    from ...library.kinds import tensor_names
    from ..families import family_of_checkpoint

    path = Path(path)
    if path.suffix.lower() == ".gguf":
        names, quant, fmt = *gguf_names(path), "gguf"
    else:
        try:
            names, quant, fmt = tensor_names(path), "", "safetensors"
        except (OSError, ValueError) as error:
            msg = f"model: '{path.name}' is not a readable .safetensors file ({error})"
            raise ValueError(msg[:199]) from error
    if not names:
        msg = f"model: '{path.name}' holds no tensors"
        raise ValueError(msg)
    return ModelFile(str(path), fmt, family_of_checkpoint(names, f"'{path.name}'"), parts_of(names), quant)


def first_line(error: BaseException) -> str:
    """The first line of an error's text (at most 200 characters), or its type's name."""
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__
