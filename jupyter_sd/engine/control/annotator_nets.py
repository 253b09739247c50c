"""The annotator networks, loaded once per weights file (``annotator_weights`` finds or downloads it) and kept.

Each annotator's loader lives beside its network (``depth.py``, ``pose_nets.py``, ``edge_nets.py`` …); this module
picks it by the annotator's name and keeps what it loaded until the file changes or `unload_annotators` is called.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .annotator_weights import annotator_weights

_LOADED: dict[tuple[str, str, float], Any] = {}
"""(annotator, weights path, its mtime) → the loaded network: loaded once, reloaded when the file changes."""


def _device() -> Any:
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def loaded_net(annotator: str, module: str) -> Any:
    """`annotator`'s network on the device, loaded once per weights file."""
    path = annotator_weights(annotator, module)
    key = (annotator, str(path), path.stat().st_mtime)
    if key not in _LOADED:
        for old in [k for k in _LOADED if k[0] == annotator]:
            del _LOADED[old]
        _LOADED[key] = _load(annotator, path).to(_device())
    return _LOADED[key]


def unload_annotators() -> None:
    """Forget every loaded annotator network (their memory is freed; the next use loads them again)."""
    _LOADED.clear()


def _load(annotator: str, path: Path) -> Any:
    if annotator in ("depth_anything", "depth_anything_v2", "midas", "zoe"):
        from .depth import load_depth_model

        return load_depth_model(path)
    if annotator.startswith("openpose_"):
        from .pose_nets import load_pose_net

        return load_pose_net(annotator, path)
    if annotator.startswith(("dwpose_", "animal_pose")):
        from .dwpose import load_dwpose

        return load_dwpose(annotator, path)
    if annotator == "mlsd":
        from .mlsd import load_mlsd

        return load_mlsd(path)
    if annotator == "manga_line":
        from .manga_line import load_manga_line

        return load_manga_line(path)
    if annotator == "lama":
        from .lama import load_lama

        return load_lama(path)
    if annotator == "normal_bae":
        from .normal_bae import load_normal_bae

        return load_normal_bae(path)
    if annotator == "normal_dsine":
        from .normal_dsine import load_dsine

        return load_dsine(path)
    if annotator == "leres":
        from .leres import load_leres

        return load_leres(path)
    if annotator == "leres_merge":
        from .leres_merge import load_merge_net

        return load_merge_net(path)
    if annotator == "anime_face_segment":
        from .anime_face import load_anime_face

        return load_anime_face(path)
    if annotator == "densepose":
        from .densepose import load_densepose

        return load_densepose(path)
    if annotator.startswith("oneformer_") or annotator == "uniformer":
        from .segmentation import load_seg_net

        return load_seg_net(annotator, path)
    if annotator == "marigold":  # a diffusers pipeline (depth_marigold runs it from preprocessors, with its seed)
        from .marigold import load_marigold

        return load_marigold(path)
    from .edge_nets import load_net

    return load_net(annotator, path)


__all__ = ["loaded_net", "unload_annotators"]
