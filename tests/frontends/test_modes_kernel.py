"""img2img, inpaint and the hires fix from a running kernel and a notebook: a kernel interrupt during each pass, and
the img2img example notebook run top to bottom."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.paint_modes import box_mask, init_picture
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]


# -- a kernel interrupt during each pass --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    from helpers.kernel_client import running_kernel

    cwd = tmp_path_factory.mktemp("modes-kernel")
    init_picture(64).save(cwd / "init.png")
    box_mask(64, (16, 16, 48, 48)).save(cwd / "mask.png")
    with running_kernel(cwd) as kernel:
        kernel.cwd = cwd
        kernel.execute("%load_ext jupyter_sd\nimport jupyter_sd")
        yield kernel


@pytest.mark.slow
@pytest.mark.parametrize(
    ("options", "wait_for", "size"),
    [
        ("--steps 150 --size 256x256 --hires 2", "txt2img 1/2 · step", 256),
        ("--steps 2 --size 128x128 --hires 2 --hires-steps 150 --hires-denoise 0.9", "hires 2/2 · step", 256),
        ("--steps 150 --size 256x256 --init init.png --strength 1", "step", 256),
        ("--steps 150 --size 256x256 --init init.png --mask mask.png --strength 1", "step", 256),
    ],
    ids=["txt2img-of-hires", "hires", "img2img", "inpaint"],
)
def test_kernel_interrupt_in_each_pass(kernel, tiny_model_dir, options, wait_for, size):
    import base64
    import io
    import time

    from helpers.kernel_client import of_type, reply_status, stream_text

    kernel.execute(f"%%paint --model {tiny_model_dir} --steps 1 --no-save\nwarm up")
    before = stream_text(kernel.execute("print(jupyter_sd.get_engine().load_count)"))
    sent = {"done": False}

    def interrupt_in_the_pass(message, messages):
        if sent["done"] or message["msg_type"] != "update_display_data":
            return
        if wait_for in message["content"]["data"].get("text/plain", ""):
            sent["done"] = True
            time.sleep(0.2)
            kernel.interrupt()

    out = f"stopped-{abs(hash(options))}"
    cell = f"%%paint --model {tiny_model_dir} {options} --seed 5 --preview-interval 0 -o {out}\na long picture"
    messages = kernel.execute(cell, on_message=interrupt_in_the_pass)
    assert sent["done"] and reply_status(messages) == "ok"
    data = of_type(messages, "execute_result")[0]["content"]["data"]
    assert "interrupted at step" in data["text/plain"]
    picture = Image.open(io.BytesIO(base64.b64decode(data["image/png"])))
    assert picture.size == (size, size)  # the last x0 of the pass that was running
    assert not (kernel.cwd / out).exists()  # nothing saved without --save-incomplete
    again = kernel.execute(f"%%paint --model {tiny_model_dir} --steps 2 --seed 6 -o after\nnext")
    assert reply_status(again) == "ok" and "loading" not in stream_text(again)
    assert stream_text(kernel.execute("print(jupyter_sd.get_engine().load_count)")) == before


@pytest.mark.slow
def test_example_notebook_runs_top_to_bottom(tmp_path):
    import shutil

    import nbformat
    from nbclient import NotebookClient

    notebook_file = tmp_path / "img2img.ipynb"
    shutil.copy(ROOT / "examples" / "img2img.ipynb", notebook_file)
    notebook = nbformat.read(notebook_file, as_version=4)
    notebook.cells.insert(0, nbformat.v4.new_code_cell(f"__session__ = {str(notebook_file)!r}"))
    NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [output for cell in notebook.cells for output in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    printed = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "(128, 128) True" in printed
    assert "(64, 64, 3) 255" in printed  # the ControlNet cell's canny map of the red circle: edges found
    assert "(128, 128, 3) True" in printed  # the pose JSON cell: the extension's JSON drawn as a map
    # txt2img, img2img, inpaint, outpaint, hires, the Extras-tab upscale, SD upscale
    assert len(list((tmp_path / "img2img-paint").glob("0000*.png"))) == 7
