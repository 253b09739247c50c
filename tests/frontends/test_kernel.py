"""`%%paint` through a real kernel: the messages a notebook front end receives, and the files left on disk."""

import base64
import io
import time

import numpy as np
import pytest
from helpers.kernel_client import of_type, reply_status, running_kernel, stream_text
from PIL import Image

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("kernel")
    with running_kernel(cwd) as kernel:
        kernel.cwd = cwd
        yield kernel


def test_load_ext_does_not_import_torch(kernel):
    messages = kernel.execute("%load_ext jupyter_sd\nimport sys\nprint('torch' in sys.modules)")
    assert reply_status(messages) == "ok"
    assert stream_text(messages).strip() == "False"


def test_paint_cell_previews_saves_and_shows(kernel, tiny_model_dir):
    notebook = kernel.cwd / "fox.ipynb"
    kernel.execute(f"__session__ = {str(notebook)!r}")  # what Jupyter Server sets for a notebook's kernel
    cell = (
        f"%%paint --model {tiny_model_dir} --steps 6 --seed 42 -n 2 --sampler 'Euler a' --preview-interval 0\n"
        "a watercolor fox in a snowy forest, soft light\nNegative prompt: blurry, lowres"
    )
    messages = kernel.execute(cell)
    assert reply_status(messages) == "ok", messages
    updates = [m for m in of_type(messages, "update_display_data") if "image/png" in m["content"]["data"]]
    assert len(updates) >= 2  # live preview frames
    results = of_type(messages, "execute_result")
    assert len(results) == 1 and "image/png" in results[0]["content"]["data"]  # the final grid, kept in the .ipynb
    folder = kernel.cwd / "fox-paint"
    files = sorted(p.name for p in folder.glob("*.png"))
    assert files == ["00001-42.png", "00002-43.png"]
    text = Image.open(folder / "00002-43.png").text["parameters"]
    assert text.startswith("a watercolor fox in a snowy forest, soft light\nNegative prompt: blurry, lowres\n")
    assert "Steps: 6, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7, Seed: 43, Size: 16x16" in text
    grid = Image.open(io.BytesIO(base64.b64decode(results[0]["content"]["data"]["image/png"])))
    assert grid.size == (32, 16)
    # the shown grid holds the saved pictures
    saved = np.asarray(Image.open(folder / "00001-42.png").convert("RGB"))
    assert np.array_equal(np.asarray(grid.convert("RGB"))[:, :16], saved)


def test_second_cell_loads_nothing(kernel, tiny_model_dir):
    kernel.execute(f"%%paint --model {tiny_model_dir} --steps 2 --seed 1\nwarm up")
    before = kernel.execute("import jupyter_sd; print(jupyter_sd.get_engine().load_count)")
    messages = kernel.execute(f"%%paint --model {tiny_model_dir} --steps 2 --seed 2\na second picture")
    assert reply_status(messages) == "ok"
    after = kernel.execute("print(jupyter_sd.get_engine().load_count)")
    assert stream_text(before) == stream_text(after)
    assert "loading" not in stream_text(messages)


def test_pasted_generation_data_runs(kernel, tiny_model_dir):
    cell = (
        f"%%paint --model {tiny_model_dir} -o pasted\n"
        "a red circle on a blue background\n"
        "Steps: 3, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 5, Seed: 1234, Size: 64x64, Model: v1-5-pruned"
    )
    messages = kernel.execute(cell)
    assert reply_status(messages) == "ok"
    text = Image.open(kernel.cwd / "pasted" / "00001-1234.png").text["parameters"]
    assert "Steps: 3, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 5, Seed: 1234, Size: 64x64" in text


def test_bad_option_is_one_line_and_writes_nothing(kernel, tiny_model_dir):
    messages = kernel.execute(f"%%paint --model {tiny_model_dir} --steps 1001 -o bad\nx")
    reply = of_type(messages, "execute_reply")[-1]["content"]
    assert reply["status"] == "error" and reply["ename"] == "UsageError"
    # IPython shows a UsageError as one line on stderr, with no traceback
    shown = [m["content"]["text"] for m in of_type(messages, "stream") if m["content"]["name"] == "stderr"]
    assert "".join(shown).strip() == "UsageError: steps: must be 1–1000 (got 1001)"
    assert not of_type(messages, "error")
    assert not (kernel.cwd / "bad").exists()


def test_interrupt_keeps_the_picture_and_next_cell_works(kernel, tiny_model_dir):
    interrupted = {"sent": False}

    def interrupt_after_first_frame(message, messages):
        if interrupted["sent"]:
            return
        if message["msg_type"] == "update_display_data" and "image/png" in message["content"]["data"]:
            interrupted["sent"] = True
            time.sleep(0.2)
            kernel.interrupt()

    cell = (
        f"%%paint --model {tiny_model_dir} --steps 150 --seed 5 --size 256x256 --preview-interval 0 -o stopped\n"
        "a long picture"
    )
    messages = kernel.execute(cell, on_message=interrupt_after_first_frame)
    assert interrupted["sent"]
    assert reply_status(messages) == "ok"  # the magic returns the interrupted result instead of an error
    result = of_type(messages, "execute_result")[0]["content"]["data"]
    assert "interrupted at step" in result["text/plain"] and "image/png" in result
    assert not (kernel.cwd / "stopped").exists()  # nothing saved without --save-incomplete
    statuses = [m["content"]["data"].get("text/plain", "") for m in of_type(messages, "update_display_data")]
    assert any(s.startswith("interrupted at step") for s in statuses)
    again = kernel.execute(f"%%paint --model {tiny_model_dir} --steps 2 --seed 6 -o after\nnext")
    assert reply_status(again) == "ok" and (kernel.cwd / "after" / "00001-6.png").exists()
