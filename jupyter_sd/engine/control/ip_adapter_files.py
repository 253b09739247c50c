"""Where an IP-Adapter unit's files are: the adapter by name, path or hub file, and its image encoder beside it.

The adapter: a file (or its stem, or its path inside the folder) in the models folder's ``ControlNet/`` (A1111,
Forge and sd-webui-controlnet keep IP-Adapters there; the bracketed hash finds it too) or ``ipadapter/``
(ComfyUI), a path, or a hub file ``h94/IP-Adapter/models/ip-adapter_sd15.safetensors`` (diffusers' repository,
``subfolder`` and ``weight_name``).

The image encoder (transformers' ``CLIPVisionModelWithProjection``) is the first of these that exists and fits the
adapter's input width:

1. ``image_encoder/`` beside the adapter file: h94's layout, which diffusers' ``load_ip_adapter`` reads (a folder
   with ``config.json``; on the hub ``models/image_encoder`` serves the ViT-H adapters of ``sdxl_models/`` too);
2. the models folder's ``clip_vision/`` (ComfyUI), then ``ControlNet/annotators/clip_vision/`` (sd-webui-controlnet's
   downloads): a file or folder named for the module's encoder (ViT-H: ``CLIP-ViT-H-14-laion2B-s32B-b79K``,
   ``clip_h``; ViT-bigG: ``CLIP-ViT-bigG-14-laion2B-39B-b160k``, ``clip_g``; ViT-L, Flux's:
   ``clip-vit-large-patch14``, ``clip_vision_l``, ``clip_l``; SigLIP, SD3.5's: ``siglip-so400m-patch14-384``,
   ``sigclip_vision_patch14_384``).

SD3.5's adapter (InstantX/SD3.5-Large-IP-Adapter) takes a SigLIP encoder (transformers' ``SiglipVisionModel``,
google/siglip-so400m-patch14-384): `load_siglip` gives it with its ``SiglipImageProcessor``.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ... import library

ENCODER_NAMES: dict[str, tuple[str, ...]] = {
    "ViT-L": ("clip-vit-large-patch14", "clip_vision_l", "clip_l", "CLIP-ViT-L-14"),
    "ViT-H": ("CLIP-ViT-H-14-laion2B-s32B-b79K", "clip_h", "clip_vision_h"),
    "ViT-bigG": ("CLIP-ViT-bigG-14-laion2B-39B-b160k", "clip_g", "clip_vision_g"),
    "SigLIP": ("siglip-so400m-patch14-384", "sigclip_vision_patch14_384", "siglip_vision"),
}
"""The names ComfyUI, Forge and sd-webui-controlnet give each image encoder's file."""
MODULE_ENCODERS: dict[str, str | None] = {
    "ip-adapter_clip_sd15": "ViT-H",
    "ip-adapter_clip_h": "ViT-H",
    "ip-adapter_clip_sdxl_plus_vith": "ViT-H",
    "ip-adapter_clip_sdxl": "ViT-bigG",
    "ip-adapter_clip_g": "ViT-bigG",
    "ip-adapter_clip_l": "ViT-L",
    "ip-adapter_siglip": "SigLIP",
    "ip-adapter-auto": None,
}
"""sd-webui-controlnet's IP-Adapter preprocessors and the encoder each runs (auto: by the adapter's name).

``ip-adapter_clip_l`` (CLIP ViT-L/14, Flux's XLabs adapter) and ``ip-adapter_siglip`` (SigLIP so400m, SD3.5's
InstantX adapter) are ours, named as the extension names the others: neither sd-webui-controlnet nor Forge has a
Flux or SD3 IP-Adapter preprocessor."""
_SUFFIXES = (".safetensors", ".bin", ".pth")


@dataclass(frozen=True)
class AdapterFile:
    """An adapter's weights file and the name and cache key sd-webui-controlnet's infotext and we use for it."""

    path: Path
    name: str
    key: tuple


def encoder_kind(module: str, adapter_name: str) -> str:
    """The encoder a module runs: its own, or for ``ip-adapter-auto`` the one the adapter's name says."""
    kind = MODULE_ENCODERS[module]
    if kind is not None:
        return kind
    name = adapter_name.lower()
    return "ViT-bigG" if "sdxl" in name and "vit-h" not in name and "vith" not in name else "ViT-H"


