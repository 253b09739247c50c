"""A pipeline from one checkpoint file: SD/SDXL, whole transformer-family files, transformer-only and GGUF files.

UNet families go through diffusers' ``from_single_file`` as before. A transformer family's file (Flux, SD3, Z-Image,
Qwen-Image, Chroma, Flux.2 klein) gets its transformer loaded here (`denoiser`) and the rest from the file
(`whole_files` for the text encoders diffusers cannot read) or from ``--model-config`` (a diffusers folder or hub
id of the same family: configs, tokenizers, and the weights the file lacks).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .files import SUFFIXES, ModelFile, first_line, inspect


def load(diffusers: Any, location: str, config: str, kwargs: dict[str, Any], parts: tuple = ("", ())) -> Any:
    """Load the pipeline for the file at `location` (`kwargs`: dtype and components, as ``from_pretrained`` takes).

    `parts` (``--vae``, ``--text-encoder`` names) give a Flux/SD3 file's VAE and text encoders from the models
    folder (`parts.load_parts`); UNet checkpoints swap ``--vae`` per picture instead.

    Raises
    ------
    ValueError
        One line for a file we cannot map, a transformer file without ``--model-config``, or missing parts.
    """
    from .. import hub

    info = inspect(location) if location.lower().endswith(SUFFIXES) else None
    if config:
        kwargs["config"] = config
        if not Path(config).expanduser().is_dir() and hub.is_cached(config):
            kwargs["local_files_only"] = True
    elif not hub.hub_usable():
        kwargs["local_files_only"] = True  # its configs then come from the cache, or it fails in one line below
    if info is not None and info.family.flow:
        return _load_flow(diffusers, info, kwargs, parts)
    if info is not None and info.format == "gguf":
        msg = f"model: GGUF files of {info.family.name} models are not supported (GGUF loads Flux and SD3 transformers)"
        raise ValueError(msg)
    cls = single_file_class(diffusers, config, location)
    try:
        return cls.from_single_file(location, **kwargs)
    except Exception as error:  # the single-file loader raises many kinds for a file it can't map
        msg = (
            f"model: could not load '{location}' as a Stable Diffusion checkpoint ({first_line(error)}); "
            "if it is one, pass --model-config with a diffusers folder of the same architecture"
        )
        raise ValueError(msg) from error


def _load_flow(diffusers: Any, info: ModelFile, kwargs: dict[str, Any], parts: tuple) -> Any:
    """A transformer family's pipeline: the transformer from the file; the rest from it, `parts` or --model-config."""
    from .denoiser import load_denoiser
    from .parts import load_parts
    from .whole_files import file_vae, text_encoders

    config = kwargs.pop("config", "")
    name = Path(info.path).name
    if not config:
        msg = (
            f"model: '{name}' is a {info.family.name} file; pass --model-config with a diffusers {info.family.name} "
            "folder or hub id for its configs, tokenizers and the parts the file lacks"
        )
        raise ValueError(msg)
    dtype = kwargs.get("dtype", kwargs.get("torch_dtype"))
    local = bool(kwargs.get("local_files_only"))
    check_family(diffusers, info, config, local)
    transformer = load_denoiser(diffusers, info, config, dtype, local)
    kwargs.update(load_parts(diffusers, config, parts[0], parts[1], dtype))
    if not info.denoiser_only and not any(k.startswith("text_encoder") for k in kwargs):  # (--text-encoder wins)
        kwargs.update(text_encoders(diffusers, info, config, dtype))  # Qwen3 / Qwen2.5-VL: diffusers cannot read them
    cls = getattr(diffusers, info.family.pipeline_class("txt2img"))
    whole = not info.denoiser_only and hasattr(cls, "from_single_file")
    if not whole and "vae" not in kwargs:
        kwargs.update(file_vae(diffusers, info, config, dtype))  # Qwen-Image's (Wan's names), Flux.2's (BFL's)
    try:
        if not whole:  # (Qwen-Image, klein: no single-file loader; their VAE is read above)
            pipe = cls.from_pretrained(config, transformer=transformer, **kwargs)
        else:
            pipe = cls.from_single_file(info.path, config=config, transformer=transformer, **kwargs)
    except Exception as error:  # diffusers raises OSError, ValueError, SingleFileComponentError … for a missing part
        what = "holds only the transformer" if info.denoiser_only else "lacks some parts"
        msg = (
            f"model: '{name}' {what}, and --model-config '{config}' could not supply the rest "
            f"(the VAE's and text encoders' weights, or --vae/--text-encoder files) ({first_line(error)})"
        )
        raise ValueError(msg[:199]) from error
    _tie_text_encoders(pipe)
    encoders = [getattr(part, "_jupyter_sd_gguf", "") for part in kwargs.values()]  # "T5 GGUF Q8_0"
    vae = "VAE from --model-config" if "vae" in info.parts and not whole and "vae" not in kwargs else ""
    pipe._jupyter_sd_quant = ", ".join(filter(None, [f"GGUF {info.quant}" if info.quant else "", *encoders, vae]))
    return pipe


def check_family(diffusers: Any, info: ModelFile, config: str, local: bool) -> None:
    """Refuse a ``--model-config`` of another family than the file's (a Chroma file with a Flux folder …).

    A config whose pipeline class no family declares (Flux Kontext, Fill …) passes: the transformer's shapes decide.

    Raises
    ------
    ValueError
        ``model: 'chroma.safetensors' is a Chroma file, and --model-config 'flux-dev' is a Flux model (…)``.
    """
    from ..families import family_for_class

    try:
        name = diffusers.DiffusionPipeline.load_config(config, local_files_only=local).get("_class_name", "")
        family = family_for_class(name)
    except Exception:  # unreadable, or no family's class: loading the parts says what is wrong
        return
    if family.name != info.family.name:
        msg = (
            f"model: '{Path(info.path).name}' is a {info.family.name} file, and --model-config '{config}' is a "
            f"{family.name} model (pass a diffusers {info.family.name} folder or hub id)"
        )
        raise ValueError(msg[:199])


def _tie_text_encoders(pipe: Any) -> None:
    """Tie T5's input embedding to its ``shared`` table: loaded from a file into an empty model, it stays unset."""
    for name in ("text_encoder", "text_encoder_2", "text_encoder_3"):
        model = getattr(pipe, name, None)
        if model is not None and any(p.is_meta for p in model.parameters()):
            model.tie_weights()


def single_file_class(diffusers: Any, config: str, path: str = "") -> Any:
    """Pick the pipeline class for a single-file checkpoint.

    The class ``config``'s model_index.json names (SDXL, SD 2, ...); else the family its tensor names say
    (`families.family_of_checkpoint`: SDXL's second text encoder, …); else Stable Diffusion 1.x/2.x.
    """
    if not config and path.endswith(".safetensors"):
        family = inspect(path).family
        family.refuse("single file", f" ('{Path(path).name}'; a diffusers folder or hub id loads)")
        return getattr(diffusers, family.pipeline_class("txt2img"))
    if config:
        try:
            name = diffusers.DiffusionPipeline.load_config(config).get("_class_name", "")
        except Exception:  # unreadable or not cached: from_single_file reports it with the right message
            name = ""
        cls = getattr(diffusers, name, None) if name else None
        if cls is not None and hasattr(cls, "from_single_file"):
            return cls
    return diffusers.StableDiffusionPipeline
