"""What kind of model a file holds (checkpoint, LoRA, LyCORIS, embedding, VAE, upscaler), from its tensor names.

Used when a download's kind is not known from civitai's answer. The names come from a ``.safetensors`` header
(a length and a JSON table, no tensor data) or, for a pickle checkpoint, from the opcodes of its ``data.pkl``
walked with `pickletools` — read, never unpickled, so no code in the file runs. No torch.
"""

from __future__ import annotations

import json
import pickletools
import struct
import zipfile
from collections.abc import Iterable
from pathlib import Path

_MAX_HEADER = 100 << 20
_LYCORIS_MARKS = (".hada_w1", ".hada_w2", ".lokr_w1", ".lokr_w2", ".oft_", ".ia3", "oft_blocks", ".oft_diag")
_LORA_MARKS = (".lora_down.", ".lora_up.", ".lora_A.", ".lora_B.", ".lora.down.", ".lora.up.", ".lora_mid.")
_CONTROLNET_MARKS = ("control_model.", "input_hint_block.", "controlnet_cond_embedding.", "controlnet_down_blocks.",
                     "controlnet_blocks.", "controlnet_x_embedder.", "control_all_x_embedder.")  # fmt: skip
"""ControlNet 1.0 (``control_model.``), 1.1 (``input_hint_block.``) and diffusers' layout; the transformer families'
(Flux's InstantX/XLabs, SD3, Qwen-Image: ``controlnet_blocks.``; Z-Image: ``control_all_x_embedder.``)."""
_EMBEDDING_KEYS = {"emb_params", "string_to_param", "string_to_token", "clip_l", "clip_g", "*"}

KINDS: dict[str, str] = {
    "checkpoint": "checkpoint",
    "lora": "LoRA",
    "lycoris": "LyCORIS",
    "embedding": "embedding",
    "vae": "VAE",
    "upscaler": "upscaler",
    "controlnet": "ControlNet",
}
"""What a file can hold → the word used for it in messages. LyCORIS files live with LoRA (A1111's ``Lora/``)."""


def folder_kind(kind: str) -> str:
    """The models-folder kind (`library.SUBFOLDERS` key) a file of `kind` goes into."""
    return "lora" if kind == "lycoris" else kind


def tensor_names(path: str | Path) -> list[str]:
    """The tensor (and top-level key) names in a ``.safetensors`` file or a zip-format pickle checkpoint.

    Raises
    ------
    ValueError
        When the file is neither, or is damaged.
    """
    path = Path(path)
    with open(path, "rb") as handle:
        start = handle.read(8)
        if len(start) == 8 and not start.startswith(b"PK"):
            (length,) = struct.unpack("<Q", start)
            if 1 < length <= _MAX_HEADER:
                try:
                    header = json.loads(handle.read(length))
                except ValueError:
                    header = None
                if isinstance(header, dict):
                    return [key for key in header if key != "__metadata__"]
    if zipfile.is_zipfile(path):
        return _pickle_strings(path)
    msg = f"download: {path.name} is neither a .safetensors file nor a zip-format pickle checkpoint"
    raise ValueError(msg)


def _pickle_strings(path: Path) -> list[str]:
    """The strings a zip checkpoint's ``data.pkl`` mentions (its dict keys among them), without unpickling."""
    with zipfile.ZipFile(path) as archive:
        names = [name for name in archive.namelist() if name.endswith("data.pkl")]
        if not names:
            msg = f"download: {path.name} is a zip file without a data.pkl (not a torch checkpoint)"
            raise ValueError(msg)
        data = archive.read(names[0])
    found = []
    try:
        for opcode, argument, _ in pickletools.genops(data):
            if isinstance(argument, str) and "UNICODE" in opcode.name:
                found.append(argument)
    except Exception:  # a truncated or odd pickle: classify from what was read  # noqa: BLE001
        pass
    return found


def classify(names: Iterable[str]) -> str | None:
    """Tell a file's kind from its tensor names, or None when they fit no kind we know.

    Checkpoints hold the UNet under ``model.diffusion_model.``; LoRA use kohya's ``lora_down``/``lora_up`` (LoCon
    too) or PEFT's ``lora_A``/``lora_B``; LyCORIS adds LoHa (``hada_``), LoKr (``lokr_``), OFT and IA3; textual
    inversion embeddings are a few vectors (``emb_params``, ``string_to_param``, SDXL's ``clip_l``/``clip_g``);
    a VAE is an ``encoder.``/``decoder.`` pair alone; an upscaler (ESRGAN, Real-ESRGAN) has RRDB blocks.
    """
    names = list(names)
    if any(name.startswith(_CONTROLNET_MARKS) or ".input_hint_block." in name for name in names):
        return "controlnet"  # before checkpoints: ControlNet 1.0 files carry a whole SD model beside control_model.
    if any(n.startswith("image_proj.") for n in names) and any(n.startswith("ip_adapter.") for n in names):
        return "controlnet"  # an IP-Adapter (h94's layout): sd-webui-controlnet keeps them in ControlNet/
    if any(n.startswith("ip_adapter_proj_model.") for n in names):
        return "controlnet"  # Flux's IP-Adapter (XLabs' layout), kept beside the others
    if any(name.startswith("model.diffusion_model.") for name in names):
        return "checkpoint"
    if any(".RDB1." in name or ".rdb1." in name for name in names) and any(
        name.startswith(("model.0.", "conv_first.")) for name in names
    ):
        return "upscaler"  # ESRGAN (the original model.N. layout) or BasicSR's RRDBNet (Real-ESRGAN)
    if any(mark in name for name in names for mark in _LYCORIS_MARKS):
        return "lycoris"
    if any(mark in name for name in names for mark in _LORA_MARKS):
        return "lora"
    if names and set(names) <= _EMBEDDING_KEYS | {"name", "step", "sd_checkpoint", "sd_checkpoint_name"}:
        return "embedding"
    if "string_to_param" in names:
        return "embedding"
    if any(name.startswith(("encoder.", "first_stage_model.encoder.")) for name in names) and any(
        name.startswith(("decoder.", "first_stage_model.decoder.")) for name in names
    ):
        return "vae"
    if "body.0.weight" in names and "body.1.weight" in names and "body.2.weight" in names:
        return "upscaler"  # Real-ESRGAN's compact network: a plain run of body convs and PReLUs
    return None


def file_kind(path: str | Path) -> str | None:
    """Tell the kind of a model file from its tensor names (None when they fit no kind we know)."""
    return classify(tensor_names(path))
