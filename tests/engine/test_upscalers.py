"""Upscaler models for the hires fix (ESRGAN/ in the models folder): the networks, their two file layouts, tiles,
the A1111 names, and the hires pass using them.

The weights are built here by hand in the layouts the downloaded files use. An "identity" network (the first
and last convolutions pass channels through, the trunk adds nothing, the upsampling convolutions are identities)
computes exactly nearest-neighbour ×4, which the tests compute with PIL.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.progress_recorder import Recorder
from helpers.upscaler_weights import FEATURES, picture, rrdbnet_weights, srvgg_weights, to_original_esrgan
from PIL import Image
from safetensors.torch import save_file

from jupyter_sd import library
from jupyter_sd.engine import Engine
from jupyter_sd.engine.upscalers import Upscaler, build_upscaler
from jupyter_sd.library.kinds import classify
from jupyter_sd.recipe.request import PaintRequest


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def _upscaler(weights: dict[str, torch.Tensor], path) -> Upscaler:
    save_file(weights, str(path))
    return Upscaler(path, False, torch.device("cpu"), torch.float32)


def test_the_identity_network_is_nearest_neighbour_x4(esrgan_models):
    upscaler = _upscaler(rrdbnet_weights(identity=True), esrgan_models / "ESRGAN" / "ident4x.safetensors")
    image = picture()
    assert upscaler.scale == 4
    out = upscaler.upscale_once(image)
    assert out.size == (80, 48)
    assert np.array_equal(_pixels(out), _pixels(image.resize((80, 48), Image.NEAREST)))


def test_original_esrgan_layout_loads_as_the_same_network(esrgan_models):
    """4x-UltraSharp's layout (model.0, model.1.sub.N.RDBk.convj.0, …) paints what BasicSR's names paint."""
    weights = rrdbnet_weights(identity=False, blocks=2)
    basicsr = _upscaler(weights, esrgan_models / "ESRGAN" / "new.safetensors")
    original = _upscaler(to_original_esrgan(weights, blocks=2), esrgan_models / "ESRGAN" / "old.safetensors")
    image = picture(seed=2)
    first, second = basicsr.upscale_once(image), original.upscale_once(image)
    assert np.array_equal(_pixels(first), _pixels(second))
    assert _pixels(first).std() > 1  # a real picture, not a blank: the comparison means something


def test_real_esrgan_x2_folds_pixels_first(esrgan_models):
    """RealESRGAN_x2plus: 2×2 pixels folded into 12 input channels, then ×4: the picture comes out ×2."""
    weights = rrdbnet_weights(identity=False)
    weights["conv_first.weight"] = torch.randn(FEATURES, 12, 3, 3, generator=torch.Generator().manual_seed(4))
    upscaler = _upscaler(weights, esrgan_models / "ESRGAN" / "RealESRGAN_x2plus.safetensors")
    assert upscaler.scale == 2
    assert upscaler.upscale_once(picture(21, 13)).size == (42, 26)  # odd sides: padded, then cropped back


def test_compact_network_adds_to_the_nearest_upscale(esrgan_models):
    upscaler = _upscaler(srvgg_weights(), esrgan_models / "ESRGAN" / "realesr-general-x4v3.safetensors")
    image = picture(seed=3)
    assert upscaler.scale == 4
    assert np.array_equal(_pixels(upscaler.upscale_once(image)), _pixels(image.resize((80, 48), Image.NEAREST)))


def test_tiles_give_the_whole_pictures_result(esrgan_models):
    """With more context than the network's reach, tile by tile is the whole picture at once (to rounding)."""
    upscaler = _upscaler(rrdbnet_weights(identity=False), esrgan_models / "ESRGAN" / "random.safetensors")
    image = picture(40, 40, seed=5)
    whole = _pixels(upscaler.upscale_once(image, tile=1000))
    tiled = _pixels(upscaler.upscale_once(image, tile=16, overlap=24))
    assert np.abs(whole - tiled).max() <= 1
    assert whole.std() > 1


