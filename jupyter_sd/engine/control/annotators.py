"""The preprocessors that run an annotator network: soft edges, lineart, depth, normals, segmentation, poses, lines.

Each follows sd-webui-controlnet's module of the same name: the picture scaled and edge-padded to the processor
resolution (``resolution.scale_with_pad``), the network run on the padded picture, its output turned into a grey map
the way the extension does (sigmoid of the mean side output for HED and TEED, the fused map for PiDiNet, the "safe"
variants and TEED's Safe Steps quantized by ``safe_step``, Anyline's faint lines set into MTEED's map
(``anyline.py``), lineart inverted so lines are white, ``lineart_anime_denoise`` by MangaLineExtraction; normals
from NNET (``normal_bae.py``), DSINE (``normal_dsine.py``, its camera from the unit picture's own size) or MiDaS's
depth; OneFormer's classes in their palette (``segmentation.py``), the anime face U-Net's in its colours
(``anime_face.py``), DensePose's body parts through viridis or parula (``densepose.py``); LeReS's depth with its
Remove Near/Background % (``leres.py``; ``leres_boost.py`` for ``depth_leres++``); OpenPose's and DWPose's people
and AP10K's animals drawn in colour, M-LSD's lines with the unit's thresholds), the padding cropped off;
``inpaint_only+lama`` fills the mask with LaMa (``lama.py``). Networks load once per weights file
(``annotator_nets.loaded_net``) and stay loaded; OpenPose's hand and face networks only for the
modules that draw hands or faces, DWPose's (and AP10K's) pose network beside its detector.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .annotator_nets import loaded_net
from .anyline import anyline_map
from .openpose import OPENPOSE_MODULES
from .pose_json import POSE_MODULES
from .resolution import scale_with_pad


def _anime(net: Any, image: np.ndarray) -> np.ndarray:
    from .lineart_anime import anime_lines

    return 255 - anime_lines(net, image)


def _manga(net: Any, image: np.ndarray) -> np.ndarray:
    from .manga_line import manga_lines

    return manga_lines(net, image)


def safe_step(x: np.ndarray, step: int = 2) -> np.ndarray:
    """sd-webui-controlnet's ``safe_step``: values in 0..1 floored onto `step` + 1 levels (0, 1/step, … 1+)."""
    y = x.astype(np.float32) * float(step + 1)
    return y.astype(np.int32).astype(np.float32) / float(step)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return (x * 255.0).clip(0, 255).astype(np.uint8)


def _tensor(image: np.ndarray, scale: float, device: Any) -> Any:
    import torch

    return torch.from_numpy(np.ascontiguousarray(image)).float().to(device).permute(2, 0, 1)[None] * scale


def side_edges(net: Any, image: np.ndarray, safe_steps: int = 0) -> np.ndarray:
    """HED's or TEED's map of 0..255 RGB: each side output resized (bilinear), sigmoid of their mean.

    ``safe_steps`` > 0 quantizes it by ``safe_step`` (HED's safe variant: 2; TEED's Threshold A, Safe Steps).
    """
    import cv2
    import torch

    height, width = image.shape[:2]
    with torch.no_grad():
        sides = net(_tensor(image, 1.0, _net_device(net)))
    sides = [side[0, 0].float().cpu().numpy() for side in sides]
    stacked = np.stack([cv2.resize(s, (width, height), interpolation=cv2.INTER_LINEAR) for s in sides], axis=2)
    edge = 1 / (1 + np.exp(-np.mean(stacked, axis=2).astype(np.float64)))
    return _to_uint8(safe_step(edge, safe_steps) if safe_steps else edge)


def pidinet_edges(net: Any, image: np.ndarray, safe: bool) -> np.ndarray:
    """PiDiNet's fused edge map, on the picture with its channels reversed (the extension feeds it BGR), 0..1."""
    import torch

    with torch.no_grad():
        edge = net(_tensor(image[:, :, ::-1], 1.0 / 255.0, _net_device(net)))[-1][0, 0].float().cpu().numpy()
    return _to_uint8(safe_step(edge) if safe else edge)


def lineart_lines(net: Any, image: np.ndarray) -> np.ndarray:
    """The lineart generator's map (white background) inverted: white lines on black, as ControlNet wants."""
    import torch

    with torch.no_grad():
        line = net(_tensor(image, 1.0 / 255.0, _net_device(net)))[0, 0].float().cpu().numpy()
    return 255 - _to_uint8(line)


def nms(x: np.ndarray, threshold: float, sigma: float) -> np.ndarray:
    """Non-maximum suppression along four directions of the blurred map, then a threshold: thin lines, 0 or 255."""
    import cv2

    x = cv2.GaussianBlur(x.astype(np.float32), (0, 0), sigma)
    kept = np.zeros_like(x)
    for line in ([[0, 0, 0], [1, 1, 1], [0, 0, 0]], [[0, 1, 0]] * 3, np.eye(3), np.fliplr(np.eye(3))):
        np.putmask(kept, cv2.dilate(x, kernel=np.array(line, dtype=np.uint8)) == x, x)
    return np.where(kept > threshold, 255, 0).astype(np.uint8)


