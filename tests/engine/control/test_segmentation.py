"""seg_ofade20k / seg_ofcoco on a tiny OneFormer built from config and saved where the annotators' weights go:
the map is the palette colour of the class detectron2's semantic inference picks, computed here from the model.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from helpers.annotator_nets import annotator_files, offline_refusal
from helpers.seg_nets import save_oneformer, tiny_oneformer
from PIL import Image
from transformers import CLIPTokenizer

from jupyter_sd.engine.control import segmentation
from jupyter_sd.engine.control.preprocessors import preprocess
from jupyter_sd.engine.control.segmentation import ADE20K_PALETTE, COCO_PALETTE, SEG_TESTS, SegTest, input_size

FOLDERS = {"seg_ofade20k": "oneformer_ade20k_swin_large", "seg_ofcoco": "oneformer_coco_swin_large"}


@pytest.fixture(scope="module")
def models():
    return {"seg_ofade20k": tiny_oneformer(150, 2), "seg_ofcoco": tiny_oneformer(133, 3)}


@pytest.fixture()
def folder(tmp_path, models):
    with annotator_files(tmp_path / "models", {}) as annotators:
        for module, model in models.items():
            save_oneformer(model, annotators / "oneformer" / FOLDERS[module])
        yield annotators


def _picture(height, width):
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 255 // width, y * 255 // height, (x * y) % 256], axis=2).astype(np.uint8)
    cv2.circle(image, (width // 3, height // 2), height // 4, (230, 40, 90), -1)
    cv2.rectangle(image, (width // 2, 4), (width - 4, height // 3), (20, 200, 60), -1)
    return image


def _labels(model, folder, image, side):
    """detectron2's semantic inference, written out: PIL bilinear to `side`², ImageNet-normalized on 0..255, the
    task "the task is semantic" (padding zeroed), masks resized to the input then to the picture, softmax·sigmoid."""
    x = np.asarray(Image.fromarray(image).resize((side, side), Image.BILINEAR), dtype=np.float32)
    x = (x - np.float32([123.675, 116.28, 103.53])) / np.float32([58.395, 57.12, 57.375])
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    tokens = tokenizer("the task is semantic", padding="max_length", max_length=77)
    task = torch.tensor(tokens["input_ids"]) * torch.tensor(tokens["attention_mask"])
    with torch.no_grad():
        out = model(pixel_values=torch.tensor(x.transpose(2, 0, 1)[None], dtype=torch.float32), task_inputs=task[None])
    masks = F.interpolate(out.masks_queries_logits, (side, side), mode="bilinear", align_corners=False)
    masks = F.interpolate(masks, image.shape[:2], mode="bilinear", align_corners=False)[0].sigmoid()
    scores = torch.einsum("qc,qhw->chw", out.class_queries_logits[0].softmax(-1)[:, :-1], masks)
    return scores.argmax(0).numpy()


def test_palettes_are_the_extensions_ade20k_and_coco_colours():
    assert ADE20K_PALETTE.shape == (150, 3) and COCO_PALETTE.shape == (133, 3)
    assert ADE20K_PALETTE[:3].tolist() == [[120, 120, 120], [180, 120, 120], [6, 230, 230]]  # wall, building, sky
    assert ADE20K_PALETTE[12].tolist() == [150, 5, 61] and ADE20K_PALETTE[-1].tolist() == [92, 0, 255]  # person, flag
    assert COCO_PALETTE[0].tolist() == [220, 20, 60] and COCO_PALETTE[80].tolist() == [255, 255, 128]  # person, banner
    assert COCO_PALETTE[-1].tolist() == [250, 141, 255]  # rug-merged


def test_input_size_is_detectron2s_shortest_edge_resize():
    assert (SEG_TESTS["oneformer_ade20k"].short, SEG_TESTS["oneformer_ade20k"].longest) == (640, 2560)
    assert (SEG_TESTS["oneformer_coco"].short, SEG_TESTS["oneformer_coco"].longest) == (800, 1333)
    assert input_size(64, 64, 640, 2560) == (640, 640)
    assert input_size(64, 82, 800, 1333) == (800, 1025)
    assert input_size(64, 128, 800, 1333) == (667, 1333)  # 800×1600 passes 1333: scaled down
    assert input_size(128, 64, 640, 2560) == (1280, 640)


@pytest.mark.parametrize(("module", "palette"), [("seg_ofade20k", ADE20K_PALETTE), ("seg_ofcoco", COCO_PALETTE)])
def test_map_is_the_palette_colour_of_each_pixels_class(folder, models, monkeypatch, module, palette):
    side = 160 if module == "seg_ofade20k" else 192  # the datasets' 640 and 800 take seconds on the CPU
    data = "oneformer_ade20k" if module == "seg_ofade20k" else "oneformer_coco"
    monkeypatch.setitem(segmentation.SEG_TESTS, data, SegTest(side, 4 * side, palette))
    image = _picture(64, 64)  # a multiple of 64: no resize, no padding at processor res 64
    made = preprocess(module, image, 64)
    labels = _labels(models[module], folder / "oneformer" / FOLDERS[module], image, side)
    assert len(np.unique(labels)) > 1
    np.testing.assert_array_equal(made, palette[labels])


def test_a_picture_that_is_not_square_keeps_its_size(folder, monkeypatch):
    monkeypatch.setitem(segmentation.SEG_TESTS, "oneformer_ade20k", SegTest(160, 640, ADE20K_PALETTE))
    made = preprocess("oneformer_ade20k", _picture(70, 90), 64)  # sd-webui-controlnet's internal name
    assert made.shape == (64, 82, 3)
    assert {tuple(c) for c in made.reshape(-1, 3)} <= {tuple(c) for c in ADE20K_PALETTE.tolist()}


def test_a_folder_that_is_not_oneformer_is_refused_in_one_line(folder):
    (folder / "oneformer" / FOLDERS["seg_ofcoco"] / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="is not a transformers OneFormer model") as refused:
        preprocess("seg_ofcoco", _picture(64, 64), 64)
    assert "\n" not in str(refused.value)


def test_offline_without_the_model_is_one_line_naming_folder_and_repo(tmp_path, monkeypatch):
    line = offline_refusal(tmp_path / "empty", monkeypatch, "seg_ofade20k", _picture(64, 64), 64)
    assert "ControlNet/annotators/oneformer/oneformer_ade20k_swin_large" in line
    assert "shi-labs/oneformer_ade20k_swin_large" in line and "offline" in line
