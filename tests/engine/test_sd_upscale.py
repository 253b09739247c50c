"""Tiled SD upscale (Ultimate SD upscale) on the tiny model: sizes, every tile painted, the seams fix, the keys.

The reference for "painted" is the enlarged picture before any tile ran (Lanczos, computed here with PIL): every
tile must differ from it. The cost is counted in painted pixels and timed against one whole-picture img2img.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from helpers.progress_recorder import Recorder
from helpers.upscaler_weights import picture, rrdbnet_weights
from PIL import Image
from safetensors.torch import save_file

from jupyter_sd import library
from jupyter_sd.engine import Engine
from jupyter_sd.engine.pictures import Pictures
from jupyter_sd.engine.sd_upscale import paint_size, target_size, tile_boxes
from jupyter_sd.recipe.request import PaintRequest


@pytest.fixture(scope="module")
def engine():
    return Engine()


def _request(tiny_model_dir, **options) -> PaintRequest:
    base = dict(prompt="a red circle", model=str(tiny_model_dir), steps=4, seed=7, preview="none", save=False)
    base.update(init="<object>", strength=0.6, sd_upscale=2, tile_width=32, tile_height=32, tile_padding=8)
    return PaintRequest(**{**base, **options})


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float64)


def _enlarged(init: Image.Image) -> np.ndarray:
    """The picture before any tile: Lanczos ×2 (A1111's Lanczos upscaler), then to the 64-rounded size (16 → 64)."""
    return _pixels(init.resize((32, 32), Image.LANCZOS).resize((64, 64), Image.LANCZOS))


def test_the_extensions_arithmetic():
    assert target_size(1024, 768, 4) == (4096, 3072)
    assert target_size(16, 24, 2) == (64, 64)  # rounded up to 64, as the extension does
    assert paint_size(512, 512, 32) == (576, 576)
    assert len(tile_boxes(4096, 3072, 512, 512)) == 8 * 6
    assert tile_boxes(64, 64, 48, 48) == [(0, 0, 48, 48), (48, 0, 96, 48), (0, 48, 48, 96), (48, 48, 96, 96)]
    chess = [(x // 10, y // 10) for x, y, *_ in tile_boxes(30, 20, 10, 10, "Chess")]
    assert chess == [(0, 0), (2, 0), (1, 1), (1, 0), (0, 1), (2, 1)]  # the even squares first, then the odd
    assert tile_boxes(30, 20, 10, 10, "None") == []


def test_every_tile_is_painted_and_the_size_is_the_extensions(engine, tiny_model_dir):
    init = picture(16, 16, seed=1)
    recorder = Recorder()
    result = engine.generate(_request(tiny_model_dir), recorder, pictures=Pictures(init=init))
    assert result.images[0].size == (64, 64)
    enlarged = _enlarged(init)
    painted = _pixels(result.images[0])
    for x1, y1, x2, y2 in tile_boxes(64, 64, 32, 32):
        assert np.abs(painted[y1:y2, x1:x2] - enlarged[y1:y2, x1:x2]).mean() > 2, (x1, y1)  # no untouched tile
    assert [label for label, *_ in recorder.phases] == ["tile 1/4", "tile 2/4", "tile 3/4", "tile 4/4"]
    text = result.infotext(0)
    assert "Size: 64x64" in text and "Denoising strength: 0.6" in text and "Seed: 7" in text
    assert (
        "Ultimate SD upscale upscaler: Lanczos, Ultimate SD upscale tile_width: 32, "
        "Ultimate SD upscale tile_height: 32, Ultimate SD upscale mask_blur: 8, Ultimate SD upscale padding: 8"
    ) in text
    again = engine.generate(_request(tiny_model_dir), pictures=Pictures(init=init))
    assert np.array_equal(_pixels(again.images[0]), painted)  # the recipe repaints the same picture


def test_no_redraw_runs_only_the_seams_fix(engine, tiny_model_dir):
    init = picture(16, 16, seed=6)
    recorder = Recorder()
    options = dict(tile_redraw="None", seams_fix="Band pass", seams_fix_width=16)
    result = engine.generate(_request(tiny_model_dir, **options), recorder, pictures=Pictures(init=init))
    assert len(recorder.phases) == 2  # the two bands, no tile
    difference = np.abs(_pixels(result.images[0]) - _enlarged(init))
    assert difference[:, 24:40].mean() > 1 and difference[:20, :20].max() == 0  # bands painted, corners kept


def test_a_stop_keeps_the_tiles_painted_so_far(engine, tiny_model_dir):
    import threading

    init = picture(16, 16, seed=5)
    event = threading.Event()
    recorder = Recorder(stop_at=4, event=event, total=True)  # the second tile's second step (2 steps a tile)
    result = engine.generate(_request(tiny_model_dir), recorder, event, pictures=Pictures(init=init))
    assert result.stopped_by == "stop" and len(recorder.phases) == 2  # no tile after the stop
    assert result.images[0].size == (64, 64) and result.complete == 0
    enlarged = _enlarged(init)
    painted = _pixels(result.images[0])
    assert np.abs(painted[:32, :32] - enlarged[:32, :32]).mean() > 2  # the first tile was painted
    assert np.abs(painted[54:, 54:] - enlarged[54:, 54:]).max() == 0  # the last one never ran (blur reach: 20)


@pytest.mark.parametrize(("mode", "seams"), [("Band pass", 2), ("Half tile offset pass", 4)])
def test_the_seams_fix_repaints_across_the_borders(engine, tiny_model_dir, mode, seams):
    init = picture(16, 16, seed=2)
    plain = engine.generate(_request(tiny_model_dir), pictures=Pictures(init=init))
    recorder = Recorder()
    fixed = engine.generate(
        _request(tiny_model_dir, seams_fix=mode, seams_fix_width=16), recorder, pictures=Pictures(init=init)
    )
    assert len(recorder.phases) == 4 + seams  # the extension's job count: rows + cols − 2, or the offset tiles
    border = np.abs(_pixels(fixed.images[0])[:, 24:40] - _pixels(plain.images[0])[:, 24:40]).mean()
    assert border > 1  # the band over the vertical border between the tiles was repainted


def test_after_a_painted_picture_and_with_an_upscaler_model(engine, tiny_model_dir, tmp_path):
    root = tmp_path / "models"
    (root / "ESRGAN").mkdir(parents=True)
    before = library.models_dir()
    library.set_models_dir(root)
    try:
        save_file(rrdbnet_weights(identity=True), str(root / "ESRGAN" / "4x-Test.safetensors"))
        request = _request(tiny_model_dir, init="", width=16, height=16, n=2, sd_upscaler="4x-Test")
        recorder = Recorder()
        result = engine.generate(request, recorder)
    finally:
        library.set_models_dir(before)
    assert [image.size for image in result.images] == [(64, 64), (64, 64)]
    assert result.seeds == [7, 8] and result.request.width == 16  # the recipe paints the small picture first
    assert "loading upscaler 4x-Test…" in recorder.notices
    assert "Ultimate SD upscale upscaler: 4x-Test" in result.infotext(1) and "Seed: 8" in result.infotext(1)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"hires": 2, "init": ""}, "sd_upscale: repaints a whole picture in tiles; it does not combine with --hires"),
        ({"mask": "m.png"}, "sd_upscale: repaints a whole picture in tiles; it does not combine with --hires or --m"),
        ({"n": 2}, "sd_upscale: upscales the one init picture (got -n 2); use -n 1"),
        ({"sd_upscale": 0.5}, "sd_upscale: enlarges by 1–16 (got 0.5); 0 turns it off"),
        ({"sd_upscaler": "Nope"}, "sd_upscaler: no upscaler model 'Nope' in "),
        ({"seams_fix": "Chess"}, "seams_fix: "),
    ],
)
def test_refusals_are_one_line(tiny_model_dir, options, message):
    with pytest.raises(ValueError) as error:
        _request(tiny_model_dir, **options).validate()
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_cost_against_one_whole_picture_img2img(engine, tiny_model_dir, capsys):
    """Reported, not a limit: tiles paint more pixels than the whole picture once, but only one tile at a time."""
    init = picture(32, 32, seed=3)
    request = _request(tiny_model_dir, sd_upscale=2, tile_width=32, tile_height=32, tile_padding=0)
    start = time.perf_counter()
    tiled = engine.generate(request, pictures=Pictures(init=init))
    tiled_time = time.perf_counter() - start
    whole = request.replace(sd_upscale=0.0, width=64, height=64)
    start = time.perf_counter()
    engine.generate(whole, pictures=Pictures(init=init.resize((64, 64), Image.LANCZOS)))
    whole_time = time.perf_counter() - start
    tiles = len(tile_boxes(64, 64, 32, 32))
    pixel_ratio = tiles * 64 * 64 / (64 * 64)  # each 32² tile is painted at 64² (tile + padding, up to 64)
    assert tiled.images[0].size == (64, 64) and pixel_ratio == 4
    with capsys.disabled():
        print(f"\nSD upscale cost: {tiles} tiles, painted pixels ×{pixel_ratio:g}, time ×{tiled_time / whole_time:.1f}")


