"""A pretend widget front end for kernel tests: keeps every widget's state from the kernel's comm messages, and
sends what a browser would send (``update`` with new state, a Button's ``click``).

It speaks the widget message protocol that ipywidgets 7 (2.0) and 8 (2.1) share, so one test drives both.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import time
from pathlib import Path
from typing import Any, Callable

from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpecManager

WIDGET_TARGET = "jupyter.widget"


def kernel_python() -> str:
    """The kernel's Python: ``JUPYTER_SD_TEST_PYTHON`` (e.g. the Colab-versions venv), else this one."""
    return os.environ.get("JUPYTER_SD_TEST_PYTHON") or sys.executable


def _put(state: dict[str, Any], path: list, value: Any) -> None:
    target: Any = state
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value


class WidgetKernel:
    """A kernel started from `python`, with the widget states it has sent so far."""

    def __init__(self, python: str, workdir: Path, env: dict[str, str] | None = None) -> None:
        spec_dir = workdir / "kernels" / "jsd-test"
        spec_dir.mkdir(parents=True, exist_ok=True)
        argv = [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        (spec_dir / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "jsd", "language": "python"}))
        specs = KernelSpecManager(kernel_dirs=[str(spec_dir.parent)])
        self.km = KernelManager(kernel_name="jsd-test", kernel_spec_manager=specs)
        self.km.start_kernel(cwd=str(workdir), env={**os.environ, **(env or {})})
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=60)
        self.models: dict[str, dict[str, Any]] = {}
        self.closed: set[str] = set()
        self.updates: list[tuple[str, dict[str, Any]]] = []
        self.streams: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []
        self.outputs: dict[str, list[dict[str, Any]]] = {}

    def shutdown(self) -> None:
        """Stop the kernel."""
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)

    # -- receiving ----------------------------------------------------------------------------------------------

    def _handle(self, msg: dict[str, Any]) -> None:
        kind, content = msg["msg_type"], msg["content"]
        parent = msg.get("parent_header", {}).get("msg_id", "")
        if kind == "comm_open" and content.get("target_name") == WIDGET_TARGET:
            state = dict(content["data"]["state"])
            self._buffers(state, content["data"], msg)
            self.models[content["comm_id"]] = state
        elif kind == "comm_msg" and content["data"].get("method") in ("update", "echo_update"):
            state = dict(content["data"]["state"])
            self._buffers(state, content["data"], msg)
            self.models.setdefault(content["comm_id"], {}).update(state)
            self.updates.append((content["comm_id"], state))
        elif kind == "comm_close":
            self.closed.add(content["comm_id"])
        elif kind == "stream":
            self.streams.append({"parent": parent, "name": content["name"], "text": content["text"]})
        elif kind == "error":
            self.errors.append(content)
        if kind in ("stream", "display_data", "execute_result", "error"):
            self.outputs.setdefault(parent, []).append({"type": kind, **content})

    @staticmethod
    def _buffers(state: dict[str, Any], data: dict[str, Any], msg: dict[str, Any]) -> None:
        for path, buffer in zip(data.get("buffer_paths", []), msg.get("buffers", [])):
            _put(state, path, bytes(buffer))

    def pump(self, quiet: float = 0.05) -> None:
        """Read every message the kernel has sent, until it has been quiet for `quiet` seconds."""
        while True:
            try:
                msg = self.kc.get_iopub_msg(timeout=quiet)
            except queue.Empty:
                return
            self._handle(msg)

    def execute(self, code: str, timeout: float = 120) -> list[dict[str, Any]]:
        """Run a cell and return its outputs; raises AssertionError if it fails."""
        msg_id = self.kc.execute(code)
        deadline = time.monotonic() + timeout
        while True:
            msg = self.kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
            self._handle(msg)
            if (
                msg["msg_type"] == "status"
                and msg["content"]["execution_state"] == "idle"
                and msg["parent_header"].get("msg_id") == msg_id
            ):
                break
        reply = self.kc.get_shell_msg(timeout=max(1, deadline - time.monotonic()))
        outputs = self.outputs.get(msg_id, [])
        assert reply["content"]["status"] == "ok", f"{code!r} failed: {outputs}"
        return outputs

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 30, what: str | Callable[[], str] = "") -> Any:
        """Read messages until `predicate()` holds; AssertionError naming `what` on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.pump(0.02)
            value = predicate()
            if value:
                return value
        raise AssertionError(f"timed out waiting for {what() if callable(what) else what or predicate}")

    # -- looking at widgets -------------------------------------------------------------------------------------

    def displayed(self, outputs: list[dict[str, Any]]) -> str:
        """The model id of the widget a cell displayed."""
        for output in outputs:
            view = output.get("data", {}).get("application/vnd.jupyter.widget-view+json")
            if view:
                return view["model_id"]
        raise AssertionError(f"no widget displayed in {outputs}")

    def children(self, model_id: str) -> list[str]:
        """The ids of a container's children (a model named before its ``comm_open`` was read is waited for)."""
        if model_id not in self.models:
            self.wait_for(lambda: model_id in self.models, timeout=10, what=f"the widget model {model_id}")
        return [ref.replace("IPY_MODEL_", "") for ref in self.models[model_id].get("children", [])]

    def find(self, css: str, root: str) -> list[str]:
        """The widgets under `root` (inclusive) carrying CSS class `css`, in tree order."""
        found, stack = [], [root]
        while stack:
            model_id = stack.pop(0)
            state = self.models.get(model_id, {})
            if css in state.get("_dom_classes", []):
                found.append(model_id)
            stack[:0] = self.children(model_id)
        return found

    def one(self, css: str, root: str) -> str:
        """The one widget under `root` carrying `css`."""
        found = self.find(css, root)
        assert len(found) == 1, f"{len(found)} widgets with class {css}"
        return found[0]

    def state(self, model_id: str) -> dict[str, Any]:
        """A widget's state as the front end knows it."""
        return self.models[model_id]

    # -- sending (what a browser sends) ----------------------------------------------------------------------------

    def _send(self, model_id: str, data: dict[str, Any]) -> None:
        msg = self.kc.session.msg("comm_msg", {"comm_id": model_id, "data": data})
        self.kc.shell_channel.send(msg)

    def set(self, model_id: str, **state: Any) -> None:
        """Change widget values as a user would (the browser's ``update`` message)."""
        self.models[model_id].update(state)
        self._send(model_id, {"method": "update", "state": state, "buffer_paths": []})

    def click(self, model_id: str) -> None:
        """Click a Button."""
        self._send(model_id, {"method": "custom", "content": {"event": "click"}})

    def set_binary(self, model_id: str, state: dict[str, Any], buffers: dict[tuple, bytes]) -> None:
        """Change widget values that carry bytes (a file chosen in a FileUpload, a canvas's mask), sent as the
        browser sends them: the bytes as binary buffers, each at its path in the state."""
        data = {"method": "update", "state": state, "buffer_paths": [list(path) for path in buffers]}
        msg = self.kc.session.msg("comm_msg", {"comm_id": model_id, "data": data})
        msg["buffers"] = list(buffers.values())
        self.kc.shell_channel.send(msg)

    def custom(self, model_id: str, content: dict[str, Any]) -> None:
        """Send a widget's own message (what an anywidget front end sends with ``model.send``)."""
        self._send(model_id, {"method": "custom", "content": content})
