"""Semantic segmentation maps (``seg_ofade20k``, ``seg_ofcoco``) through transformers' OneFormer.

(``seg_ufade20k``'s UniFormer UperNet is ``upernet.py``; its classes are painted here, in the ADE20K palette.)

sd-webui-controlnet runs SHI Labs' OneFormer (Swin-L; ``250_16_swin_l_oneformer_ade20k_160k.pth`` and
``150_16_swin_l_oneformer_coco_100ep.pth`` from ``lllyasviel/Annotators``) through its bundled detectron2; the
same checkpoints, converted, are ``shi-labs/oneformer_ade20k_swin_large`` and ``shi-labs/oneformer_coco_swin_large``
(``OneFormerForUniversalSegmentation``), which run here. The steps are detectron2's test path, done with PIL and
torch (no image processor, so no torchvision):

- the padded picture's short side resized (PIL bilinear) to 640 (ADE20K; the long side at most 2560) or 800
  (COCO; at most 1333), normalized with ImageNet's mean and std on 0..255, zero-padded to multiples of 32;
- the task ``"the task is semantic"`` tokenized (the folder's CLIP vocabulary, 77 tokens, padding zeroed);
- each query's mask resized (bilinear) to the padded input, the padding cropped, resized to the picture; the class
  scores (softmax without the no-object class) summed over the queries weighted by their mask (sigmoid);
- each pixel's best class painted in that class's colour from the extension's palettes (ADE20K's 150 and COCO
  panoptic's 133). The extension draws each class as matplotlib polygons with a 1 px off-white edge; the pixels
  are painted directly here, without those edges.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

_ADE20K = (
    "787878b4787806e6e650323204c8037878508c8c8ccc05ffe6e6e604fa07e005ffebff0796053d78784608ff33ff06528fff8cccff04"
    "ff3307cc46030066c83de6faff06330b66ffff0747ff09e00907e6dcdcdcff095c7009ff08ffd607ffe0ffb8060aff47ff290a07ffff"
    "e0ff086608ffff3d06ffc207ff7a0800ff14ff0829ff05990633ffeb0cffa0961400a3ff8c8c8cfa0a0f14ff001fff00ff1f00ffe000"
    "99ff000000ffff470000ebff00adff1f00ff0bc8c8ff520000fff5003dff00ff7000ff85ff0000ffa300ff6600c2ff00008fff33ff00"
    "0052ff00ff2900ffad0a00ffadff0000ff99ff5c00ff00ffff00f5ff0066ffad00ff0014ffb8b8001fff00ff3d0047ffff00cc00ffc2"
    "00ff52000aff0070ff3300ff00c2ff007aff00ffa3ff990000ff0aff70008fff005200ffa3ff00ffeb0008b8aa8500ff00ff5cb800ff"
    "ff001f00b8ff00d6ffff00705cff0000e0ff70e0ff46b8a0a300ff9900ff47ff00ff00a3ffcc00ff008f00ffeb85ff00ff00ebf500ff"
    "ff007afff5000abed4d6ff0000ccff1400ffffff000099ff0029ff00ffcc2900ff29ff00ad00ff00f5ff4700ff7a00ff00ffb8005cff"
    "b8ff000085ffffd60019c2c266ff005c00ff"
)
_COCO = (
    "dc143c770b2000008e0000e66a00e4003c640050640000460000c0faaa1e64aa1edcdc00af74affa001ea52a2aff4dff00e2fcb6b6ff"
    "00520078a69d6e4c00ae39ffc76400480076ffb3f0007d5cd10097bcd0b600dcb0ff63a45c00498581ff4eb4ff00e400aefff32d59ff"
    "8686679194aeffd0bac5e2ffab86016d3f36cf8aff97005f09503d5469334a4169a6c466d0c3d2ff6d41008f95b300c2d1636a057900"
    "e3ffcd93bad0994501035fa1a3ff007700aa00b6c700a578b782585f20008272876e8185a64a76db8eb94fd272b25a3e41460f7fa773"
    "3b696a8e6c2dc4ac005f3650804cffc93901f6007abfa2d0ffff8093d3cb966464a8abac9270c6d2aa645c8859da58b8f18100d911ff"
    "7c4ab5464646ffe4ff9ad000c1005c4c5b71ffb4c36a9ab0e6968c3c8fff8040805c5237fed47c494daeffa062ffffff68546da9a483"
    "e1c7ff89364a879edf07f6e76bffc83a2995b7798eff49616b8e23be9999928b8d4682b486c79cd1e28c60246c60606040aa4098fb98"
    "d0e5e4cebaab98a14074700000728f66669cfa8dff"
)


def _palette(text: str) -> np.ndarray:
    return np.frombuffer(bytes.fromhex(text), dtype=np.uint8).reshape(-1, 3).copy()


ADE20K_PALETTE = _palette(_ADE20K)
"""ADE20K's 150 class colours, in class order (OneFormer's ``ADE20K_150_CATEGORIES``, the extension's ADE palette)."""
COCO_PALETTE = _palette(_COCO)
"""COCO panoptic's 133 class colours (80 things, then 53 stuff), in class order (detectron2's ``COCO_CATEGORIES``)."""


@dataclass(frozen=True)
class SegTest:
    """A dataset's test-time input size (detectron2's ``MIN_SIZE_TEST``/``MAX_SIZE_TEST``) and its palette."""

    short: int
    longest: int
    palette: np.ndarray


