"""Outpainting: the init grows by the margins asked, the border is painted, the old picture survives outside the band.

The reference is diffusers' own inpaint pipeline run on a canvas and mask built here with numpy (edge rows and
columns stretched outwards; white over the border and a band of the old picture).
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers.ipython_shell import run
from helpers.paint_modes import generators, init_picture, raw_pipelines, tiny_request
from helpers.pixels import assert_pixels_close, pixels
from PIL import Image

import jupyter_sd
from jupyter_sd.engine import Engine
from jupyter_sd.engine.outpaint import grow, matched_noise
from jupyter_sd.engine.pictures import Pictures
from jupyter_sd.engine.schedulers import make_scheduler
from jupyter_sd.painting.store import read_parameters
from jupyter_sd.recipe.paste import request_from_infotext
from jupyter_sd.recipe.request import PaintRequest


@pytest.fixture(scope="module")
def engine():
    return Engine()


@pytest.fixture(scope="module")
def raw(tiny_model_dir):
    return raw_pipelines(tiny_model_dir)


def _canvas_and_mask(init: Image.Image, left: int, right: int, top: int, bottom: int, band: int):
    """The outpaint canvas and mask by the formula: edges stretched, white everywhere but the kept inner box."""
    array = np.asarray(init.convert("RGB"))
    canvas = np.pad(array, ((top, bottom), (left, right), (0, 0)), mode="edge")
    mask = np.full(canvas.shape[:2], 255, np.uint8)
    h, w = array.shape[:2]
    inner_top, inner_left = top + (band if top else 0), left + (band if left else 0)
    mask[inner_top : top + h - (band if bottom else 0), inner_left : left + w - (band if right else 0)] = 0
    return Image.fromarray(canvas), Image.fromarray(mask)


def test_outpaint_equals_diffusers_inpaint_of_the_grown_canvas(engine, raw, tiny_model_dir):
    init = init_picture(16)
    canvas, mask = _canvas_and_mask(init, 8, 0, 0, 8, band=4)
    raw["inpaint"].scheduler = make_scheduler("DPM++ 2M", "Automatic", raw["config"])
    painted = raw["inpaint"](
        "a red circle", image=canvas, mask_image=mask, strength=1.0, num_inference_steps=6, guidance_scale=7.0,
        height=24, width=24, generator=generators([5]),
    ).images[0]  # fmt: skip
    expected = Image.composite(painted, canvas, mask)
    request = tiny_request(tiny_model_dir, init="x", outpaint="8,0,0,8", outpaint_blend=4, strength=1.0, mask_blur=0)
    result = engine.generate(request, pictures=Pictures(init))
    assert result.images[0].size == (24, 24)  # grew 8 to the left and 8 at the bottom
    assert_pixels_close(result.images[0], expected)
    kept = np.asarray(mask) == 0
    assert np.array_equal(pixels(result.images[0])[kept], pixels(canvas)[kept])  # the old picture, exactly
    border = np.asarray(mask) == 255
    assert np.abs(pixels(result.images[0])[border] - pixels(canvas)[border]).mean() > 5  # painted, not the fill


def test_old_pixels_survive_outside_the_band_and_blur(engine, tiny_model_dir):
    init = init_picture(32)
    request = tiny_request(tiny_model_dir, init="x", outpaint="16", outpaint_blend=4, mask_blur=2, steps=3)
    image = engine.generate(request, pictures=Pictures(init)).images[0]
    assert image.size == (64, 64)
    reach = 4 + int(2.5 * 2 + 0.5)  # the band, then the blur's half width
    inner = pixels(image)[16 + reach : 48 - reach, 16 + reach : 48 - reach]
    assert np.abs(inner - pixels(init)[reach:-reach, reach:-reach]).max() <= 1


def test_bundled_model_keeps_a_blue_background_blue(tmp_path):
    prompt = "a red circle on a blue background"
    first = jupyter_sd.paint(prompt, model="tiny", seed=1, steps=8, save=False).images[0]
    grown = jupyter_sd.paint(
        prompt, model="tiny", seed=2, steps=8, init=first, outpaint="16", strength=1.0, masked_content="fill",
        save=False,
    ).images[0]  # fmt: skip
    border = np.concatenate([pixels(grown)[:16].reshape(-1, 3), pixels(grown)[-16:].reshape(-1, 3)])
    red, green, blue = border.mean(axis=0)
    assert blue > 120 and blue > red + 60 and blue > green + 60, (red, green, blue)


def test_matched_noise_has_the_pictures_colours_and_leaves_it_alone():
    rng = np.random.default_rng(1)
    picture = np.stack(
        [rng.integers(150, 250, (32, 32)), rng.integers(0, 60, (32, 32)), rng.integers(60, 90, (32, 32))], -1
    )
    canvas = np.pad(picture.astype(np.uint8), ((8, 8), (8, 8), (0, 0)), mode="edge")
    known = np.zeros(canvas.shape[:2], bool)
    known[8:40, 8:40] = True
    filled = matched_noise(canvas, known)
    assert np.array_equal(filled[known], canvas[known])
    new = filled[~known].astype(float)
    for channel, (low, high) in enumerate([(150, 249), (0, 59), (60, 89)]):
        assert low <= new[:, channel].min() and new[:, channel].max() <= high  # only the picture's own values
        quantiles = np.quantile(new[:, channel], [0.1, 0.5, 0.9])
        expected = np.quantile(picture[..., channel], [0.1, 0.5, 0.9])
        assert np.abs(quantiles - expected).max() <= 3, channel  # in the picture's proportions
    assert np.array_equal(filled, matched_noise(canvas, known))  # the same border every time
    assert np.abs(np.diff(new[:, 0])).mean() > 5  # noise, not a flat colour


def test_grow_with_noise_fills_only_the_border():
    init = init_picture(16)
    canvas, mask = grow(init, (4, 4, 4, 4), 2, noise=True)
    assert canvas.size == (24, 24) and mask.size == (24, 24)
    assert np.array_equal(pixels(canvas)[4:20, 4:20], pixels(init))
    assert (np.asarray(mask)[6:18, 6:18] == 0).all() and (np.asarray(mask)[:6] == 255).all()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"outpaint": "64"}, "outpaint: needs --init, the picture to grow (got --outpaint '64' without --init)"),
        ({"outpaint": "1,2", "init": "x.png"}, "outpaint: expected LEFT,RIGHT,TOP,BOTTOM pixels or one number"),
        ({"outpaint": "0", "init": "x.png"}, "outpaint: each side must be 0–2048 pixels and one above 0"),
        ({"outpaint": "8", "init": "x.png", "mask": "m.png"}, "outpaint: makes its own mask (the new border)"),
    ],
)
def test_bad_outpaint_is_one_line(options, message):
    with pytest.raises(ValueError) as info:
        PaintRequest(prompt="x", **options).check_together()
    assert str(info.value).startswith(message) and len(str(info.value)) < 200


def test_cell_saves_the_grown_picture_and_its_recipe_paints_again(shell, tmp_path):
    init = tmp_path / "init.png"
    init_picture(32).save(init)
    cell = f"%%paint --model tiny --init {init} --outpaint-all 8 --outpaint-noise --steps 2 --seed 4 -o {tmp_path}\nx"
    result = run(shell, cell)
    assert result.images[0].size == (48, 48)
    text = read_parameters(result.paths[0])
    assert 'Outpaint: "8,8,8,8", Outpaint blend: 16, Outpaint noise: True' in text
    again = request_from_infotext(text, init=str(init))
    assert (again.outpaint, again.outpaint_blend, again.outpaint_noise, again.mode) == ("8,8,8,8", 16, True, "inpaint")
