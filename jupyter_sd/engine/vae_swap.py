"""``--vae``: swap the model's VAE for one from the models folder (A1111/LDM or diffusers layout), and back.

The model's own VAE is kept on the pipeline's network state, so a request without ``--vae`` paints with it again
and nothing is loaded twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import library
from ..recipe.request import PaintRequest
from .network_state import NetworkState, Notice, file_stamp, first_line, hash_with_notice, read_weights, state_of


def set_vae(pipe: Any, state: NetworkState, request: PaintRequest, notice: Notice, params: dict[str, str]) -> tuple:
    """Put the requested VAE on the pipeline, or the model's own back when none is asked for."""
    path = _vae_path(request.vae, notice) if request.vae else None
    if path is None:
        if state.own_vae is not None and state.vae is not None:
            pipe.vae = state.own_vae
            state.vae = None
        return ()
    stamp = (str(path), *file_stamp(path))
    if state.vae != stamp:
        try:
            vae = _load_vae(path, pipe, request.allow_pickle)
        except (ValueError, OSError, RuntimeError) as error:
            text = str(error)
            notice(
                text
                if text.startswith("vae:")
                else f"vae: could not load {path.name} ({first_line(error)}); painting with the model's own"
            )
            if state.own_vae is not None and state.vae is not None:
                pipe.vae = state.own_vae
                state.vae = None
            return ()
        if state.own_vae is None:
            state.own_vae = pipe.vae
        pipe.vae = vae
        state.vae = stamp
        state.loads += 1
    if path.is_file():
        params["VAE hash"] = hash_with_notice("vae", path, notice)
    params["VAE"] = path.name
    return stamp


def _vae_path(vae: str, notice: Notice) -> Path | None:
    path = Path(vae).expanduser()
    if path.exists():
        return path.resolve()
    found = library.find_model("vae", vae)
    if found is None:
        notice(library.not_found_message("vae", vae) + "; painting with the model's own")
        return None
    return found.path


def _load_vae(path: Path, pipe: Any, allow_pickle: bool) -> Any:
    """A VAE of the model's class and shape, with the file's weights (diffusers layout; A1111/LDM for AutoencoderKL).

    Flux's ``ae.safetensors`` (LDM layout) fits Flux, Chroma and Z-Image; Flux.2's takes BFL's
    ``flux2-vae.safetensors`` (LDM names, its batch-norm statistics) or its diffusers layout; Qwen-Image's its
    diffusers layout.
    """
    from diffusers import AutoencoderKL

    own = state_of(pipe).own_vae or pipe.vae
    vae_class = type(own)
    if path.is_dir():
        vae = vae_class.from_pretrained(str(path))
    else:
        weights = read_weights(path, allow_pickle, "vae")
        weights = weights.get("state_dict", weights)
        is_ldm = any(key.startswith(("encoder.down.", "first_stage_model.", "decoder.up.")) for key in weights)
        if is_ldm and vae_class is AutoencoderKL:
            from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

            weights = convert_ldm_vae_checkpoint(weights, dict(own.config))
        elif is_ldm:  # BFL's flux2-vae.safetensors: diffusers has no single-file mapping for its class
            from .loading.vae_files import CONVERTERS

            convert = CONVERTERS.get(vae_class.__name__, (None, None))[1]
            weights = convert(weights, dict(own.config)) if convert else weights
        vae = vae_class.from_config(own.config)
        try:
            vae.load_state_dict(weights, strict=True)
        except RuntimeError as error:
            msg = f"vae: {path.name} does not fit this model's VAE ({first_line(error)}); painting with the model's own"
            raise ValueError(msg) from error
    return vae.to(own.device, own.dtype)
