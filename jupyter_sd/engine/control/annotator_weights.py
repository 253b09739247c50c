"""Where the preprocessors' (annotators') weights live, and getting them there once.

They go in the models folder's ``ControlNet/annotators/``, one subfolder per annotator as sd-webui-controlnet's
``annotator/downloads/`` has them (``hed/ControlNetHED.pth``, ``lineart/sk_model.pth`` …), under the names their
publishers give them; a file put straight in ``annotators/`` is found too. Model folders (transformers' models,
Marigold's diffusers pipeline) keep their repo's layout in a subfolder named after the repo. A missing file is
downloaded once from its Hugging Face repo through our downloads (progress line, ``.part`` resume,
``HF_ENDPOINT``); offline, or when the download fails, the preprocessor is refused in one line naming the file and
where to put it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ... import library


@dataclass(frozen=True)
class Weights:
    """An annotator's published files: the repo they come from, the folder they go in, the files it needs.

    ``remote``: the folder they are in inside the repo, if any.
    """

    repo: str
    folder: str
    files: tuple[str, ...]
    remote: str = ""

    @property
    def whole_folder(self) -> bool:
        """Whether this is a model folder, not one file.

        A transformers model (``config.json`` beside its weights) or a diffusers pipeline (``model_index.json`` and
        its parts' subfolders).
        """
        return "config.json" in self.files or "model_index.json" in self.files


_ANNOTATORS = "lllyasviel/Annotators"
_MARIGOLD_FILES = (
    "model_index.json",
    "scheduler/scheduler_config.json",
    *(f"{part}/config.json" for part in ("text_encoder", "unet", "vae")),
    "text_encoder/model.safetensors",
    *(f"{part}/diffusion_pytorch_model.safetensors" for part in ("unet", "vae")),
    *(f"tokenizer/{name}" for name in ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json")),
)
"""Marigold v1.0 (Bingxin/Marigold, which sd-webui-controlnet's Marigold runs) as diffusers has it, full precision."""
WEIGHTS: dict[str, Weights] = {
    "hed": Weights(_ANNOTATORS, "hed", ("ControlNetHED.pth",)),
    "pidinet": Weights(_ANNOTATORS, "pidinet", ("table5_pidinet.pth",)),
    "lineart": Weights(_ANNOTATORS, "lineart", ("sk_model.pth",)),
    "lineart_coarse": Weights(_ANNOTATORS, "lineart", ("sk_model2.pth",)),
    "lineart_anime": Weights(_ANNOTATORS, "lineart_anime", ("netG.pth",)),
    "openpose_body": Weights(_ANNOTATORS, "openpose", ("body_pose_model.pth",)),
    "openpose_hand": Weights(_ANNOTATORS, "openpose", ("hand_pose_model.pth",)),
    "openpose_face": Weights(_ANNOTATORS, "openpose", ("facenet.pth",)),
    "mlsd": Weights(_ANNOTATORS, "mlsd", ("mlsd_large_512_fp32.pth",)),
    "lama": Weights(_ANNOTATORS, "lama", ("ControlNetLama.pth",)),
    "dwpose_det": Weights("hr16/yolox-onnx", "openpose", ("yolox_l.torchscript.pt",)),
    "dwpose_pose": Weights("hr16/DWPose-TorchScript-BatchSize5", "openpose", ("dw-ll_ucoco_384_bs5.torchscript.pt",)),
    "dwpose_det_onnx": Weights("yzd-v/DWPose", "openpose", ("yolox_l.onnx",)),
    "dwpose_pose_onnx": Weights("yzd-v/DWPose", "openpose", ("dw-ll_ucoco_384.onnx",)),
    "animal_pose": Weights(
        "hr16/DWPose-TorchScript-BatchSize5", "openpose", ("rtmpose-m_ap10k_256_bs5.torchscript.pt",)
    ),
    "animal_pose_onnx": Weights(
        "bdsqlsz/qinglong_controlnet-lllite",
        "openpose",
        ("rtmpose-m_simcc-ap10k_pt-aic-coco_210e-256x256-7a041aa1_20230206.onnx",),
        "Annotators",
    ),
    "manga_line": Weights(_ANNOTATORS, "manga_line", ("erika.pth",)),
    "depth_anything": Weights(
        "LiheYoung/depth-anything-large-hf",
        "depth_anything/depth-anything-large-hf",
        ("config.json", "model.safetensors"),
    ),
    "depth_anything_v2": Weights(
        "depth-anything/Depth-Anything-V2-Large-hf",
        "depth_anything_v2/Depth-Anything-V2-Large-hf",
        ("config.json", "model.safetensors"),
    ),
    "zoe": Weights("Intel/zoedepth-nyu", "zoedepth/zoedepth-nyu", ("config.json", "model.safetensors")),
    "midas": Weights("Intel/dpt-hybrid-midas", "midas/dpt-hybrid-midas", ("config.json", "model.safetensors")),
    "normal_bae": Weights(_ANNOTATORS, "normal_bae", ("scannet.pt",)),
    "leres": Weights(_ANNOTATORS, "leres", ("res101.pth",)),
    "uniformer": Weights(_ANNOTATORS, "uniformer", ("upernet_global_small.pth",)),
    "leres_merge": Weights(_ANNOTATORS, "leres", ("latest_net_G.pth",)),
    "anime_face_segment": Weights(
        "bdsqlsz/qinglong_controlnet-lllite", "anime_face_segment", ("UNet.pth",), "Annotators"
    ),
    "densepose": Weights(
        "LayerNorm/DensePose-TorchScript-with-hint-image", "densepose", ("densepose_r50_fpn_dl.torchscript",)
    ),
    "teed": Weights("bdsqlsz/qinglong_controlnet-lllite", "TEED", ("7_model.pth",), "Annotators"),
    "mteed": Weights("TheMistoAI/MistoLine", "TEED", ("MTEED.pth",), "Anyline"),
    "normal_dsine": Weights("bdsqlsz/qinglong_controlnet-lllite", "normal_dsine", ("dsine.pt",), "Annotators"),
    "marigold": Weights("prs-eth/marigold-depth-v1-0", "marigold/marigold-depth-v1-0", _MARIGOLD_FILES),
    **{
        f"oneformer_{data}": Weights(
            f"shi-labs/oneformer_{data}_swin_large",
            f"oneformer/oneformer_{data}_swin_large",
            ("config.json", "pytorch_model.bin", "vocab.json", "merges.txt"),
        )
        for data in ("ade20k", "coco")
    },
}
"""Annotator → its weights (transformers' converted Depth Anything / DPT / OneFormer repos for depth and seg_of*;
Marigold's diffusers pipeline, its parts in subfolders)."""


def annotators_dir() -> Path:
    """``ControlNet/annotators/`` of the kernel's models folder."""
    return library.models_dir() / library.SUBFOLDERS["controlnet"] / "annotators"


def _hub_url(repo: str, filename: str) -> str:
    from ...downloads.huggingface import endpoint

    return f"{endpoint().rstrip('/')}/{repo}/resolve/main/{filename}"


def _present(weights: Weights) -> Path | None:
    """The file (or model folder) already on disk: in its subfolder, or a lone file straight in annotators/."""
    folder = annotators_dir() / weights.folder
    if all((folder / name).is_file() for name in weights.files):
        return folder if weights.whole_folder else folder / weights.files[0]
    flat = annotators_dir() / weights.files[0]
    return flat if not weights.whole_folder and flat.is_file() else None


def present_weights(annotator: str) -> Path | None:
    """`annotator`'s file (or model folder) when it is already in ``ControlNet/annotators/``; nothing fetched."""
    return _present(WEIGHTS[annotator])


def _refusal(module: str, weights: Weights, why: str) -> str:
    where = Path("ControlNet", "annotators", weights.folder, weights.files[0] if len(weights.files) == 1 else "")
    files = "" if len(weights.files) == 1 else f" ({', '.join(weights.files)})"
    files = files if len(weights.files) <= 2 else f" (the hub repo's {len(weights.files)} files)"
    text = f"controlnet: {module} needs {where.as_posix()}{files} in the models folder ({why}); hub: "
    return text + weights.repo  # the folder's own path is left out: on Drive it alone can pass 100 characters


def _fetch_small(url: str, path: Path) -> None:
    """A config file (a few KB): fetched whole, written under its name only once complete."""
    from ...downloads.http import open_url

    with open_url(url, {}) as response:
        data = response.read()
    part = path.with_name(path.name + ".part")
    part.write_bytes(data)
    part.replace(path)


def _download(weights: Weights) -> None:
    import urllib.error

    from ...downloads.http import MODEL_SUFFIXES, fetch_model

    streamed = (*MODEL_SUFFIXES, ".onnx", ".torchscript")  # weights and exports: progress, .part resume
    folder = annotators_dir() / weights.folder
    folder.mkdir(parents=True, exist_ok=True)
    for name in weights.files:
        target = folder / name  # a diffusers pipeline's parts go in their subfolders
        if target.is_file():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        url = _hub_url(weights.repo, f"{weights.remote}/{name}" if weights.remote else name)
        if not name.endswith(streamed):  # config, vocabulary: small files fetched whole
            try:
                _fetch_small(url, target)
            except (urllib.error.URLError, OSError) as error:
                raise ValueError(f"download: can't fetch {url} ({getattr(error, 'reason', error)})") from None
        else:
            fetch_model(url, kind="controlnet", name=target.name, folder=target.parent, suffixes=streamed)


def annotator_weights(annotator: str, module: str | None = None) -> Path:
    """The weights file (or model folder) of `annotator`, downloaded once when missing.

    Raises
    ------
    ValueError
        One line naming the file and where to put it, offline or when the download fails.
    """
    from ..hub import offline_mode

    weights = WEIGHTS[annotator]
    module = module or annotator
    found = _present(weights)
    if found is not None:
        return found
    if offline_mode():
        raise ValueError(_refusal(module, weights, "offline"))
    try:
        _download(weights)
    except ValueError as error:
        reason = re.sub(r"https?://\S+", "the hub", str(error).removeprefix("download: "))
        raise ValueError(_refusal(module, weights, f"download failed: {reason.split(';')[0][:60]}")) from None
    found = _present(weights)
    if found is None:  # pragma: no cover - _download raises or leaves every file
        raise ValueError(_refusal(module, weights, "the download left no file"))
    return found