def find_adapter(name: str, model_hash: str | None = None) -> AdapterFile:
    """The adapter file a unit names (a hub file is downloaded once, or refused offline in one line)."""
    name = str(name).strip()
    if not name or name.lower() == "none":
        raise ValueError(
            "controlnet: the IP-Adapter unit names no model; give Model: NAME (in ControlNet/ or ipadapter/)"
        )
    found = library.find_model("controlnet", name)
    path = found.path if found is not None else _in_ipadapter_folder(name)
    if path is None and model_hash:  # a pasted ``NAME [hash]`` whose file is here under another name
        found = library.find_model("controlnet", model_hash)
        path = found.path if found is not None else _in_ipadapter_folder(model_hash, by_hash=True)
    if path is None and Path(name).expanduser().is_file():
        path = Path(name).expanduser()
    if path is None and name.count("/") >= 2 and Path(name).suffix in _SUFFIXES and not name.startswith((".", "/")):
        path = _hub_file(name)
    if path is None or not path.is_file():
        folder = library.models_dir()
        msg = f"controlnet: no IP-Adapter '{name}' in {folder}/ControlNet or ipadapter (a file, path or hub file)"
        raise ValueError(msg[:199])
    from ..network_state import file_stamp

    return AdapterFile(path, path.stem, (str(path.resolve()), *file_stamp(path)))


def _in_ipadapter_folder(name: str, by_hash: bool = False) -> Path | None:
    """A file in ComfyUI's ``ipadapter/`` by stem or relative path, or by sd-webui-controlnet's 8-hex hash."""
    folder = library.models_dir() / "ipadapter"
    if not folder.is_dir():
        return None
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in _SUFFIXES and p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if by_hash and library.short_hash("controlnet", path) == name.lower():
            return path
        if not by_hash and name in (path.stem, relative, relative.rsplit(".", 1)[0]):
            return path
    return None


def _hub_file(name: str) -> Path:
    """``owner/repo/sub/folder/file.safetensors`` from the hub (its cache), with the image encoder h94 ships."""
    from huggingface_hub import hf_hub_download

    from ..hub import check_hub_model, is_cached

    owner, repo, *inside = name.split("/")
    repo_id, filename = f"{owner}/{repo}", "/".join(inside)
    subfolder = filename.rpartition("/")[0]
    encoder = f"{subfolder}/image_encoder" if subfolder else "image_encoder"
    if "sdxl" in filename and ("vit-h" in filename or "vith" in filename):
        encoder = "models/image_encoder"  # h94: the ViT-H SDXL adapters take the SD1.5 folder's encoder
    local = is_cached(repo_id, filename)
    if not local:
        try:
            check_hub_model(repo_id)
        except ValueError as error:
            raise ValueError(str(error).replace("model:", "controlnet:", 1)[:199]) from None
    path = Path(hf_hub_download(repo_id, filename, local_files_only=local))
    for part in ("config.json", "model.safetensors"):
        try:
            hf_hub_download(repo_id, f"{encoder}/{part}", local_files_only=local and is_cached(repo_id, part))
        except Exception:  # no encoder there: the usual search refuses in one line
            break
    return path


def adapter_input_width(state: dict) -> int | None:
    """The encoder width an adapter takes: its image embeddings' (plain) or its hidden states' (plus, a Resampler)."""
    proj = state["image_proj"]
    if "proj.weight" in proj:
        return int(proj["proj.weight"].shape[1])
    if "proj_in.weight" in proj:
        return int(proj["proj_in.weight"].shape[1])
    return None


def find_encoder(adapter: AdapterFile, kind: str, width: int | None, plus: bool) -> Path:
    """The image encoder for `adapter` (see the module's docstring), or one line saying where it looks."""
    candidates = [adapter.path.parent / "image_encoder"]
    roots = (library.models_dir() / "clip_vision", library.subfolder("controlnet") / "annotators" / "clip_vision")
    for root in roots:
        for stem in ENCODER_NAMES[kind]:
            candidates += [root / stem, *(root / f"{stem}{suffix}" for suffix in _SUFFIXES)]
    for path in candidates:
        found = _encoder_width(path, plus) if path.exists() else -1
        if found == 0 or (found > 0 and width in (None, found)):  # 0: a pickle, read only when loaded
            return path
    msg = f"controlnet: no {kind} image encoder for {adapter.name}: put {ENCODER_NAMES[kind][0]}.safetensors in the "
    msg += "models folder's clip_vision/, or an image_encoder/ folder beside the adapter"
    raise ValueError(msg[:199])


