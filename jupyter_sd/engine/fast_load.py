"""The bundled model's text encoder without transformers' first-load cost, and a first call paid before the user's.

transformers' ``from_pretrained`` builds, on its first use in a process, the weight-renaming table of every model
it knows (about a thousand regular expressions: half of the bundled model's load time on a fresh kernel). The
bundled model's CLIP needs one renaming (its checkpoint's ``text_model.`` prefix), so we build it from its config
and load its weights directly; any mismatch falls back to ``from_pretrained``. `first_call` runs the loaded
pipeline's models once on dummy inputs in the warm-up thread, so the first picture does not pay their first-call
costs (memory allocation, kernel selection).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

_LOG = logging.getLogger("jupyter_sd.fast_load")
BUNDLED_MODEL = Path(__file__).parent.parent / "models" / "tiny"
"""The bundled demo model's folder (models.py resolves ``--model tiny`` to it)."""
PREFIX = "text_model."
"""The key prefix of CLIP text-encoder checkpoints that transformers' CLIPTextModel renames away on load."""


def bundled_components(folder: str | Path, dtype: Any = None) -> dict[str, Any]:
    """``{"text_encoder": …}`` built directly for `folder` (the bundled model), or {} where that does not fit."""
    encoder = clip_text_encoder(Path(folder), dtype)
    return {} if encoder is None else {"text_encoder": encoder}


def clip_text_encoder(folder: Path, dtype: Any = None) -> Any | None:
    """`folder`'s ``text_encoder`` (a CLIPTextModel in safetensors) built directly, or None where it is not one."""
    from safetensors.torch import load_file
    from transformers import CLIPTextConfig, CLIPTextModel

    where = Path(folder) / "text_encoder"
    weights = where / "model.safetensors"
    if not weights.is_file():
        return None
    config = CLIPTextConfig.from_pretrained(where)
    if config.architectures not in (None, ["CLIPTextModel"]):
        return None
    model = CLIPTextModel(config)  # random weights first: the bundled encoder is small, this costs milliseconds
    state = {key.removeprefix(PREFIX): value for key, value in load_file(weights).items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:  # another layout: transformers' own loader knows it
        _LOG.debug("fast CLIP load refused: %s", error)
        return None
    model = model.to(dtype) if dtype is not None else model
    return model.eval().requires_grad_(False)


def first_call(pipe: Any) -> Any:
    """Run the bundled model's text encoder, UNet and VAE decoder once on dummy inputs and return `pipe`.

    CFG's batch of two at its native size; other models are returned untouched (on a CPU one such call costs a step).
    """
    import torch

    if Path(getattr(pipe, "name_or_path", None) or "").resolve() != BUNDLED_MODEL.resolve():
        return pipe
    unet, vae, encoder = pipe.unet, pipe.vae, pipe.text_encoder
    size = int(unet.config.sample_size)
    with torch.inference_mode():
        tokens = torch.zeros((2, int(encoder.config.max_position_embeddings)), dtype=torch.long, device=unet.device)
        text = encoder(tokens)[0].to(unet.dtype)
        latents = torch.zeros((2, unet.config.in_channels, size, size), dtype=unet.dtype, device=unet.device)
        unet(latents, torch.tensor(999), encoder_hidden_states=text)
        vae.decode(latents[:1].to(vae.dtype))
    return pipe
