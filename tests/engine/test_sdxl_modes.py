"""SDXL in img2img, inpaint and the hires fix: the modes test_sdxl.py's model paints in besides txt2img."""

from __future__ import annotations

import numpy as np
from helpers.paint_modes import box_mask, init_picture
from helpers.pixels import pixels

from jupyter_sd.engine import Engine
from jupyter_sd.engine.pictures import Pictures
from jupyter_sd.recipe.request import PaintRequest


def test_sdxl_paints_in_every_mode(tmp_path):
    """An SDXL model: from_pipe gives its img2img and inpaint pipelines; each mode paints at the asked size."""
    from helpers.tiny_sdxl import make_tiny_sdxl

    own = Engine()
    model = make_tiny_sdxl(tmp_path / "sdxl")
    base = PaintRequest(prompt="a red circle", model=str(model), steps=2, seed=1, preview="none", save=False)
    init, mask = init_picture(), box_mask(16, (4, 4, 12, 12))
    assert own.generate(base.replace(init="x", strength=0.5), pictures=Pictures(init)).images[0].size == (16, 16)
    inpainted = own.generate(base.replace(init="x", mask="m", mask_blur=0), pictures=Pictures(init, mask)).images[0]
    outside = np.asarray(mask) == 0
    assert np.array_equal(pixels(inpainted)[outside], pixels(init)[outside])
    assert own.generate(base.replace(width=16, height=16, hires=2)).images[0].size == (32, 32)
    assert own.load_count == 1
