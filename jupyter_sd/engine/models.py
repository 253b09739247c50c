"""Which model a request means, and how to load it: hub id, local folder, single file, or the bundled one.

Kept apart from the engine so the rules (refusals, dtype per device, the offline error) read in one place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import library
from ..library.drive import local_copy
from . import fast_load
from .fast_load import BUNDLED_MODEL

BUNDLED_NAME = "tiny"
DEFAULT_CUDA_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl")
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
_DTYPE_NAMES = {"float16": "float16", "bfloat16": "bfloat16", "float32": "float32"}


@dataclass(frozen=True)
class ModelSource:
    """A resolved model: where it lives, what kind of thing it is, and the short name metadata records."""

    location: str
    kind: str  # "folder", "hub", "single-file"
    name: str

    @property
    def is_bundled(self) -> bool:
        """Whether this is the bundled demo model."""
        return self.kind == "folder" and Path(self.location).resolve() == BUNDLED_MODEL.resolve()


def cuda_available() -> bool:
    """Tell whether torch sees a CUDA device (imports torch, after the background imports if they run)."""
    from . import warmup

    warmup.wait()
    import torch

    return torch.cuda.is_available()


def default_model() -> str:
    """The model used when none is named: Stable Diffusion 1.5 on CUDA, else the bundled tiny model."""
    return DEFAULT_CUDA_MODEL if cuda_available() else BUNDLED_NAME


def resolve_model(model: str, allow_pickle: bool = False) -> ModelSource:
    """Turn what the user typed into a `ModelSource`.

    Raises
    ------
    ValueError
        For a missing path, a pickle checkpoint without ``allow_pickle``, or text that is neither path nor hub id.
    """
    model = model.strip() or default_model()
    if model == BUNDLED_NAME:
        return ModelSource(str(BUNDLED_MODEL), "folder", BUNDLED_NAME)
    path = Path(model).expanduser()
    if path.suffix.lower() in PICKLE_SUFFIXES and not allow_pickle:
        msg = (
            f"model: '{model}' is a pickle checkpoint, which can run arbitrary code when loaded; "
            "use a .safetensors file, or pass --allow-pickle if you trust its source"
        )
        raise ValueError(msg)
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            msg = f"model: folder '{model}' is not a diffusers model (it has no model_index.json)"
            raise ValueError(msg)
        return ModelSource(str(path.resolve()), "folder", _short_name(path.resolve().name))
    if path.is_file():
        if path.suffix.lower() not in (".safetensors", ".gguf", *PICKLE_SUFFIXES):
            msg = f"model: '{model}' is not a checkpoint (allowed: a diffusers folder, .safetensors, .gguf, a hub id)"
            raise ValueError(msg)
        return ModelSource(str(local_copy(path.resolve())), "single-file", _short_name(path.stem))  # Drive → disk
    found = library.find_model("checkpoint", model)  # a file stem or A1111 hash in the models folder
    if found is not None:
        return resolve_model(str(found.path), allow_pickle)
    if _HUB_ID.match(model) and not model.startswith((".", "/", "~")):
        return ModelSource(model, "hub", model)
    allowed = "a hub id like org/name, a diffusers folder, a .safetensors file, a name in the models folder"
    hints = library.close_matches("checkpoint", model)
    hint = f". Did you mean '{hints[0]}'?" if hints else ""
    raise ValueError(f"model: no such file or folder '{model}' (allowed: {allowed}){hint}")


def _short_name(name: str) -> str:
    """A model name safe for naive A1111 readers: no ``,`` or ``:``."""
    return re.sub(r"[,:\s]+", "_", name).strip("_") or "model"


def pick_device(device: str) -> str:
    """Resolve ``auto`` to cuda, mps or cpu, whichever is there."""
    import torch

    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(dtype: str, device: str, family: Any = None) -> Any:
    """Resolve ``auto``: half precision on CUDA and MPS (the `family`'s kind of half), float32 on the CPU."""
    import torch

    if dtype == "auto":
        half = getattr(torch, family.half_dtype) if family is not None else torch.float16
        return half if device.startswith(("cuda", "mps")) else torch.float32
    return getattr(torch, _DTYPE_NAMES[dtype])


def check_available(source: ModelSource) -> bool:
    """Before anything heavy: can `source` be loaded here? For a hub id, True means "from the local cache only".

    Raises
    ------
    ValueError
        One line, within a second or two, for a hub model that is not cached while the hub is unreachable, or
        that the hub does not know.
    """
    if source.kind != "hub":
        return True
    from .hub import check_hub_model

    return check_hub_model(source.location)


def load_pipeline(
    source: ModelSource,
    device: str | None,
    dtype: Any,
    config: str = "",
    local_only: bool | None = None,
    components: dict[str, Any] | None = None,
    request: Any = None,
) -> Any:
    """Load a text-to-image pipeline from `source` onto `device` in `dtype`, printing nothing of its own.

    Third-party warnings, log lines and tqdm bars go to the ``jupyter_sd`` logger (see `quiet`).

    Parameters
    ----------
    config
        For single-file checkpoints: a diffusers folder or hub id whose configs describe the checkpoint's
        architecture (``from_single_file(config=...)``), so loading never needs the hub when it is local.
    device
        Where to put it; None leaves it on the CPU (in `dtype`) for `memory.setup` to place or offload.
    local_only
        For a hub id: load from the local cache without any network (`check_available` says whether it can).
        None asks `check_available` here.
    components
        Already loaded components to use instead of loading the model's own (a refiner borrowing the base's VAE).
    request
        The painting request, for ``--quant`` and the parts a transformer file takes from the models folder.

    Raises
    ------
    ValueError
        When a hub model is not in the local cache and the hub cannot be reached, naming the model and the way out.
    """
    from .loading import prequantized, quant, single_file
    from .quiet import quiet, refresh, silence_progress_bars

    quantize = getattr(request, "quant", "none")
    stored = _check_quantization(source, quantize, pick_device(getattr(request, "device", "auto")))
    if local_only is None:
        local_only = check_available(source)
    with quiet():
        _configure_transformers_logging()  # before diffusers imports transformers, so its first warning is caught
        import diffusers

        refresh()
        silence_progress_bars()
        kwargs: dict[str, Any] = {_dtype_keyword(diffusers.__version__): dtype, **(components or {})}
        if source.is_bundled and "text_encoder" not in kwargs:  # its CLIP without transformers' first-load cost
            kwargs.update(fast_load.bundled_components(source.location, dtype))
        if source.kind == "single-file":
            parts = (getattr(request, "vae", ""), text_encoders(getattr(request, "text_encoder", "")))
            pipe = single_file.load(diffusers, source.location, config, kwargs, parts)
            _evaluation_mode(pipe)
        else:
            pipe = _load_pretrained(diffusers, source, {**kwargs, **quant.load_kwargs(quantize, dtype)}, local_only)
        quant.apply(pipe, quantize, dtype)
        pipe._jupyter_sd_quant = getattr(pipe, "_jupyter_sd_quant", "") or prequantized.describe(stored)
        pipe.set_progress_bar_config(disable=True)
        return pipe.to(device) if device else pipe


def _check_quantization(source: ModelSource, quantize: str, device: str) -> dict[str, str]:
    """Refuse before loading what cannot run here (``--quant``, a pre-quantized folder); the stored quantization."""
    from .loading import prequantized, quant

    quant.check(quantize, device, source.kind == "single-file")
    if source.kind == "single-file":
        return {}
    stored = prequantized.stored(lambda part: component_config(source, part))
    prequantized.check(stored, device, quantize, source.name)
    return stored


def _evaluation_mode(pipe: Any) -> None:
    """Every model of a pipeline in evaluation mode: dropout off.

    diffusers' ``from_single_file`` leaves the T5 it builds from a whole SD3/Flux file in training mode (its
    ``create_diffusers_t5_model_from_checkpoint`` never calls ``eval()``): T5's dropout then changes every picture.
    """
    for component in pipe.components.values():
        if hasattr(component, "eval") and getattr(component, "training", False):
            component.eval()


def text_encoders(text: str) -> tuple[str, ...]:
    """``--text-encoder clip_l,t5xxl_fp16`` → its names."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _load_pretrained(diffusers: Any, source: ModelSource, kwargs: dict[str, Any], local_only: bool) -> Any:
    from . import hub

    if source.kind == "hub" and local_only:
        kwargs["local_files_only"] = True
    try:
        model_index = diffusers.DiffusionPipeline.load_config(source.location, **_only_local(kwargs))
        if "safety_checker" in model_index:
            kwargs.update(safety_checker=None, requires_safety_checker=False)
        return _from_pretrained(diffusers, source, kwargs)
    except OSError as error:
        if source.kind == "folder":
            raise
        if local_only and not hub.offline_mode() and hub.probe(source.location) == "found":
            kwargs.pop("local_files_only", None)  # the cache holds only part of it: fetch the rest
            return diffusers.DiffusionPipeline.from_pretrained(source.location, **kwargs)
        msg = f"{hub.unreachable_message(source.location)} ({hub.describe(error)})"
        raise ValueError(msg) from error


def _from_pretrained(diffusers: Any, source: ModelSource, kwargs: dict[str, Any]) -> Any:
    """From the hub in half precision, try the ``fp16`` variant first: half the download and half the host RAM."""
    import torch

    dtype = kwargs.get("dtype", kwargs.get("torch_dtype"))
    if source.kind == "hub" and dtype == torch.float16:
        try:
            return diffusers.DiffusionPipeline.from_pretrained(source.location, variant="fp16", **kwargs)
        except (OSError, ValueError):  # no fp16 files in this repository: the full-precision ones, cast on load
            pass
    return diffusers.DiffusionPipeline.from_pretrained(source.location, **kwargs)


def _configure_transformers_logging() -> None:
    from .quiet import refresh

    try:
        import transformers.utils.logging  # noqa: F401 - makes its stderr handler, which `refresh` then filters
    except ImportError:  # pragma: no cover - transformers comes with every pipeline we load
        return
    refresh()


def _only_local(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {"local_files_only": True} if kwargs.get("local_files_only") else {}


def component_config(source: ModelSource, name: str) -> dict[str, Any] | None:
    """The saved config of one component of a folder or cached hub model (None when it can't be read offline)."""
    import json

    path: Path | None = None
    if source.kind == "folder":
        path = Path(source.location) / name / "config.json"
    elif source.kind == "hub":
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(source.location, f"{name}/config.json")
        path = Path(cached) if isinstance(cached, str) else None
    try:
        return json.loads(path.read_text()) if path is not None and path.is_file() else None
    except (OSError, ValueError):
        return None


def choose_preset(request: Any, source: ModelSource, pipe: Any, family: str) -> tuple[Any, str]:
    """Apply ``--preset`` (auto: what the model says it is) to the options left at their defaults.

    Returns
    -------
    tuple
        The request with the preset's steps, CFG, sampler and schedule where the user set none, and the one line
        saying which preset applied (empty when none did).
    """
    from ..recipe import presets

    if request.preset == "none":
        return request, ""
    if request.preset == "auto":
        names = [source.name, Path(source.location).name, *presets.lora_names(request.prompt)]
        scheduler = getattr(pipe, "_jupyter_sd_base_scheduler_config", None) or dict(pipe.scheduler.config)
        found = presets.detect(names, scheduler, _model_card(source), family)
        if found is None:
            return request, ""
        key, steps = found
    else:
        key, steps = request.preset, None
    values = {name: getattr(request, name) for name in presets.PRESET_FIELDS}
    changes, line = presets.apply(values, request.given, key, steps)
    if request.preset != "auto":
        line = line.replace(" detected:", " preset:")
    return request.replace(**changes), line


def _model_card(source: ModelSource) -> str:
    """The model card (README.md) of a folder or a cached hub model, if there is one; never the network."""
    path: Path | None = None
    if source.kind == "folder":
        path = Path(source.location) / "README.md"
    elif source.kind == "hub":
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(source.location, "README.md")
        path = Path(cached) if isinstance(cached, str) else None
    try:
        return path.read_text(encoding="utf-8", errors="replace")[:20000] if path and path.is_file() else ""
    except OSError:
        return ""


def _dtype_keyword(version: str) -> str:
    """Diffusers 0.42 renamed ``torch_dtype`` to ``dtype``; Colab's older diffusers only knows the old name."""
    major, minor = (int(part) for part in version.split(".")[:2])
    return "dtype" if (major, minor) >= (0, 42) else "torch_dtype"


def source_family(source: ModelSource) -> Any:
    """The family of a folder or cached hub model from its ``model_index.json``, before loading (None if unknown)."""
    from .families import family_of_folder

    folder: Path | None = Path(source.location) if source.kind == "folder" else None
    if source.kind == "hub":
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(source.location, "model_index.json")
        folder = Path(cached).parent if isinstance(cached, str) else None
    try:
        return family_of_folder(folder) if folder is not None else None
    except (OSError, ValueError):  # unreadable, or no family: loading says so in its own words
        return None


def native_size(pipe: Any) -> int:
    """The size a model was trained at: its denoiser's sample size × VAE scale (64×8 = 512 for SD 1.5).

    A denoiser whose config has no sample size (Flux's transformer) takes its family's native size.
    """
    from .families import family_of

    denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
    sample = getattr(denoiser.config, "sample_size", None)
    if sample is None:
        return family_of(pipe).native_size
    sample = sample[0] if isinstance(sample, (list, tuple)) else sample
    return int(sample) * int(getattr(pipe, "vae_scale_factor", 8))
