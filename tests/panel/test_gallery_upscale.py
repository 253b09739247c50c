"""The gallery's upscale action: a picture upscaled as the Extras tab does, saved beside it and shown."""

from __future__ import annotations

import numpy as np
from helpers.upscaler_weights import picture, rrdbnet_weights
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from safetensors.torch import save_file

from jupyter_sd.panel.gallery import Gallery
from jupyter_sd.recipe.request import PaintRequest
from jupyter_sd.recipe.result import PaintResult


def test_upscale_a_saved_picture_from_the_detail_view(esrgan_models, tmp_path):
    path = tmp_path / "pictures" / "00001-7.png"
    path.parent.mkdir()
    request = PaintRequest(prompt="a fox", seed=7)
    image = picture(24, 16)
    info = PngInfo()
    info.add_text("parameters", request.to_infotext())
    image.save(path, pnginfo=info)
    gallery = Gallery()
    gallery.add(PaintResult(request=request, images=[image], seeds=[7], paths=[path]))
    assert gallery.upscaler.options == ("Lanczos", "Nearest")
    save_file(rrdbnet_weights(identity=True), str(esrgan_models / "ESRGAN" / "4x-Ident.safetensors"))
    gallery.show(gallery.items[0])
    assert gallery.upscaler.options == ("4x-Ident", "Lanczos", "Nearest")  # the folder is read again
    gallery.upscaler.value = "4x-Ident"
    gallery.upscale_by.value = 2
    gallery.upscale_button.click()
    new = gallery.items[0]
    assert gallery.selected is new and len(gallery.items) == 2
    assert new.path == path.parent / "00002-upscale.png" and new.path.is_file()
    expected = image.resize((96, 64), Image.NEAREST).resize((48, 32), Image.LANCZOS)  # identity ×4, then A1111's
    assert np.array_equal(np.asarray(new.image), np.asarray(expected))
    assert new.infotext.endswith("\nPostprocess upscale by: 2, Postprocess upscaler: 4x-Ident")
    assert "Seed: 7" in new.infotext and new.recipe().seed == 7  # its recipe is the original's


def test_a_picture_not_saved_is_upscaled_in_memory(esrgan_models):
    gallery = Gallery()
    gallery.add(PaintResult(request=PaintRequest(prompt="a"), images=[picture(24, 16)], seeds=[1]))
    gallery.show(gallery.items[0])
    gallery.upscale_by.value = 8
    gallery.upscaler.value = "Nearest"
    assert gallery.upscale(gallery.items[0]).image.size == (192, 128)  # not saved: in memory only
    assert gallery.items[0].path is None


def test_a_refusal_is_printed_not_raised(esrgan_models, capsys):
    (esrgan_models / "ESRGAN" / "4x-Broken.safetensors").write_bytes(b"not a safetensors file")
    gallery = Gallery()
    gallery.add(PaintResult(request=PaintRequest(prompt="a"), images=[picture(24, 16)], seeds=[1]))
    gallery.show(gallery.items[0])
    gallery.upscaler.value = "4x-Broken"
    assert gallery.upscale(gallery.items[0]) is None
    assert len(gallery.items) == 1 and gallery.selected is gallery.items[0]
    assert "upscaler: could not read 4x-Broken.safetensors" in capsys.readouterr().out


def test_a_cells_controls_upscale_its_newest_picture(esrgan_models, tmp_path):
    from jupyter_sd.panel import CellControls

    path = tmp_path / "00003-9.png"
    image = picture(24, 16, seed=9)
    image.save(path)
    controls = CellControls(PaintResult(request=PaintRequest(prompt="a"), images=[image], seeds=[9], paths=[path]))
    controls.upscaling.upscaler.value = "Nearest"
    controls.upscaling.factor.value = 3
    controls.upscaling.button.click()
    saved = tmp_path / "00004-upscale.png"
    assert saved.is_file()
    with Image.open(saved) as up:
        assert up.size == (72, 48)
        assert np.array_equal(np.asarray(up.convert("RGB")), np.asarray(image.resize((72, 48), Image.NEAREST)))
        assert up.text["extras"] == "Postprocess upscale by: 3, Postprocess upscaler: Nearest"