SEG_TESTS = {
    "oneformer_ade20k": SegTest(640, 2560, ADE20K_PALETTE),
    "oneformer_coco": SegTest(800, 1333, COCO_PALETTE),
}
_MEAN = np.array([123.675, 116.280, 103.530], dtype=np.float32)
_STD = np.array([58.395, 57.120, 57.375], dtype=np.float32)
TASK = "the task is semantic"
DIVISIBLE = 32


def _wrapper() -> type:
    import torch

    class OneFormerNet(torch.nn.Module):
        """A OneFormer model with its semantic task's tokens (moved to the device with it)."""

        def __init__(self, model: Any, task_inputs: Any) -> None:
            super().__init__()
            self.model = model
            self.register_buffer("task_inputs", task_inputs, persistent=False)

    return OneFormerNet


def _refuse(folder: Path, why: str) -> ValueError:
    return ValueError(f"controlnet: {folder.name} is not a transformers OneFormer model ({why[:100]})")


def load_oneformer(folder: Path) -> Any:
    """The OneFormer model in `folder` (``config.json``, weights, ``vocab.json``/``merges.txt``), with its task.

    Raises
    ------
    ValueError
        One line where the folder holds no OneFormer model.
    """
    import torch
    from transformers import CLIPTokenizer, OneFormerForUniversalSegmentation

    try:
        kind = json.loads((folder / "config.json").read_text()).get("model_type")
    except (OSError, ValueError) as error:
        raise _refuse(folder, str(error)) from None
    if kind != "oneformer":
        raise _refuse(folder, f"its config.json is a {kind!r} model")
    try:
        model = OneFormerForUniversalSegmentation.from_pretrained(str(folder), local_files_only=True).eval()
        tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise _refuse(folder, first) from None
    length = model.config.task_seq_len
    tokens = tokenizer(TASK, padding="max_length", max_length=length, truncation=True)
    task = torch.tensor(tokens["input_ids"]) * torch.tensor(tokens["attention_mask"])
    return _wrapper()(model, task[None])


def input_size(height: int, width: int, short: int, longest: int) -> tuple[int, int]:
    """detectron2's ``ResizeShortestEdge`` at test time: the short side `short`, the long one at most `longest`."""
    scale = short / min(height, width)
    new_h, new_w = (short, scale * width) if height < width else (scale * height, short)
    if max(new_h, new_w) > longest:
        shrink = longest / max(new_h, new_w)
        new_h, new_w = new_h * shrink, new_w * shrink
    return int(new_h + 0.5), int(new_w + 0.5)


def oneformer_input(image: np.ndarray, short: int, longest: int) -> tuple[np.ndarray, tuple[int, int]]:
    """`image` resized for OneFormer, normalized and zero-padded to multiples of 32: (1×3×H×W, the resized size)."""
    from PIL import Image

    height, width = input_size(*image.shape[:2], short, longest)
    resized = np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR), dtype=np.float32)
    normalized = (resized - _MEAN) / _STD
    pad_h, pad_w = -height % DIVISIBLE, -width % DIVISIBLE
    padded = np.pad(normalized, [[0, pad_h], [0, pad_w], [0, 0]])
    return np.ascontiguousarray(padded.transpose(2, 0, 1)[None]), (height, width)


def semantic_scores(net: Any, image: np.ndarray, short: int, longest: int) -> Any:
    """Each class's score at each pixel of `image` (C×H×W), as detectron2's OneFormer computes it."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    pixels, (height, width) = oneformer_input(image, short, longest)
    parameter = next(net.parameters())
    tensor = torch.from_numpy(pixels).to(parameter.device, parameter.dtype)
    with torch.no_grad():
        out = net.model(pixel_values=tensor, task_inputs=net.task_inputs)
        masks = F.interpolate(out.masks_queries_logits.float(), tensor.shape[2:], mode="bilinear", align_corners=False)
        masks = F.interpolate(masks[:, :, :height, :width], image.shape[:2], mode="bilinear", align_corners=False)
        classes = out.class_queries_logits[0].float().softmax(-1)[:, :-1]
        return torch.einsum("qc,qhw->chw", classes, masks[0].sigmoid())


def load_seg_net(annotator: str, path: Path) -> Any:
    """`annotator`'s network: OneFormer's folder, or UniFormer's UperNet (``upernet.py``) for ``uniformer``."""
    if annotator == "uniformer":
        from .upernet import load_upernet

        return load_upernet(path)
    return load_oneformer(path)


def seg_map(annotator: str, net: Any, image: np.ndarray) -> np.ndarray:
    """`annotator`'s (``oneformer_ade20k``/``oneformer_coco``/``uniformer``) colour map of `image`.

    Each pixel is its class's colour (UniFormer's ADE20K classes in the ADE20K palette, as the extension's
    ``show_result_pyplot`` at opacity 1 paints them).
    """
    if annotator == "uniformer":
        from .upernet import upernet_labels

        labels, palette = upernet_labels(net, image), ADE20K_PALETTE
    else:
        test = SEG_TESTS[annotator]
        labels, palette = semantic_scores(net, image, test.short, test.longest).argmax(0).cpu().numpy(), test.palette
    if labels.max() >= len(palette):
        msg = f"controlnet: the {annotator} model has more classes than its palette's {len(palette)}"
        raise ValueError(msg)
    return np.ascontiguousarray(palette[labels])
