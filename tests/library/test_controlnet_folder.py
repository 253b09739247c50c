"""ControlNet models in the models folder's ControlNet/ (A1111's layout), found by name or by the bracketed hash."""

import hashlib
import json

import numpy as np
import pytest

from jupyter_sd import library
from jupyter_sd.library.kinds import classify


@pytest.fixture()
def models(tmp_path):
    root = tmp_path / "models"
    library.set_models_dir(root)
    yield root
    library.set_models_dir(None)


def _bytes(seed, size=1_200_000):
    return np.random.RandomState(seed).bytes(size)


def _old_hash(data):
    """A1111's old model hash, as sd-webui-controlnet brackets it: sha256 of the 64 KiB at 1 MiB, 8 hex."""
    return hashlib.sha256(data[0x100000:0x110000]).hexdigest()[:8]


def test_files_and_diffusers_folders_found_by_name_and_hash(models):
    folder = models / "ControlNet"
    canny = _bytes(1)
    (folder / "sd15").mkdir(parents=True)
    (folder / "sd15" / "control_v11p_sd15_canny.safetensors").write_bytes(canny)
    depth = folder / "controlnet-depth-sdxl"
    depth.mkdir()
    (depth / "config.json").write_text(json.dumps({"_class_name": "ControlNetModel"}))
    weights = _bytes(2)
    (depth / "diffusion_pytorch_model.safetensors").write_bytes(weights)
    (folder / "annotators").mkdir()
    (folder / "annotators" / "body_pose_model.pth").write_bytes(b"annotator weights, not a ControlNet")

    names = sorted(model.name for model in library.list_models("controlnet"))
    assert names == ["control_v11p_sd15_canny", "controlnet-depth-sdxl"]
    found = library.find_model("controlnet", "control_v11p_sd15_canny")
    assert found is not None and found.short_hash == _old_hash(canny)
    assert library.find_model("controlnet", _old_hash(canny), hash_big_files=False).name == "control_v11p_sd15_canny"
    by_folder = library.find_model("controlnet", _old_hash(weights))
    assert by_folder is not None and by_folder.path == depth and by_folder.short_hash == _old_hash(weights)
    assert library.find_model("controlnet", "body_pose_model") is None
    assert library.subfolder("controlnet") == folder


def test_controlnet_files_told_from_their_tensor_names():
    assert classify(["input_hint_block.0.weight", "zero_convs.0.0.weight", "middle_block_out.0.weight"]) == (
        "controlnet"
    )
    assert classify(["controlnet_cond_embedding.conv_in.weight", "controlnet_down_blocks.0.weight"]) == "controlnet"
    whole = ["model.diffusion_model.input_blocks.0.0.weight", "control_model.input_hint_block.0.weight"]
    assert classify(whole) == "controlnet"  # ControlNet 1.0 files carry the SD model too
    assert classify(["model.diffusion_model.input_blocks.0.0.weight"]) == "checkpoint"
    ip_adapter = ["image_proj.proj.weight", "image_proj.norm.weight", "ip_adapter.1.to_k_ip.weight"]
    assert classify(ip_adapter) == "controlnet"  # sd-webui-controlnet keeps IP-Adapters in ControlNet/
    assert classify([*ip_adapter, "ip_adapter.1.to_k_lora.down.weight"]) == "controlnet"  # FaceID: not a LoRA
    flux_ip = ["ip_adapter_proj_model.proj.weight", "double_blocks.0.processor.ip_adapter_double_stream_k_proj.weight"]
    assert classify(flux_ip) == "controlnet"  # XLabs' Flux IP-Adapter
    instantx = ["controlnet_x_embedder.weight", "transformer_blocks.0.attn.to_q.weight", "controlnet_blocks.0.weight"]
    xlabs = ["double_blocks.0.img_attn.qkv.weight", "input_hint_block.0.weight", "controlnet_blocks.0.weight"]
    sd3 = ["pos_embed_input.proj.weight", "transformer_blocks.0.attn.to_q.weight", "controlnet_blocks.0.weight"]
    zimage = ["control_all_x_embedder.2-1.weight", "control_layers.0.after_proj.weight"]
    assert [classify(names) for names in (instantx, xlabs, sd3, zimage)] == ["controlnet"] * 4
    assert classify(["double_blocks.0.img_attn.qkv.weight", "img_in.weight"]) is None  # a Flux transformer is not one