def test_upscale_goes_up_until_it_covers_then_lanczos(esrgan_models):
    upscaler = _upscaler(rrdbnet_weights(identity=True), esrgan_models / "ESRGAN" / "ident4x.safetensors")
    image = picture(8, 8)
    out = upscaler.upscale(image, 100, 100)  # ×4 = 32, ×4 again = 128 ≥ 100, then Lanczos to 100
    expected = image.resize((128, 128), Image.NEAREST).resize((100, 100), Image.LANCZOS)
    assert np.array_equal(_pixels(out), _pixels(expected))


def test_other_architectures_are_refused_in_one_line():
    with pytest.raises(ValueError, match=r"^hires_upscaler: swin is not an ESRGAN or Real-ESRGAN network"):
        build_upscaler({"layers.0.attn.qkv.weight": torch.zeros(3, 3)}, "swin")


def test_the_files_are_told_apart_from_their_tensor_names():
    assert classify(rrdbnet_weights(identity=True)) == "upscaler"
    assert classify(to_original_esrgan(rrdbnet_weights(identity=True))) == "upscaler"
    assert classify(srvgg_weights()) == "upscaler"


def test_a1111_names_find_the_built_in_files(esrgan_models):
    save_file(rrdbnet_weights(identity=True), str(esrgan_models / "ESRGAN" / "RealESRGAN_x4plus.safetensors"))
    assert library.find_upscaler("R-ESRGAN 4x+").path.name == "RealESRGAN_x4plus.safetensors"
    PaintRequest(prompt="a", hires=2, hires_upscaler="R-ESRGAN 4x+").validate()
    with pytest.raises(ValueError) as missing:
        PaintRequest(prompt="a", hires=2, hires_upscaler="R-ESRGAN 4x+ Anime6B").validate()
    assert str(missing.value) == (
        f"hires_upscaler: 'R-ESRGAN 4x+ Anime6B' is A1111's RealESRGAN_x4plus_anime_6B.pth, which is not in "
        f"{esrgan_models / 'ESRGAN'}: %paint download "
        "https://github.com/xinntao/Real-ESRGAN/releases/download/v0.2.2.4/RealESRGAN_x4plus_anime_6B.pth"
        " --kind upscaler"
    )
    with pytest.raises(ValueError, match=r"no upscaler model '4x-UltraSharp' in .*in the folder: RealESRGAN_x4plus"):
        PaintRequest(prompt="a", hires=2, hires_upscaler="4x-UltraSharp").validate()


@pytest.fixture(scope="module")
def engine():
    return Engine()


def _hires(tiny_model_dir, upscaler: str, **options) -> PaintRequest:
    base = dict(prompt="a red circle", model=str(tiny_model_dir), steps=3, seed=7, width=16, height=16)
    base.update(hires=4, hires_steps=2, hires_denoise=0.5, hires_upscaler=upscaler, preview="none", save=False)
    return PaintRequest(**{**base, **options})


def test_hires_with_the_identity_model_is_hires_with_nearest(engine, tiny_model_dir, esrgan_models):
    """×4 by the identity network is PIL's nearest ×4: the hires pictures are the same pixels."""
    save_file(rrdbnet_weights(identity=True), str(esrgan_models / "ESRGAN" / "4x-UltraSharp.safetensors"))
    first = Recorder()
    ours = engine.generate(_hires(tiny_model_dir, "4x-UltraSharp", n=2), first)
    nearest = engine.generate(_hires(tiny_model_dir, "Nearest", n=2))
    assert [image.size for image in ours.images] == [(64, 64), (64, 64)]
    for a, b in zip(ours.images, nearest.images):
        assert np.array_equal(_pixels(a), _pixels(b))
    assert "Hires upscaler: 4x-UltraSharp" in ours.infotext(0)
    assert "loading upscaler 4x-UltraSharp…" in first.notices and "loaded upscaler 4x-UltraSharp (×4)" in first.notices
    again = Recorder()
    engine.generate(_hires(tiny_model_dir, "4x-UltraSharp"), again)
    assert not [line for line in again.notices if "upscaler" in line]  # kept loaded: the next cell loads nothing
    save_file(rrdbnet_weights(identity=False), str(esrgan_models / "ESRGAN" / "random4x.safetensors"))
    other = engine.generate(_hires(tiny_model_dir, "random4x", n=2))
    assert not np.array_equal(_pixels(other.images[0]), _pixels(nearest.images[0]))  # the model is what enlarges


