"""Drive a real IPython kernel over ZMQ and collect what it sends, as a notebook front end would see it.

The kernel's Python is ``JUPYTER_SD_TEST_PYTHON`` (default: this one), so the same tests run in the environment
pinned to Colab's versions.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from queue import Empty

from jupyter_client import KernelManager

KERNEL_PYTHON = os.environ.get("JUPYTER_SD_TEST_PYTHON", sys.executable)


class Kernel:
    def __init__(self, manager: KernelManager, client) -> None:
        self.manager, self.client = manager, client

    def execute(self, code: str, timeout: float = 120, on_message=None) -> list[dict]:
        """Run a cell; return its iopub messages up to the idle status. `on_message` may act mid-run."""
        msg_id = self.client.execute(code)
        messages: list[dict] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                message = self.client.get_iopub_msg(timeout=1)
            except Empty:
                continue
            if message["parent_header"].get("msg_id") != msg_id:
                continue
            messages.append(message)
            if on_message is not None:
                on_message(message, messages)
            if message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
                while True:
                    reply = self.client.get_shell_msg(timeout=30)
                    if reply["parent_header"].get("msg_id") == msg_id:
                        messages.append(reply)
                        return messages
        raise TimeoutError(f"cell did not finish in {timeout} s:\n{code}")

    def interrupt(self) -> None:
        self.manager.interrupt_kernel()


@contextmanager
def running_kernel(cwd: str, env: dict | None = None):
    manager = KernelManager(kernel_cmd=[KERNEL_PYTHON, "-m", "ipykernel_launcher", "-f", "{connection_file}"])
    manager.start_kernel(cwd=str(cwd), env={**os.environ, **(env or {})})
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=120)
        yield Kernel(manager, client)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def of_type(messages: list[dict], *types: str) -> list[dict]:
    return [m for m in messages if m["msg_type"] in types]


def stream_text(messages: list[dict]) -> str:
    return "".join(m["content"]["text"] for m in of_type(messages, "stream"))


def reply_status(messages: list[dict]) -> str:
    return of_type(messages, "execute_reply")[-1]["content"]["status"]
