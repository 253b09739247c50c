"""Where an IP-Adapter's files are found: the image encoder's search order and width check, the auto module's
encoder, a hub file offline, and sd-webui-controlnet's guidance window formula."""

from __future__ import annotations

import pytest
from helpers.tiny_ip_adapter import save_encoder_file, tiny_image_encoder

from jupyter_sd import library
from jupyter_sd.engine.control.ip_adapter import active_at
from jupyter_sd.engine.control.ip_adapter_files import AdapterFile, encoder_kind, find_adapter, find_encoder


@pytest.fixture()
def models(tmp_path):
    root = tmp_path / "models"
    (root / "ControlNet").mkdir(parents=True)
    library.set_models_dir(root)
    yield root
    library.set_models_dir(None)


def adapter(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return AdapterFile(path, path.stem, (str(path),))


def test_encoder_beside_comes_first_and_one_of_another_width_is_passed_over(models):
    file = adapter(models / "ipadapter" / "sdxl_models" / "ip-adapter_sdxl_vit-h.safetensors")
    tiny_image_encoder(projection=24).save_pretrained(str(file.path.parent / "image_encoder"))  # h94: bigG there
    assert find_encoder(file, "ViT-H", 24, plus=False) == file.path.parent / "image_encoder"
    comfy = save_encoder_file(tiny_image_encoder(projection=20), models / "clip_vision" / "clip_h.safetensors")
    assert find_encoder(file, "ViT-H", 20, plus=False) == comfy  # the one beside is 24 wide: not this adapter's
    assert find_encoder(file, "ViT-H", 32, plus=True) == file.path.parent / "image_encoder"  # plus: hidden width
    with pytest.raises(ValueError, match=r"^controlnet: no ViT-bigG image encoder for ip-adapter_sdxl_vit-h: put "):
        find_encoder(file, "ViT-bigG", 1280, plus=False)
    annotators = models / "ControlNet" / "annotators" / "clip_vision" / "clip_g.safetensors"
    with pytest.raises(ValueError, match="no ViT-bigG image encoder"):  # clip_h is not a bigG name
        find_encoder(file, "ViT-bigG", 20, plus=False)
    save_encoder_file(tiny_image_encoder(projection=20), annotators)  # sd-webui-controlnet's downloads
    assert find_encoder(file, "ViT-bigG", 20, plus=False) == annotators


def test_auto_module_picks_the_encoder_by_the_adapters_name():
    assert encoder_kind("ip-adapter-auto", "ip-adapter_sdxl") == "ViT-bigG"
    assert encoder_kind("ip-adapter-auto", "ip-adapter-plus_sdxl_vit-h") == "ViT-H"
    assert encoder_kind("ip-adapter-auto", "ip-adapter-plus-face_sd15") == "ViT-H"
    assert encoder_kind("ip-adapter_clip_sdxl", "anything") == "ViT-bigG"


def test_a_hub_file_offline_is_one_line(models, offline):
    with pytest.raises(ValueError, match="^controlnet: ") as error:
        find_adapter("h94/IP-Adapter/models/ip-adapter_sd15.safetensors")
    assert "\n" not in str(error.value) and len(str(error.value)) < 200


def test_guidance_window_is_the_extensions():
    # sd-webui-controlnet: step i of n applies unless i/n < start or i/n > end
    assert [active_at(i, 10, 0.2, 0.5) for i in range(10)] == [i / 10 >= 0.2 and i / 10 <= 0.5 for i in range(10)]
    assert [active_at(i, 4, 0.0, 0.5) for i in range(4)] == [True, True, True, False]  # 2/4 = 0.5 still applies