def _encoder_width(path: Path, plus: bool) -> int:
    """The width an encoder gives: its projection (plain adapters) or hidden size (plus, SigLIP); 0 unknown, -1 none."""
    key = "hidden_size" if plus else "projection_dim"
    if path.is_dir():
        config = path / "config.json"
        if not config.is_file():
            return -1
        values = json.loads(config.read_text())
        return int(values.get("vision_config", values).get(key, -1))
    if path.suffix != ".safetensors":
        return 0
    with path.open("rb") as file:
        header = json.loads(file.read(struct.unpack("<Q", file.read(8))[0]))
    name = "embeddings.patch_embedding.weight" if plus else "visual_projection.weight"
    shape = (header.get(f"vision_model.{name}") or header.get(name) or {}).get("shape")
    return int(shape[0]) if shape else -1


def load_encoder(path: Path, allow_pickle: bool, act: str = "gelu") -> Any:
    """A CLIP vision encoder from a diffusers/transformers folder, or a single file of transformers' keys.

    A single file has no config: `act` is its activation (LAION's ViT-H/bigG: GELU; OpenAI's ViT-L: quick GELU).
    """
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from ..network_state import quiet_loading, read_weights

    if path.is_dir():
        with quiet_loading():
            return CLIPVisionModelWithProjection.from_pretrained(str(path))
    weights = read_weights(path, allow_pickle, "controlnet")
    patch = weights["vision_model.embeddings.patch_embedding.weight"]
    positions = int(weights["vision_model.embeddings.position_embedding.weight"].shape[0])
    layers = len({k.split(".")[3] for k in weights if k.startswith("vision_model.encoder.layers.")})
    config = CLIPVisionConfig(
        hidden_size=int(patch.shape[0]),
        patch_size=int(patch.shape[2]),
        image_size=int(patch.shape[2]) * round((positions - 1) ** 0.5),
        num_hidden_layers=layers,
        num_attention_heads=16,  # ViT-L/14, ViT-H/14 and ViT-bigG/14 all have 16 heads
        intermediate_size=int(weights["vision_model.encoder.layers.0.mlp.fc1.weight"].shape[0]),
        projection_dim=int(weights["visual_projection.weight"].shape[0]),
        hidden_act=act,
    )
    model = CLIPVisionModelWithProjection(config)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    wrong = [k for k in missing if not k.endswith("position_ids")] + list(unexpected)
    if wrong:
        raise ValueError(f"controlnet: {path.name} is not a CLIP vision encoder (transformers' keys; {wrong[0]})"[:199])
    return model.eval()


def load_siglip(path: Path, allow_pickle: bool) -> tuple[Any, Any]:
    """A SigLIP vision encoder and its image processor: a transformers folder, or one file of transformers' keys.

    A folder may hold the whole SigLIP model (google's repository: its text half is not loaded); a single file has no
    config, so its shape is read from the weights (16 heads, as so400m's) and its processor sized to its pictures.
    """
    from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

    from ..network_state import quiet_loading, read_weights

    if path.is_dir():
        with quiet_loading():
            model = SiglipVisionModel.from_pretrained(str(path))
            if (path / "preprocessor_config.json").is_file():
                return model.eval(), SiglipImageProcessor.from_pretrained(str(path))
        size = int(model.config.image_size)
        return model.eval(), SiglipImageProcessor(size={"height": size, "width": size})
    raw = read_weights(path, allow_pickle, "controlnet")
    weights = {k.removeprefix("vision_model."): v for k, v in raw.items() if not k.startswith(("text_model.", "logit"))}
    patch = weights.get("embeddings.patch_embedding.weight")
    if patch is None:
        raise ValueError(f"controlnet: {path.name} is not a SigLIP vision encoder (transformers' keys)"[:199])
    positions = int(weights["embeddings.position_embedding.weight"].shape[0])
    config = SiglipVisionConfig(
        hidden_size=int(patch.shape[0]),
        patch_size=int(patch.shape[2]),
        image_size=int(patch.shape[2]) * round(positions**0.5),
        num_hidden_layers=len({k.split(".")[2] for k in weights if k.startswith("encoder.layers.")}),
        num_attention_heads=16,
        intermediate_size=int(weights["encoder.layers.0.mlp.fc1.weight"].shape[0]),
        vision_use_head="head.probe" in weights,
    )
    model = SiglipVisionModel(config)
    prefix = "vision_model." if any(k.startswith("vision_model.") for k in model.state_dict()) else ""
    missing, _ = model.load_state_dict({prefix + k: v for k, v in weights.items()}, strict=False)
    if [k for k in missing if not k.endswith("position_ids")]:
        raise ValueError(f"controlnet: {path.name} is not a SigLIP vision encoder ({missing[0]} missing)"[:199])
    size = config.image_size
    return model.eval(), SiglipImageProcessor(size={"height": size, "width": size})