def scribble(edges: np.ndarray) -> np.ndarray:
    """A soft-edge map made a scribble: NMS at 127 (σ 3), blurred (σ 3), every pixel above 4 white."""
    import cv2

    blurred = cv2.GaussianBlur(nms(edges, 127, 3.0), (0, 0), 3.0)
    return np.where(blurred > 4, 255, 0).astype(np.uint8)


def _net_device(net: Any) -> Any:
    return next(net.parameters()).device


def _depth(annotator: str) -> Callable[[Any, np.ndarray], np.ndarray]:
    from .depth import depth_anything_map, midas_map, zoe_map

    return {"midas": midas_map, "zoe": zoe_map}.get(annotator, depth_anything_map)


def _openpose(module: str) -> Callable[[Any, np.ndarray], np.ndarray]:
    """`module`'s pose map on the body network, the hand and face networks loaded when the module draws them."""

    def work(body_net: Any, image: np.ndarray, on_pose: Any = None) -> np.ndarray:
        from .openpose import openpose_map

        parts = OPENPOSE_MODULES[module]
        hand_net = loaded_net("openpose_hand", module) if parts.hands else None
        face_net = loaded_net("openpose_face", module) if parts.face else None
        return openpose_map(module, image, body_net, hand_net, face_net, on_pose)

    return work


def _normal_bae(net: Any, image: np.ndarray) -> np.ndarray:
    from .normal_bae import bae_normal_map

    return bae_normal_map(net, image)


def _anime_face(net: Any, image: np.ndarray) -> np.ndarray:
    from .anime_face import anime_face_map

    return anime_face_map(net, image)


def _densepose(colormap: str) -> Callable[[Any, np.ndarray], np.ndarray]:
    def work(net: Any, image: np.ndarray) -> np.ndarray:
        from .densepose import densepose_map

        return densepose_map(net, image, colormap)

    return work


def _seg(annotator: str) -> Callable[[Any, np.ndarray], np.ndarray]:
    def work(net: Any, image: np.ndarray) -> np.ndarray:
        from .segmentation import seg_map

        return seg_map(annotator, net, image)

    return work


def _dwpose(module: str) -> Callable[[Any, np.ndarray], np.ndarray]:
    """DWPose's map on the detector, the pose network loaded beside it (each its ONNX or TorchScript file)."""

    def work(det_net: Any, image: np.ndarray, on_pose: Any = None) -> np.ndarray:
        from .dwpose import dw_annotator, dwpose_map

        return dwpose_map(module, image, det_net, loaded_net(dw_annotator("pose"), module), on_pose)

    return work


def _animal(det_net: Any, image: np.ndarray, on_pose: Any = None) -> np.ndarray:
    """``animal_openpose``'s map on the detector, the AP10K pose network loaded beside it."""
    from .animalpose import animal_map
    from .dwpose import dw_annotator

    return animal_map(image, det_net, loaded_net(dw_annotator("animal"), "animal_openpose"), on_pose)


def _normal_midas(net: Any, image: np.ndarray, background: float, _unused: float) -> np.ndarray:
    from .depth import midas_normal_map

    return midas_normal_map(net, image, background)


def _normal_dsine(net: Any, image: np.ndarray, unit_size: tuple[int, int], fov: float, iterations: float) -> np.ndarray:
    from .normal_dsine import dsine_normal_map

    return dsine_normal_map(net, image, unit_size, fov, iterations)


def _leres(net: Any, image: np.ndarray, remove_near: float, remove_background: float) -> np.ndarray:
    from .leres import leres_depth_map

    return leres_depth_map(net, image, remove_near, remove_background)


def _leres_boost(net: Any, image: np.ndarray, remove_near: float, remove_background: float) -> np.ndarray:
    from .leres_boost import boost_depth_map

    merge_net = loaded_net("leres_merge", "depth_leres++")
    return boost_depth_map(net, merge_net, image, remove_near, remove_background)


def _mlsd(net: Any, image: np.ndarray, value_threshold: float, distance_threshold: float) -> np.ndarray:
    from .mlsd import mlsd_map

    return mlsd_map(net, image, value_threshold, distance_threshold)