def test_a_cell_saves_only_the_upscaled_pictures(shell, tiny_model_dir, tmp_path):
    from helpers.ipython_shell import run

    shell.user_ns["photo"] = picture(16, 16, seed=4)
    tiles = "--sd-upscale 2 --tile-width 32 --tile-height 32 --tile-padding 8 --seams-fix 'Band pass'"
    line = f"%%paint --model {tiny_model_dir} --steps 3 --seed 5 --preview none --outdir {tmp_path} {tiles}"
    on_init = run(shell, f"{line} --init {{photo}} --strength 0.5\na red circle")
    after = run(shell, f"{line} --size 16x16\na red circle")
    saved = sorted(path.name for path in tmp_path.glob("0*.png"))
    assert saved == ["00001-5.png", "00002-5.png"]  # no small first picture among them
    assert on_init.paths[0].name == "00001-5.png" and after.paths[0].name == "00002-5.png"
    for path in (on_init.paths[0], after.paths[0]):
        with Image.open(path) as image:
            assert image.size == (64, 64)
            assert "Ultimate SD upscale tile_width: 32" in image.text["parameters"]


def test_a_pasted_ultimate_sd_upscale_recipe_keeps_its_settings_and_says_so(tmp_path):
    from jupyter_sd.recipe.paste import read_pasted

    before = library.models_dir()
    library.set_models_dir(tmp_path)  # an empty models folder: the recipe's upscaler is not there
    try:
        pasted = read_pasted(
            "a fox\nSteps: 26, Sampler: Euler a, CFG scale: 8, Seed: 3, Size: 1536x1536, Denoising strength: 0.42, "
            "Ultimate SD upscale upscaler: 4x_NMKD-Siax_200k, Ultimate SD upscale tile_width: 960, "
            "Ultimate SD upscale tile_height: 768, Ultimate SD upscale mask_blur: 12, Ultimate SD upscale padding: 48"
        )
    finally:
        library.set_models_dir(before)
    assert {key: pasted.options[key] for key in ("tile_width", "tile_height", "tile_mask_blur", "tile_padding")} == {
        "tile_width": "960",
        "tile_height": "768",
        "tile_mask_blur": "12",
        "tile_padding": "48",
    }
    assert pasted.notes[0].startswith("Denoising strength 0.42: this recipe was made by Ultimate SD upscale in img2img")
    assert pasted.notes[1] == (
        "Ultimate SD upscale upscaler: '4x_NMKD-Siax_200k' is not in the models folder's ESRGAN/ (%paint download URL "
        "--kind upscaler gets it); --sd-upscale would use Lanczos"
    )
