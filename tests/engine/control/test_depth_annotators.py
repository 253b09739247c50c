"""Depth preprocessors on tiny transformers Depth Anything and DPT models built from config and saved where the
annotators' weights go, against sd-webui-controlnet's pre- and post-processing written out here.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from helpers.annotator_nets import tiny_depth_anything
from helpers.normal_nets import tiny_dpt
from transformers import (
    DPTConfig,
    DPTForDepthEstimation,
)

from jupyter_sd import library
from jupyter_sd.engine.control.depth import net_size, zoe_size
from jupyter_sd.engine.control.preprocessors import preprocess


@pytest.fixture()
def depth_models(tmp_path):
    root = tmp_path / "models"
    folder = root / "ControlNet" / "annotators"
    models = {
        "depth_anything": tiny_depth_anything(1),
        "depth_anything_v2": tiny_depth_anything(2),
        "depth_midas": tiny_dpt(5),
    }
    models["depth_anything"].save_pretrained(folder / "depth_anything" / "depth-anything-large-hf")
    models["depth_anything_v2"].save_pretrained(folder / "depth_anything_v2" / "Depth-Anything-V2-Large-hf")
    models["depth_midas"].save_pretrained(folder / "midas" / "dpt-hybrid-midas")
    before = library.models_dir()
    library.set_models_dir(root)
    yield models
    library.set_models_dir(before)


def _picture(height, width):
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 255 // width, y * 255 // height, (x + y) % 200], axis=2).astype(np.uint8)
    cv2.circle(image, (width // 3, height // 2), height // 4, (230, 40, 90), -1)
    return image


def test_depth_anything_input_size_is_the_lower_bound_multiple_of_14():
    assert net_size(64, 64) == (518, 518)
    assert net_size(64, 128) == (518, 1036)
    assert net_size(128, 192) == (518, 784)  # 777 rounds to 784 (= 56·14)
    assert net_size(192, 128) == (784, 518)


@pytest.mark.parametrize("module", ["depth_anything", "depth_anything_v2"])
def test_depth_anything_map_is_the_stretched_depth_of_the_bgr_picture(depth_models, module):
    image = _picture(70, 90)  # at 64: 64×82, padded to 64×128
    made = preprocess(module, image, 64)
    scaled = cv2.resize(image, (82, 64), interpolation=cv2.INTER_AREA)
    padded = np.pad(scaled, [[0, 0], [0, 46], [0, 0]], mode="edge")
    x = cv2.resize(padded[:, :, ::-1] / 255.0, (1036, 518), interpolation=cv2.INTER_CUBIC)
    x = (x - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    with torch.no_grad():
        depth = depth_models[module](pixel_values=torch.from_numpy(x.transpose(2, 0, 1)[None].astype(np.float32)))
    depth = F.interpolate(depth.predicted_depth[None], (64, 128), mode="bilinear", align_corners=False)[0, 0]
    expected = ((depth - depth.min()) / (depth.max() - depth.min()) * 255.0).numpy().astype(np.uint8)[:, :82]
    assert made.shape == (64, 82, 3)
    np.testing.assert_allclose(made[:, :, 1], expected, atol=1)
    assert len(np.unique(made)) > 20


def test_midas_map_is_dpt_depth_of_the_picture_in_minus_one_to_one(depth_models):
    image = _picture(64, 64)  # a multiple of 64: no resize, no padding
    made = preprocess("depth_midas", image, 64)
    pixels = torch.from_numpy((image.astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)[None].copy())
    with torch.no_grad():
        depth = depth_models["depth_midas"](pixel_values=pixels).predicted_depth[0]
    depth = depth - depth.min()
    expected = (depth / depth.max() * 255.0).clip(0, 255).numpy().astype(np.uint8)
    np.testing.assert_allclose(made[:, :, 0], expected, atol=1)
    assert len(np.unique(made)) > 20


def test_midas_runs_on_a_picture_that_is_not_square(depth_models):
    made = preprocess("depth", _picture(70, 90), 64)  # "depth": sd-webui-controlnet 1.0's name for depth_midas
    assert made.shape == (64, 82, 3) and len(np.unique(made)) > 10  # its extremes may lie in the cropped padding


def _dpt_hybrid() -> DPTForDepthEstimation:
    """A tiny DPT-hybrid (a BiT backbone under the ViT), the layout of Intel/dpt-hybrid-midas."""
    torch.manual_seed(7)
    backbone = {
        "global_padding": "same",
        "layer_type": "bottleneck",
        "depths": [1, 1, 2],
        "hidden_sizes": [4, 8, 16],
        "embedding_dynamic_padding": True,
        "out_features": ["stage1", "stage2", "stage3"],
        "num_groups": 2,
    }
    config = DPTConfig(
        is_hybrid=True,
        backbone_config=backbone,
        backbone_featmap_shape=[1, 16, 4, 4],
        hidden_size=16,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=32,
        image_size=64,
        patch_size=16,
        neck_hidden_sizes=[8, 8, 8, 16],
        fusion_hidden_size=8,
        backbone_out_indices=[0, 1, 2, 3],
        readout_type="project",
    )
    return DPTForDepthEstimation(config).eval()


def test_midas_hybrid_equals_transformers_at_its_size_and_runs_at_any_other(depth_models):
    folder = library.models_dir() / "ControlNet" / "annotators" / "midas" / "dpt-hybrid-midas"
    hybrid = _dpt_hybrid()
    hybrid.save_pretrained(folder)
    image = _picture(64, 64)
    made = preprocess("depth_midas", image, 64)
    pixels = torch.from_numpy((image.astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)[None].copy())
    with torch.no_grad():
        depth = hybrid(pixel_values=pixels).predicted_depth[0]  # transformers' own forward, at the config's size
    depth = depth - depth.min()
    expected = (depth / depth.max() * 255.0).clip(0, 255).numpy().astype(np.uint8)
    np.testing.assert_allclose(made[:, :, 0], expected, atol=1)
    assert len(np.unique(made)) > 20
    assert preprocess("depth_midas", _picture(70, 90), 64).shape == (64, 82, 3)  # 64×128 padded: any size runs


def test_a_folder_that_is_not_a_depth_model_is_refused_in_one_line(depth_models):
    folder = library.models_dir() / "ControlNet" / "annotators" / "depth_anything" / "depth-anything-large-hf"
    (folder / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ValueError, match="is not a transformers depth model") as refused:
        preprocess("depth_anything", _picture(64, 64), 64)
    assert "\n" not in str(refused.value)


def _zoe() -> Any:
    from transformers import BeitConfig, ZoeDepthConfig, ZoeDepthForDepthEstimation

    torch.manual_seed(9)
    backbone = BeitConfig(
        image_size=64,
        patch_size=16,
        hidden_size=16,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=32,
        out_features=["stage1", "stage2", "stage3", "stage4"],
        reshape_hidden_states=False,
        use_relative_position_bias=True,
        add_fpn=False,
    )
    config = ZoeDepthConfig(
        backbone_config=backbone,
        neck_hidden_sizes=[4, 8, 8, 16],
        fusion_hidden_size=8,
        reassemble_hidden_size=16,
        num_relative_features=8,
        bin_embedding_dim=8,
        num_attractors=[4, 4, 4, 4],
        bin_configurations=[{"n_bins": 8, "min_depth": 1e-3, "max_depth": 10.0, "name": "nyu"}],
        bottleneck_features=8,
        patch_size=16,
    )
    model = ZoeDepthForDepthEstimation(config).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # its initialisation gives a constant depth: every parameter random instead
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    return model


def test_zoe_input_scales_the_least_to_384_by_512_in_multiples_of_32():
    assert zoe_size(384, 512) == (384, 512)
    assert zoe_size(96, 176) == (288, 512)  # ×2.91 (width) changes less than ×4 (height)
    assert zoe_size(600, 400) == (768, 512)  # ×1.28 (width) changes less than ×0.64


def test_zoe_map_is_its_flip_averaged_padded_depth_between_percentiles(depth_models):
    zoe = _zoe()
    zoe.save_pretrained(library.models_dir() / "ControlNet" / "annotators" / "zoedepth" / "zoedepth-nyu")
    image = _picture(70, 90)  # at 64: 64×82, padded to 64×128; Zoe pads 16 and 24 more (reflect): 96×176
    made = preprocess("depth_zoe", image, 64)
    scaled = cv2.resize(image, (82, 64), interpolation=cv2.INTER_AREA)
    padded = np.pad(scaled, [[0, 0], [0, 46], [0, 0]], mode="edge")
    x = torch.from_numpy(padded.astype(np.float32) / 255).permute(2, 0, 1)[None]
    depths = []
    for flip in (False, True):
        xi = torch.flip(x, [3]) if flip else x
        big = F.pad(xi, [24, 24, 16, 16], mode="reflect")
        net = F.interpolate(big, (288, 512), mode="bilinear", align_corners=True) * 2 - 1
        with torch.no_grad():
            d = zoe(pixel_values=net).predicted_depth[:, None]
        d = F.interpolate(d, (96, 176), mode="bicubic", align_corners=False)[:, :, 16:-16, 24:-24]
        depths.append(torch.flip(d, [3]) if flip else d)
    depth = ((depths[0] + depths[1]) / 2)[0, 0].numpy()
    low, high = np.percentile(depth, 2), np.percentile(depth, 85)
    expected = ((1 - (depth - low) / (high - low)) * 255).clip(0, 255).astype(np.uint8)[:, :82]
    np.testing.assert_allclose(made[:, :, 0], expected, atol=1)
    assert len(np.unique(made)) > 20