ANNOTATED: dict[str, tuple[str, Callable[[Any, np.ndarray], np.ndarray]]] = {
    "softedge_hed": ("hed", side_edges),
    "softedge_hedsafe": ("hed", lambda net, image: side_edges(net, image, safe_steps=2)),
    "softedge_pidinet": ("pidinet", lambda net, image: pidinet_edges(net, image, safe=False)),
    "softedge_pidisafe": ("pidinet", lambda net, image: pidinet_edges(net, image, safe=True)),
    "scribble_hed": ("hed", side_edges),
    "scribble_pidinet": ("pidinet", lambda net, image: pidinet_edges(net, image, safe=False)),
    "lineart_realistic": ("lineart", lineart_lines),
    "lineart_coarse": ("lineart_coarse", lineart_lines),
    "lineart_anime": ("lineart_anime", _anime),
    "lineart_anime_denoise": ("manga_line", _manga),
    "depth_anything": ("depth_anything", lambda net, image: _depth("depth_anything")(net, image)),
    "depth_anything_v2": ("depth_anything_v2", lambda net, image: _depth("depth_anything_v2")(net, image)),
    "depth_midas": ("midas", lambda net, image: _depth("midas")(net, image)),
    "depth_zoe": ("zoe", lambda net, image: _depth("zoe")(net, image)),
    **{module: ("openpose_body", _openpose(module)) for module in OPENPOSE_MODULES},
    "normal_bae": ("normal_bae", _normal_bae),
    "seg_ofade20k": ("oneformer_ade20k", _seg("oneformer_ade20k")),
    "seg_ofcoco": ("oneformer_coco", _seg("oneformer_coco")),
    "seg_ufade20k": ("uniformer", _seg("uniformer")),
    "seg_anime_face": ("anime_face_segment", _anime_face),
    "densepose": ("densepose", _densepose("viridis")),
    "densepose_parula": ("densepose", _densepose("parula")),
    "dw_openpose_full": ("dwpose_det", _dwpose("dw_openpose_full")),
    "animal_openpose": ("dwpose_det", _animal),
}
"""Module → (the annotator whose weights it runs, what it does with the padded picture)."""
TUNED: dict[str, tuple[str, Callable[[Any, np.ndarray, float, float], np.ndarray]]] = {
    "mlsd": ("mlsd", _mlsd),
    "normal_midas": ("midas", _normal_midas),
    "depth_leres": ("leres", _leres),
    "depth_leres++": ("leres", _leres_boost),
    "softedge_teed": ("teed", lambda net, image, steps, _unused: side_edges(net, image, int(steps))),
    "softedge_anyline": ("mteed", lambda net, image, steps, _: anyline_map(side_edges(net, image, int(steps)), image)),
}
"""Modules whose work also takes the unit's Threshold A and B (M-LSD's thresholds, normal_midas's background,
depth_leres's Remove Near % and Remove Background %, softedge_teed's and softedge_anyline's Safe Steps)."""
SIZED: dict[str, tuple[str, Callable[[Any, np.ndarray, tuple[int, int], float, float], np.ndarray]]] = {
    "normal_dsine": ("normal_dsine", _normal_dsine),
}
"""Modules whose work also takes the unit picture's own (height, width) before scaling, and Threshold A and B
(normal_dsine's camera is made from that size and its Fov; its map is cropped at that size, then the scaled one's)."""


def inpaint_lama(picture: np.ndarray) -> np.ndarray:
    """``inpaint_only+lama``'s map of `picture` (H×W×4 uint8, the mask in alpha) at its own size (``lama.py``)."""
    from .lama import lama_inpaint_map

    return lama_inpaint_map(loaded_net("lama", "inpaint_only+lama"), picture)


def outpaint_lama(picture: np.ndarray, width: int, height: int) -> np.ndarray:
    """``inpaint_only+lama`` under "Resize and Fill": fitted to `width`×`height` first, LaMa filling the border."""
    from .lama import lama_inpaint_map, outpaint_input

    return lama_inpaint_map(loaded_net("lama", "inpaint_only+lama"), outpaint_input(picture, width, height))


def annotate(
    module: str,
    image: np.ndarray,
    res: int,
    threshold_a: float | None = None,
    threshold_b: float | None = None,
    on_pose: Callable[[dict], None] | None = None,
) -> np.ndarray:
    """`module`'s map of `image` (H×W×3 uint8) at processor resolution `res`: H×W×3 uint8, padding cropped.

    Grey maps are repeated into three channels; colour maps (OpenPose's) are kept. A pose module gives `on_pose`
    the poses it found as the extension's JSON (``pose_json``: its canvas the padded picture, as the extension's).
    """
    if module in TUNED:
        annotator, tuned = TUNED[module]

        def work(net: Any, picture: np.ndarray) -> np.ndarray:
            return tuned(net, picture, threshold_a, threshold_b)

    elif module in SIZED:
        annotator, sized = SIZED[module]

        def work(net: Any, picture: np.ndarray) -> np.ndarray:
            return sized(net, picture, image.shape[:2], threshold_a, threshold_b)

    else:
        annotator, work = ANNOTATED[module]
    if annotator == "dwpose_det":  # its ONNX file or its TorchScript export
        from .dwpose import dw_annotator

        annotator = dw_annotator("det")
    net = loaded_net(annotator, module)
    padded, (height, width) = scale_with_pad(image, res)
    pose = {"on_pose": on_pose} if on_pose is not None and module in POSE_MODULES else {}
    made = np.ascontiguousarray(work(net, padded, **pose)[:height, :width])
    if module.startswith("scribble_"):
        made = scribble(made)
    return made if made.ndim == 3 else np.ascontiguousarray(np.repeat(made[:, :, None], 3, axis=2))
