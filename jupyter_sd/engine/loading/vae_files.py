"""VAE files in their makers' names → diffusers' names: Flux.2's (BFL's ``flux2-vae.safetensors``, ComfyUI's).

diffusers 0.42 has no single-file mapping for ``AutoencoderKLFlux2`` (it is not among ``from_single_file``'s
loadable classes). Its weights are the LDM VAE's (``encoder.down.N.block.M``, ``mid.attn_1`` …) plus the latent
batch-norm's statistics (``bn.running_mean``, ``bn.running_var``); BFL keeps the quant convolutions inside the
coders (``encoder.quant_conv``, ``decoder.post_quant_conv``), ComfyUI at the top (``quant_conv``, as it renames
them on loading and its Checkpoint Save writes them). Here those two are renamed, the LDM body goes through
diffusers' own ``convert_ldm_vae_checkpoint``, and the statistics pass as they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .files import first_line

_BFL_TOP = {"encoder.quant_conv.": "quant_conv.", "decoder.post_quant_conv.": "post_quant_conv."}
_STATISTICS = ("bn.running_mean", "bn.running_var", "bn.num_batches_tracked")


def _diffusers_names(names: Any) -> bool:
    """Tensor names already diffusers' (``encoder.down_blocks.…``), not a maker's (``encoder.down.…``)."""
    return any(name.startswith("encoder.down_blocks.") for name in names)


def flux2_to_diffusers(tensors: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """A Flux.2 VAE's tensors in BFL's or ComfyUI's names (``vae.`` prefix or not) → ``AutoencoderKLFlux2``'s."""
    import torch
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    plain = {}
    for name, tensor in tensors.items():
        name = name.removeprefix("vae.")
        for old, new in _BFL_TOP.items():
            if name.startswith(old):
                name = new + name[len(old) :]
        plain[name] = tensor
    state = convert_ldm_vae_checkpoint({n: t for n, t in plain.items() if n not in _STATISTICS}, config)
    state.update({n: plain[n] for n in _STATISTICS if n in plain})
    state.setdefault("bn.num_batches_tracked", torch.tensor(0))  # (BFL keeps no count; nothing reads it in eval)
    return state


def _wan_to_diffusers(tensors: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """Qwen-Image's VAE in Wan 2.1's reference names, through diffusers' Wan VAE converter."""
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    return convert_wan_vae_to_diffusers({n.removeprefix("vae."): t for n, t in tensors.items()})


CONVERTERS = {
    "AutoencoderKLFlux2": ("BFL's layout", flux2_to_diffusers),
    "AutoencoderKLQwenImage": ("Wan 2.1's layout", _wan_to_diffusers),
}
"""VAE classes whose files come in their makers' names: the layout's name and the function renaming it."""


def load_vae(cls: Any, config: dict[str, Any], tensors: dict[str, Any], dtype: Any, what: str) -> Any:
    """A VAE of `cls` and `config` holding `tensors`, in its makers' names (renamed by `CONVERTERS`) or diffusers'.

    ``what`` begins the refusal (``model: the VAE in 'x.safetensors' does not fit --model-config's``).

    Raises
    ------
    ValueError
        One line naming `what` when the tensors do not fit (another layout or width).
    """
    from accelerate import init_empty_weights

    layout, convert = CONVERTERS.get(cls.__name__, ("diffusers' layout", None))
    if convert is not None and not _diffusers_names(tensors):
        tensors = convert(tensors, dict(config))
    with init_empty_weights():
        model = cls.from_config(config)
    state = {n: t.to(dtype) if t.is_floating_point() else t for n, t in tensors.items()}
    wanted = set(model.state_dict())
    if set(state) != wanted:
        odd = sorted(wanted - set(state)) or sorted(set(state) - wanted)
        msg = f"{what} {cls.__name__} ({layout}: {len(wanted - set(state))} weights missing, e.g. {odd[0]})"
        raise ValueError(msg[:199])
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as error:  # a shape that differs: another width
        raise ValueError(f"{what} {cls.__name__} ({first_line(error)})"[:199]) from error
    return model.eval()


def load_vae_file(diffusers: Any, config: str, path: Path, dtype: Any) -> Any:
    """``--vae``'s file for a transformer file's pipeline, as ``--model-config``'s VAE class (its config)."""
    from safetensors.torch import load_file

    name = (diffusers.DiffusionPipeline.load_config(config).get("vae") or ["", ""])[-1]
    cls = getattr(diffusers, name)
    tensors = load_file(str(path))
    what = f"vae: '{path.name}' does not fit --model-config's"
    return load_vae(cls, cls.load_config(config, subfolder="vae"), tensors, dtype, what)