def test_a_pickle_upscaler_is_refused_before_painting_and_runs_when_allowed(engine, tiny_model_dir, esrgan_models):
    torch.save(rrdbnet_weights(identity=True), esrgan_models / "ESRGAN" / "4x_foolhardy_Remacri.pth")
    recorder = Recorder()
    with pytest.raises(ValueError, match=r"^hires_upscaler: 4x_foolhardy_Remacri.pth is a pickle file"):
        engine.generate(_hires(tiny_model_dir, "4x_foolhardy_Remacri"), recorder)
    assert recorder.steps == [] and recorder.phases == []  # nothing was painted
    result = engine.generate(_hires(tiny_model_dir, "4x_foolhardy_Remacri", allow_pickle=True))
    assert result.images[0].size == (64, 64)


def test_a_pasted_civitai_recipe_paints_with_its_upscaler(esrgan_models, shell, tiny_model_dir):
    """The recipe most hires pictures on civitai carry: ``Hires upscaler: 4x-UltraSharp``."""
    from helpers.ipython_shell import run

    save_file(rrdbnet_weights(identity=True), str(esrgan_models / "ESRGAN" / "4x-UltraSharp.safetensors"))
    cell = (
        f"%%paint --model {tiny_model_dir} --no-save --preview none\n"
        "a red circle\nSteps: 3, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 16x16, Denoising strength: 0.5, "
        "Hires upscale: 2, Hires steps: 2, Hires upscaler: 4x-UltraSharp"
    )
    result = run(shell, cell)
    assert result.request.hires_upscaler == "4x-UltraSharp" and result.images[0].size == (32, 32)
    assert "Hires upscaler: 4x-UltraSharp" in result.infotext(0)


def test_the_panel_offers_the_folders_upscalers(esrgan_models):
    save_file(rrdbnet_weights(identity=True), str(esrgan_models / "ESRGAN" / "4x-UltraSharp.safetensors"))
    import dataclasses

    from jupyter_sd.panel.controls import control_for

    field = next(f for f in dataclasses.fields(PaintRequest) if f.name == "hires_upscaler")
    options = list(control_for(field, "Latent").options)
    assert options[0] == "Latent" and options[-1] == "4x-UltraSharp" and "Lanczos" in options
    assert list(control_for(field, "R-ESRGAN 4x+").options)[-1] == "R-ESRGAN 4x+"  # a pasted name stays shown


def test_a_downloaded_pth_lands_in_esrgan_by_its_tensors(esrgan_models, tmp_path):
    """What `%paint download https://…/4x-UltraSharp.pth` does: the kind from the pickle's names, never unpickled."""
    from helpers.fake_web import FakeWebServer, Served

    from jupyter_sd.downloads import download as downloads

    source = tmp_path / "4x-UltraSharp.pth"
    torch.save(to_original_esrgan(rrdbnet_weights(identity=True)), source)
    with FakeWebServer() as web:
        web.files["/files/4x-UltraSharp.pth"] = Served(source.read_bytes())
        got = downloads.download(f"{web.base}/files/4x-UltraSharp.pth")
    assert got.kind == "upscaler" and got.path == esrgan_models / "ESRGAN" / "4x-UltraSharp.pth"
    assert "paint with --hires-upscaler 4x-UltraSharp" in got.summary() and "--allow-pickle" in got.summary()
    assert library.find_upscaler("4x-UltraSharp").path == got.path


def test_the_panel_loads_a_recipe_with_an_upscaler_added_since(esrgan_models):
    """A picture painted with an upscaler the panel did not list yet: loading its recipe shows that upscaler."""
    from jupyter_sd.panel.controls import Controls

    controls = Controls(PaintRequest(prompt="a"))
    save_file(rrdbnet_weights(identity=True), str(esrgan_models / "ESRGAN" / "4x-AnimeSharp.safetensors"))
    controls.load(PaintRequest(prompt="a", hires=2, hires_upscaler="4x-AnimeSharp"))
    assert controls.widgets["hires_upscaler"].value == "4x-AnimeSharp"
    assert controls.request().hires_upscaler == "4x-AnimeSharp"
