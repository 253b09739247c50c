"""The init and mask inputs of img2img and inpainting, as ``%%paint`` resolves them (painting/inputs.py, the store).

Files, URLs, ``_`` and ``{name}`` (pictures, arrays), an init's alpha as the mask, a mask of another size, the init
recorded for ``load_request``, and the one-line refusal of every bad input, with nothing written.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from helpers.ipython_shell import run
from helpers.paint_modes import box_mask, init_picture
from helpers.pixels import pixels
from helpers.progress_recorder import Recorder
from PIL import Image


@pytest.fixture(scope="module")
def http_server(tmp_path_factory):
    """A local HTTP server on 127.0.0.1 serving a folder (404 for anything else)."""
    import functools
    import http.server

    folder = tmp_path_factory.mktemp("served")
    init_picture().save(folder / "init.png")
    (folder / "notes.txt").write_text("not a picture")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_init_from_a_file_and_load_request_reruns_it(shell, tiny_model_dir, tmp_path):
    from jupyter_sd import load_request, paint

    init_picture().save(tmp_path / "start.png")
    options = f"--steps 4 --seed 3 --init {tmp_path / 'start.png'} --strength 0.5 -o {tmp_path / 'out'}"
    cell = f"%%paint --model {tiny_model_dir} {options}\na cat"
    result = run(shell, cell)
    request = load_request(result.paths[0])
    assert request.init == str((tmp_path / "start.png").resolve()) and request.strength == 0.5
    again = paint(**{**request.to_dict(), "save": False}, view=Recorder())
    assert np.array_equal(pixels(again.images[0]), pixels(result.images[0]))
    init_picture(16).transpose(Image.FLIP_LEFT_RIGHT).save(tmp_path / "start.png")
    with pytest.raises(ValueError, match=r"load_request: the init picture .*start.png changed since it was painted"):
        load_request(result.paths[0])


def test_init_from_underscore_variables_and_urls(shell, tiny_model_dir, tmp_path, http_server):
    from jupyter_sd import load_request

    out = tmp_path / "out"
    common = f"--model {tiny_model_dir} --steps 4 --seed 3 -o {out} --strength 0.5"
    first = run(shell, f"%%paint {common} --init {http_server}/init.png\na cat")
    assert first.images[0].size == (16, 16)
    shell.user_ns["_"] = first  # what IPython keeps of the cell's value
    from_last = run(shell, f"%%paint {common} --init _\na cat")
    shell.user_ns["picture"] = first.images[0]
    from_image = run(shell, f"%%paint {common} --init {{picture}}\na cat")
    shell.user_ns["array"] = np.asarray(first.images[0])
    from_array = run(shell, f"%%paint {common} --init {{array}}\na cat")
    shell.user_ns["float_array"] = np.asarray(first.images[0]) / 255.0
    from_floats = run(shell, f"%%paint {common} --init {{float_array}}\na cat")
    for result in (from_image, from_array, from_floats):
        assert np.array_equal(pixels(result.images[0]), pixels(from_last.images[0]))
    assert load_request(from_last.paths[0]).init == str(first.paths[0].resolve())  # _ is a saved picture
    assert from_last.request.init == str(first.paths[0].resolve())  # so "again" repaints from the same picture
    copy = Path(load_request(from_array.paths[0]).init)  # an array is saved beside the pictures once
    assert copy.parent == out and copy.name.startswith("init-")
    assert np.array_equal(pixels(Image.open(copy)), pixels(first.images[0]))


def test_mask_alpha_and_a_mask_of_another_size(shell, tiny_model_dir, tmp_path, capsys):
    rgba = init_picture().convert("RGBA")
    alpha = Image.new("L", (16, 16), 255)
    alpha.paste(0, (4, 4, 12, 12))
    rgba.putalpha(alpha)
    shell.user_ns["rgba"] = rgba
    result = run(
        shell,
        f"%%paint --model {tiny_model_dir} --steps 3 --init {{rgba}} --mask alpha --mask-blur 0 -o {tmp_path}\na cat",
    )
    outside = np.asarray(alpha) == 255
    assert np.array_equal(pixels(result.images[0])[outside], pixels(init_picture())[outside])
    shell.user_ns["start"] = init_picture()
    shell.user_ns["big_mask"] = box_mask(32, (8, 8, 24, 24))
    run(shell, f"%%paint --model {tiny_model_dir} --steps 3 --init {{start}} --mask {{big_mask}} -o {tmp_path}\na cat")
    assert "mask: 32x32 resized to the init's 16x16" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("--init {missing}", "init: no such file '{missing}'"),
        ("--init {unreadable}", "init: could not read '{unreadable}' as a picture"),
        ("--mask {picture}", "mask: needs --init, the picture to repaint"),
        ("--init {picture} --strength 1.5", "strength: must be 0–1 (got 1.5)"),
        ("--init {picture} --denoise -0.1", "strength: must be 0–1 (got -0.1)"),
        ("--hires-size 8192x512", "hires_size: width and height must be 8–4096 (got 8192x512)"),
        ("--size 512x512 --hires 8.5", "hires: must be 0–8 (got 8.5)"),
        ("--size 2048x2048 --hires 2.5", "hires: the hires size must be at most 4096 a side (got 5120x5120)"),
        ("--hires 2 --hires-denoise 0", "hires_denoise: must be above 0 for a hires pass"),
        ("--init {picture} --hires 2", "hires: the hires fix is for text-to-image"),
        ("--init {url}/missing.png", "init: could not download '{url}/missing.png' (HTTP Error 404"),
        ("--init {url}/notes.txt", "init: could not read '{url}/notes.txt' as a picture"),
        ("--init http://127.0.0.1:9/x.png", "init: could not download 'http://127.0.0.1:9/x.png' ("),
        ("--init _", "init: _ is the last result, but nothing has been painted"),
        ("--init {{nothing_here}}", "init: {{nothing_here}} is not a notebook variable"),
        ("--init {{words}}", "init: no such file 'a string'"),
        ("--init {{number}}", "init: {{number}} holds a int, not a picture"),
        ("--init {picture} --mask {blank}", "mask: no part of it is white"),
        ("--variation-strength 2", "variation_strength: must be 0–1 (got 2)"),
        ("--seed-resize-from 12x12", "seed_resize_from: width and height must be multiples of 8 (got 12x12)"),
        ("--hires-upscaler 4x-UltraSharp --hires 2", "hires_upscaler: no upscaler model '4x-UltraSharp' in"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(shell, tiny_model_dir, tmp_path, http_server, options, message):
    from jupyter_sd.painting import session as painter

    init_picture().save(tmp_path / "picture.png")
    Image.new("L", (16, 16), 0).save(tmp_path / "blank.png")
    (tmp_path / "unreadable.png").write_bytes(b"\x89PNG but not really")
    values = {
        "missing": str(tmp_path / "missing.png"),
        "unreadable": str(tmp_path / "unreadable.png"),
        "picture": str(tmp_path / "picture.png"),
        "blank": str(tmp_path / "blank.png"),
        "url": http_server,
    }
    shell.user_ns["words"], shell.user_ns["number"] = "a string", 7
    shell.user_ns.pop("_", None)
    last, painter.get_engine().last_result = painter.get_engine().last_result, None
    try:
        with pytest.raises(Exception) as info:
            run(
                shell, f"%%paint --model {tiny_model_dir} --steps 4 {options.format(**values)} -o {tmp_path / 'out'}\nx"
            )
    finally:
        painter.get_engine().last_result = last
    from IPython.core.error import UsageError

    assert type(info.value) is UsageError, info.value
    assert message.format(**values) in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()
