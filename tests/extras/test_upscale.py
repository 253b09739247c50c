"""A1111's Extras tab upscale: ``%paint upscale`` and ``jupyter_sd.upscale``.

The upscaler files are tiny ESRGAN (original ``model.N`` layout) and Real-ESRGAN compact networks with random
weights, made here and loaded by name from a esrgan_models folder. The references are the networks run directly on the
whole picture (no tiles), PIL's Lanczos for A1111's last resize, and the blend formula written out.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.ipython_shell import run
from helpers.upscaler_weights import picture, rrdbnet_weights, srvgg_weights, to_original_esrgan
from IPython.core.error import UsageError
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from safetensors.torch import save_file

import jupyter_sd
from jupyter_sd.engine import upscaler_nets

RECIPE = "a red fox\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 24x16"


@pytest.fixture()
def esrgan(esrgan_models):
    """An ESRGAN ×4 in 4x-UltraSharp's layout, as ``4x-Test``; returns its weights in BasicSR's names.

    The picture passes through (identity head and tail) and a random trunk adds to it: a picture, not a blank.
    """
    weights = rrdbnet_weights(identity=True, blocks=1)
    trunk = rrdbnet_weights(identity=False, blocks=1, seed=3)
    weights.update({key: value * 3 for key, value in trunk.items() if key.startswith(("body.", "conv_body."))})
    save_file(to_original_esrgan(weights, blocks=1), str(esrgan_models / "ESRGAN" / "4x-Test.safetensors"))
    return weights


@pytest.fixture()
def compact(esrgan_models):
    """A random realesr-general-x4v3 (its last convolution random too, so it adds to the nearest upscale)."""
    weights = srvgg_weights(convs=2)
    last = max(int(key.split(".")[1]) for key in weights)
    weights[f"body.{last}.weight"] = torch.randn(48, 4, 3, 3, generator=torch.Generator().manual_seed(9)) * 0.2
    save_file(weights, str(esrgan_models / "ESRGAN" / "realesr-general-x4v3.safetensors"))
    return weights


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float64)


def _run_directly(net: torch.nn.Module, image: Image.Image) -> Image.Image:
    """The network on the whole picture at once, in float32: the reference every tiled run is held to."""
    source = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    with torch.no_grad():
        out = net.eval()(source)[0].clamp(0, 1).permute(1, 2, 0).numpy()
    return Image.fromarray((out * 255.0).round().astype(np.uint8))


def _esrgan_net(weights):
    net = upscaler_nets.rrdbnet_for(weights)
    net.load_state_dict(weights)
    return net


def test_esrgan_by_name_is_the_network_then_lanczos_to_a1111s_size(esrgan):
    image = picture(24, 16, seed=1)
    result = jupyter_sd.upscale(image, "4x-Test", 2, save=False, user_ns={}, notice=lambda line: None)
    assert result.image.size == (48, 32)
    expected = _run_directly(_esrgan_net(esrgan), image).resize((48, 32), Image.LANCZOS)
    assert np.abs(_pixels(result.image) - _pixels(expected)).max() <= 1  # 1/255
    assert _pixels(expected).std() > 5  # a real picture, not a blank: the comparison means something


def test_compact_network_by_a1111s_name_at_its_own_scale(compact):
    image = picture(16, 8, seed=2)
    result = jupyter_sd.upscale(image, "R-ESRGAN General 4xV3", 4, save=False, user_ns={}, notice=lambda line: None)
    assert result.image.size == (64, 32)
    net = upscaler_nets.srvgg_for(compact)
    net.load_state_dict(compact)
    expected = _run_directly(net, image)
    assert np.abs(_pixels(result.image) - _pixels(expected)).max() <= 1
    nearest = _pixels(image.resize((64, 32), Image.NEAREST))
    assert np.abs(_pixels(expected) - nearest).mean() > 5  # the network adds something to nearest ×4


def test_tiles_give_the_whole_pictures_result_within_a_level(esrgan_models):
    """Tiles of 32 input pixels with 16 of context, on a network that reaches 31 pixels (two RRDB blocks): what
    lies beyond the context changes the seams only by rounding. Stated tolerance: every pixel within 1 level."""
    weights = rrdbnet_weights(identity=True, blocks=2)
    trunk = rrdbnet_weights(identity=False, blocks=2, seed=3)
    weights.update({key: value * 3 for key, value in trunk.items() if key.startswith(("body.", "conv_body."))})
    save_file(to_original_esrgan(weights, blocks=2), str(esrgan_models / "ESRGAN" / "4x-Deep.safetensors"))
    image = picture(96, 64, seed=4)
    quiet = dict(save=False, user_ns={}, notice=lambda line: None)
    whole = _pixels(jupyter_sd.upscale(image, "4x-Deep", 4, tile=1000, **quiet).image)
    tiled = _pixels(jupyter_sd.upscale(image, "4x-Deep", 4, tile=32, **quiet).image)
    assert whole.shape == (256, 384, 3) and whole.std() > 5
    assert np.abs(whole - tiled).max() <= 1


def test_two_upscalers_blend_by_visibility(esrgan):
    image = picture(24, 16, seed=5)
    quiet = dict(save=False, user_ns={}, notice=lambda line: None)
    first = _pixels(jupyter_sd.upscale(image, "4x-Test", 2, **quiet).image)
    second = _pixels(jupyter_sd.upscale(image, "Lanczos", 2, **quiet).image)
    blended = jupyter_sd.upscale(image, "4x-Test", 2, upscaler_2="Lanczos", visibility=0.3, **quiet)
    expected = first * (1 - 0.3) + second * 0.3
    assert np.abs(_pixels(blended.image) - expected).max() <= 1
    assert np.abs(first - second).mean() > 5  # the two differ, so the blend is tested
    assert blended.infotext(0) == (
        "Postprocess upscale by: 2, Postprocess upscaler: 4x-Test, Postprocess upscaler 2: Lanczos, "
        "Postprocess upscaler 2 visibility: 0.3"
    )


def test_sizes_round_down_to_8_and_scale_to_crops_the_centre(esrgan_models):
    quiet = dict(save=False, user_ns={}, notice=lambda line: None)
    assert jupyter_sd.upscale(picture(21, 13), "Lanczos", 2, **quiet).image.size == (40, 24)  # 42×26 → A1111's ÷8
    image = picture(24, 16, seed=6)
    cropped = jupyter_sd.upscale(image, "Nearest", size="64x48", **quiet)
    whole = jupyter_sd.upscale(image, "Nearest", size="64x48", crop=False, **quiet)
    assert whole.image.size == (72, 48)  # by max(64/24, 48/16) = 3
    assert np.array_equal(_pixels(whole.image), _pixels(image.resize((72, 48), Image.NEAREST)))
    assert np.array_equal(_pixels(cropped.image), _pixels(whole.image)[:, 4:68])
    assert cropped.infotext(0) == (
        "Postprocess upscale to: 64x48, Postprocess crop to: 64x48, Postprocess upscaler: Nearest"
    )


def test_the_saved_png_keeps_its_recipe_and_adds_the_extras_keys(esrgan, tmp_path):
    source = tmp_path / "00007-42.png"
    info = PngInfo()
    info.add_text("parameters", RECIPE)
    picture(24, 16).save(source, pnginfo=info)
    out = tmp_path / "out"
    result = jupyter_sd.upscale(str(source), "4x-Test", 2, outdir=str(out), notice=lambda line: None)
    assert result.paths == [out / "00001-upscale.png"]
    with Image.open(result.paths[0]) as saved:
        text = dict(saved.text)
        assert saved.size == (48, 32)
    assert text["parameters"] == RECIPE
    assert text["postprocessing"] == text["extras"] == "Postprocess upscale by: 2, Postprocess upscaler: 4x-Test"
    assert jupyter_sd.load_request(result.paths[0]).seed == 42  # the recipe still paints the original


def test_the_magic_upscales_a_variable_and_a_folder(esrgan, shell, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for seed in (1, 2):
        picture(24, 16, seed=seed).save(folder / f"{seed}.png")
    shell.user_ns["photo"] = picture(24, 16, seed=3)
    out = tmp_path / "out"
    one = run(shell, f"%paint upscale {{photo}} --upscaler 4x-Test --scale 2 -o {out}")
    assert one.paths == [out / "00001-upscale.png"] and one.paths[0].is_file()
    both = run(shell, f"%paint upscale {folder} --upscaler Lanczos --size 64x32 -o {out}")
    assert [path.name for path in both.paths] == ["00002-upscale.png", "00003-upscale.png"]
    assert both.sources == [str(folder / "1.png"), str(folder / "2.png")]
    assert all(Image.open(path).size == (64, 32) for path in both.paths)
    shell.user_ns["_"] = one  # the last output: a result, upscaled again from its file
    again = run(shell, f"%paint upscale _ --upscaler Lanczos --scale 2 -o {out}")
    assert again.sources == [str(one.paths[0])] and again.image.size == (96, 64)
    assert Image.open(again.paths[0]).text["extras"] == "Postprocess upscale by: 2, Postprocess upscaler: Lanczos"


@pytest.mark.parametrize(
    ("line", "starts"),
    [
        ("--upscaler Nope", "upscaler: no upscaler model 'Nope' in "),
        ("--upscaler Lanczos --scale 9", "scale: 9 is outside 0.05–8"),
        ("--upscaler Lanczos --upscaler-2 Nope", "upscaler_2: no upscaler model 'Nope' in "),
        ("--upscaler Lanczos --size 100x64", "size: 100x64: each side 8–8192 and a multiple of 8"),
        ("--upscaler Lanczos --scale 2 --size 64x64", "upscale: give --scale or --size, not both"),
        ("--upscaler Lanczos --scale two", "upscale: argument --scale: invalid float value: 'two'"),
        ("--upscaler Lanczos --visibility 0.4", "visibility: it is how much of --upscaler-2 shows"),
        ("--upscaler Lanczos --upscaler-2 Nearest --visibility 2", "visibility: 2 is outside 0–1"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(esrgan_models, shell, tmp_path, line, starts):
    source = tmp_path / "a.png"
    picture(24, 16).save(source)
    out = tmp_path / "out"
    with pytest.raises(UsageError) as error:
        run(shell, f"%paint upscale {source} {line} -o {out}")
    message = str(error.value)
    assert message.startswith(starts) and "\n" not in message and len(message) < 400
    assert not out.exists()


def test_nothing_named_is_one_line(shell):
    with pytest.raises(UsageError, match=r"^upscale: no such file, folder or variable 'nowhere.png'"):
        run(shell, "%paint upscale nowhere.png --upscaler Lanczos")


def test_help_and_a_missing_picture(shell, capsys):
    assert run(shell, "%paint upscale --help") is None
    assert "--upscaler-2 NAME" in capsys.readouterr().out
    with pytest.raises(UsageError, match=r"^upscale: name a picture: %paint upscale IMAGE"):
        run(shell, "%paint upscale")
