"""``dw_openpose_full``: DWPose's people (YOLOX-L boxes, RTMPose whole-body points) drawn as OpenPose draws them.

Two published forms of the two networks are read, no class definitions needed: the TorchScript exports
(``yolox_l.torchscript.pt`` from hr16/yolox-onnx, ``dw-ll_ucoco_384_bs5.torchscript.pt`` from
hr16/DWPose-TorchScript-BatchSize5, batches of 5, run with ``torch.jit.load``) and, when ``onnxruntime`` imports,
sd-webui-controlnet's ONNX files (``yolox_l.onnx``, ``dw-ll_ucoco_384.onnx`` from yzd-v/DWPose). Both go in
``ControlNet/annotators/openpose/``; an ONNX file present is used where onnxruntime imports, else the TorchScript
one (downloaded when missing). The map is sd-webui-controlnet's: the picture as given (RGB), bodies, hands and
faces drawn by ``pose_draw`` on black (``dwpose_detect`` the boxes, ``dwpose_keypoints`` the points).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from .dwpose_detect import detect_people
from .dwpose_keypoints import INPUT_SIZE, estimate_poses
from .pose_draw import draw_poses
from .pose_json import encode_poses

DW_MODULES = {"dw_openpose_full": (True, True, True)}
"""Module → what it draws (body, hands, face); sd-webui-controlnet has the full one only."""
ROLES = {
    "det": ("dwpose_det_onnx", "dwpose_det"),
    "pose": ("dwpose_pose_onnx", "dwpose_pose"),
    "animal": ("animal_pose_onnx", "animal_pose"),
}
"""Network → its annotators: the ONNX file (used where onnxruntime imports) and the TorchScript one."""
TORCHSCRIPT_BATCH = 5
POSE_INPUTS = {"dwpose_pose": INPUT_SIZE, "animal_pose": (256, 256)}
"""The TorchScript pose exports (run in batches of 5) → their input, width × height (RTMPose-m AP10K's: 256²)."""


class TorchScriptNet:
    """A TorchScript export run on numpy batches (split into the export's batch size, padded with zeros)."""

    def __init__(self, module: Any, batch: int | None = None, input_size: tuple[int, int] = INPUT_SIZE) -> None:
        self.module, self.batch, self.input_size = module.eval(), batch, input_size

    def to(self, device: Any) -> TorchScriptNet:
        """Moved to `device` (the annotators' device)."""
        self.module = self.module.to(device)
        return self

    def _run(self, chunk: Any) -> list[Any]:
        out = self.module(chunk)
        return [o.float().cpu() for o in (out if isinstance(out, (tuple, list)) else (out,))]

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        """The export's outputs for a numpy batch, as float32 numpy arrays of the batch's length."""
        import torch

        param = next(iter(self.module.parameters()), None)
        device, dtype = (param.device, param.dtype) if param is not None else (torch.device("cpu"), torch.float32)
        x, step = torch.from_numpy(np.ascontiguousarray(batch)), self.batch or len(batch)
        with torch.no_grad():
            parts = []
            for start in range(0, len(x), step):
                chunk = x[start : start + step]
                padded = torch.cat([chunk, chunk.new_zeros((step - len(chunk), *chunk.shape[1:]))])
                parts.append([o[: len(chunk)] for o in self._run(padded.to(device, dtype))])
        return [torch.cat(outs).numpy() for outs in zip(*parts)]


class OnnxNet:
    """An ONNX file run through onnxruntime on numpy batches (the pose network's input size from the file)."""

    def __init__(self, session: Any) -> None:
        self.session, self.name = session, session.get_inputs()[0].name
        shape = session.get_inputs()[0].shape
        ints = all(isinstance(v, int) for v in shape[2:4])
        self.input_size = (shape[3], shape[2]) if ints else INPUT_SIZE

    def to(self, device: Any) -> OnnxNet:
        """Itself: the session runs on onnxruntime's CPU provider."""
        return self

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        """The model's outputs for a numpy batch (fed as float32)."""
        return list(self.session.run(None, {self.name: np.ascontiguousarray(batch, dtype=np.float32)}))


def onnxruntime_imports() -> bool:
    """Whether the optional ``onnxruntime`` is installed (the ONNX files are read only then)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def load_dwpose(annotator: str, path: Path) -> TorchScriptNet | OnnxNet:
    """A DWPose network from its file: ``.onnx`` through onnxruntime, else a TorchScript export.

    Raises
    ------
    ValueError
        One line when the file is not a TorchScript export (or ONNX model) that loads.
    """
    if path.suffix == ".onnx":
        import onnxruntime

        return OnnxNet(onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]))
    import torch

    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError) as error:
        why = str(error).strip().splitlines()[0][:60] if str(error).strip() else type(error).__name__
        raise ValueError(f"controlnet: {path.name} is not a TorchScript export of {annotator} ({why})") from None
    if annotator in POSE_INPUTS:
        return TorchScriptNet(module, TORCHSCRIPT_BATCH, POSE_INPUTS[annotator])
    return TorchScriptNet(module)


def dw_annotator(role: str) -> str:
    """The annotator giving the `role` network ("det", "pose" or AP10K's "animal").

    Its ONNX file where that is there and onnxruntime imports, else its TorchScript export.
    """
    from .annotator_weights import present_weights

    onnx, torchscript = ROLES[role]
    if present_weights(onnx) is not None and onnxruntime_imports():
        return onnx
    return torchscript


def dwpose_map(
    module: str, image: np.ndarray, det_net: Any, pose_net: Any, on_pose: Callable[[dict], None] | None = None
) -> np.ndarray:
    """`module`'s map of an RGB picture (H×W×3 uint8): each person found drawn on black (`on_pose`: their JSON)."""
    body, hands, face = DW_MODULES[module]
    boxes = detect_people(det_net, image)
    poses = [] if boxes is None else estimate_poses(pose_net, image, boxes)
    if on_pose is not None:
        on_pose(encode_poses(poses, [], image.shape[0], image.shape[1]))
    return draw_poses(poses, image.shape[0], image.shape[1], body, hands, face)
