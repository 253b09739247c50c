"""The background imports that ``%load_ext`` starts (issue 15): on after the cell, off by config, waited for by
the first picture, never racing the user's own imports, and silent."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers.kernel_client import of_type, reply_status, running_kernel, stream_text

pytestmark = pytest.mark.slow

HEAVY = ("torch", "diffusers", "transformers")


def _value(messages: list[dict]) -> str:
    results = of_type(messages, "execute_result")
    assert results, messages
    return results[-1]["content"]["data"]["text/plain"]


def test_first_paint_in_the_next_cell_waits_for_the_background_imports(tmp_path):
    with running_kernel(tmp_path) as kernel:
        messages = kernel.execute("%load_ext jupyter_sd\nimport sys\n'torch' in sys.modules")
        assert _value(messages) == "False"  # the imports start only once the cell is done
        # the next cell, at once: the thread is still importing while %%paint starts, and %%paint waits for it
        messages = kernel.execute(
            "from jupyter_sd.engine import warmup\n"
            "was_running = warmup.running()\n"
            "r = %paint --steps 2 --size 16x16 --seed 1 --no-save a red circle on a blue background\n"
            "(was_running, warmup.running(), warmup.seconds is not None, len(r.images))"
        )
        assert reply_status(messages) == "ok", messages
        assert _value(messages) == "(True, False, True, 1)"
        # nothing the thread imported printed a warning or log line into any cell
        assert "warn" not in stream_text(messages).lower() and "transformers]" not in stream_text(messages)
        assert not [m for m in of_type(messages, "stream") if m["content"]["name"] == "stderr"]
        # the thread's modules are the ones in use: imported once
        messages = kernel.execute("import threading\n[t.name for t in threading.enumerate() if 'warm' in t.name]")
        assert _value(messages) == "[]"


def test_paint_in_the_same_cell_as_load_ext_and_the_switch(tmp_path):
    with running_kernel(tmp_path) as kernel:
        messages = kernel.execute("%load_ext jupyter_sd\n%paint --steps 2 --size 16x16 --no-save a red circle")
        assert reply_status(messages) == "ok", messages
        messages = kernel.execute("from jupyter_sd.engine import warmup\nwarmup.wait(60)\nwarmup.seconds is not None")
        assert _value(messages) == "True"  # started after that cell, found everything imported already
    with running_kernel(tmp_path) as kernel:
        messages = kernel.execute("%load_ext jupyter_sd\n%config PaintMagics.warm_imports = False")
        assert reply_status(messages) == "ok", messages
        messages = kernel.execute(
            "import sys, time\ntime.sleep(0.5)\nfrom jupyter_sd.engine import warmup\n"
            f"(warmup._thread, [m for m in {HEAVY!r} if m in sys.modules])"
        )
        assert _value(messages) == "(None, [])"


def test_user_imports_racing_the_thread_do_not_deadlock():
    """The user imports torch and diffusers themselves while the thread is importing them: both finish."""
    code = (
        "import sys\n"
        "from jupyter_sd.engine import warmup\n"
        "assert warmup.start() and not warmup.start()\n"
        "import torch\n"
        "from diffusers import StableDiffusionPipeline\n"
        "warmup.wait(120)\n"
        "print(warmup.running(), warmup.seconds is not None, sys.modules['torch'] is torch)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False True True"


def test_import_jupyter_sd_starts_nothing():
    code = (
        "import sys, threading, jupyter_sd\n"
        "from jupyter_sd.engine import warmup\n"
        f"print(warmup._thread, threading.active_count(), [m for m in {HEAVY!r} if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "None 1 []", done.stderr


def test_the_warm_up_loads_the_default_model_so_the_first_picture_does_not(tmp_path):
    """After the imports the thread loads the kernel's default model when it is on this disk (the bundled one here);
    the first picture then loads nothing, and its cell still says which model painted."""
    with running_kernel(tmp_path) as kernel:
        assert reply_status(kernel.execute("%load_ext jupyter_sd")) == "ok"
        messages = kernel.execute(
            "import time\nfrom jupyter_sd.engine import warmup\nfrom jupyter_sd.painting import session\n"
            "warmup.wait(120)\n"
            "engine = session.get_engine()\n"
            "(engine.load_count, engine.info()['loaded'])"
        )
        assert _value(messages) == "(1, True)"
        messages = kernel.execute(
            "r = %paint --steps 2 --seed 1 --no-save a red circle\n(engine.load_count, len(r.images))"
        )
        assert _value(messages) == "(1, 1)"  # the picture used the model the warm-up loaded
        said = stream_text(messages)
        assert "loaded tiny" in said and "using the bundled demo model" in said
    with running_kernel(tmp_path) as kernel:  # a model the user named elsewhere is not guessed at
        messages = kernel.execute("%load_ext jupyter_sd\n%config PaintMagics.warm_imports = False")
        messages = kernel.execute(
            "import time\ntime.sleep(1)\nfrom jupyter_sd.painting import session\nsession.get_engine().load_count"
        )
        assert _value(messages) == "0"
