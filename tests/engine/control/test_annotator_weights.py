"""Annotator weights: found in ``ControlNet/annotators/``, downloaded once from a local server playing the hub
(progress, Range resume), and refused in one line offline or when the download fails.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from helpers.annotator_nets import hed_state, tiny_depth_anything
from helpers.fake_web import FakeWebServer, Served
from helpers.seg_nets import save_oneformer, tiny_oneformer

from jupyter_sd import library
from jupyter_sd.engine.control.preprocessors import preprocess


def _hed_bytes() -> bytes:
    buffer = io.BytesIO()
    torch.save(hed_state(), buffer)
    return buffer.getvalue()


@pytest.fixture()
def models(tmp_path):
    root = tmp_path / "models"
    root.mkdir()
    before = library.models_dir()
    library.set_models_dir(root)
    yield root / "ControlNet" / "annotators"
    library.set_models_dir(before)


@pytest.fixture()
def hub(monkeypatch, models):
    import huggingface_hub.constants as constants

    with FakeWebServer() as web:
        monkeypatch.setenv("HF_ENDPOINT", web.base)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        yield web


def _picture():
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)


def test_missing_weights_offline_are_refused_in_one_line_naming_file_and_folder(models, monkeypatch):
    import huggingface_hub.constants as constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "is_offline_mode", lambda: True, raising=False)
    with pytest.raises(ValueError) as refused:
        preprocess("softedge_pidinet", _picture(), 64)
    line = str(refused.value)
    assert "ControlNet/annotators/pidinet/table5_pidinet.pth in the models folder" in line and "offline" in line
    assert "lllyasviel/Annotators" in line and "\n" not in line and len(line) < 200


def test_weights_download_once_resuming_a_dropped_connection(hub, models):
    data = _hed_bytes()
    path = "/lllyasviel/Annotators/resolve/main/ControlNetHED.pth"
    hub.files[path] = Served(data, drop_after=len(data) // 2)
    made = preprocess("softedge_hed", _picture(), 64)
    landed = models / "hed" / "ControlNetHED.pth"
    assert landed.read_bytes() == data
    assert not list(models.rglob("*.part"))
    ranges = [headers.get("Range") for headers in hub.requests(path)]
    assert f"bytes={len(data) // 2}-" in ranges  # the second half came by a Range request
    asked = len(hub.requests(path))
    again = preprocess("softedge_hed", _picture(), 64)
    assert len(hub.requests(path)) == asked  # there now: not asked again
    np.testing.assert_array_equal(made, again)


def test_weights_put_straight_in_annotators_are_found(models):
    models.mkdir(parents=True)
    (models / "ControlNetHED.pth").write_bytes(_hed_bytes())
    assert preprocess("softedge_hed", _picture(), 64).shape == (64, 64, 3)


def test_a_transformers_depth_model_downloads_as_a_folder(hub, models, tmp_path):
    tiny_depth_anything(0).save_pretrained(tmp_path / "served")
    for name in ("config.json", "model.safetensors"):
        hub.add_hub_file("depth-anything/Depth-Anything-V2-Large-hf", name, (tmp_path / "served" / name).read_bytes())
    made = preprocess("depth_anything_v2", _picture(), 64)
    folder = models / "depth_anything_v2" / "Depth-Anything-V2-Large-hf"
    for name in ("config.json", "model.safetensors"):
        assert (folder / name).read_bytes() == (tmp_path / "served" / name).read_bytes()
    assert made.shape == (64, 64, 3)


def test_a_oneformer_model_downloads_its_weights_config_and_vocabulary(hub, models, tmp_path, monkeypatch):
    from jupyter_sd.engine.control import segmentation

    monkeypatch.setitem(
        segmentation.SEG_TESTS, "oneformer_coco", segmentation.SegTest(64, 256, segmentation.COCO_PALETTE)
    )
    save_oneformer(tiny_oneformer(133, 3), tmp_path / "served")
    names = ("config.json", "pytorch_model.bin", "vocab.json", "merges.txt")  # merges.txt: not a model file
    for name in names:
        hub.add_hub_file("shi-labs/oneformer_coco_swin_large", name, (tmp_path / "served" / name).read_bytes())
    made = preprocess("seg_ofcoco", _picture(), 64)
    folder = models / "oneformer" / "oneformer_coco_swin_large"
    for name in names:
        assert (folder / name).read_bytes() == (tmp_path / "served" / name).read_bytes()
    assert made.shape == (64, 64, 3)


def test_a_failed_download_is_refused_in_one_line(hub, models):
    with pytest.raises(ValueError) as refused:
        preprocess("lineart_coarse", _picture(), 64)  # the server has no sk_model2.pth
    line = str(refused.value)
    assert "ControlNet/annotators/lineart/sk_model2.pth" in line and "download failed" in line and len(line) < 200
    assert "\n" not in line and not (models / "lineart" / "sk_model2.pth").exists()


def test_openpose_and_mlsd_files_download_once_into_their_folders(hub, models):
    from jupyter_sd.engine.control.annotator_weights import annotator_weights

    published = {
        "openpose_body": "body_pose_model.pth",
        "openpose_hand": "hand_pose_model.pth",
        "openpose_face": "facenet.pth",
        "mlsd": "mlsd_large_512_fp32.pth",
    }
    for name in published.values():
        hub.add_hub_file("lllyasviel/Annotators", name, name.encode() * 100)
    for annotator, name in published.items():
        path = annotator_weights(annotator)
        folder = "mlsd" if annotator == "mlsd" else "openpose"
        assert path == models / folder / name and path.read_bytes() == name.encode() * 100
        asked = len(hub.requests(f"/lllyasviel/Annotators/resolve/main/{name}"))
        assert annotator_weights(annotator) == path
        assert len(hub.requests(f"/lllyasviel/Annotators/resolve/main/{name}")) == asked  # there now: not asked again


def test_torchscript_and_unet_files_download_through_the_streamed_path(hub, models):
    from jupyter_sd.engine.control.annotator_weights import annotator_weights

    script = "/LayerNorm/DensePose-TorchScript-with-hint-image/resolve/main/densepose_r50_fpn_dl.torchscript"
    data = b"torchscript" * 5000
    hub.files[script] = Served(data, drop_after=len(data) // 2)
    hub.add_hub_file("bdsqlsz/qinglong_controlnet-lllite", "Annotators/UNet.pth", b"unet" * 100)
    path = annotator_weights("densepose")
    assert path == models / "densepose" / "densepose_r50_fpn_dl.torchscript" and path.read_bytes() == data
    assert f"bytes={len(data) // 2}-" in [h.get("Range") for h in hub.requests(script)]  # resumed, not whole
    assert annotator_weights("anime_face_segment") == models / "anime_face_segment" / "UNet.pth"
    assert (models / "anime_face_segment" / "UNet.pth").read_bytes() == b"unet" * 100
