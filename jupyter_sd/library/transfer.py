r"""Moving big files: a progress line (bytes, MB/s, ETA), the disk-space check, and a resumable-safe copy.

Downloads and the Drive → local-disk copy share these. In a kernel the progress is one display output updated in
place (plain text and an HTML ``<progress>`` bar, so it shows in Jupyter, VS Code and Colab alike); elsewhere it is
a ``\\r`` line on stderr. No torch, no widgets; IPython only when it is already running.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

CHUNK = 1 << 20
"""Bytes read and written at a time (1 MiB)."""
_REFRESH = 0.25
"""Seconds between two progress updates at least."""


def human_bytes(count: float) -> str:
    """``1536`` → ``'1.5 KB'``; decimal units, as disk sizes and download pages use."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(count) < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} GB"  # pragma: no cover - the loop always returns


def progress_line(label: str, done: int, total: int | None, elapsed: float, fresh: int | None = None) -> str:
    """One progress line: ``name  45.2 MB / 144.0 MB (31%) · 12.3 MB/s · ETA 0:08``.

    Parameters
    ----------
    fresh
        Bytes moved in this session (speed and ETA count only these, not the part kept from an earlier try).
    """
    fresh = done if fresh is None else fresh
    speed = fresh / elapsed if elapsed > 0 else 0.0
    parts = [f"{label}  {human_bytes(done)}"]
    if total:
        parts[0] += f" / {human_bytes(total)} ({100 * done / total:.0f}%)"
    parts.append(f"{speed / 1e6:.1f} MB/s")
    if total and speed > 0 and done < total:
        left = int((total - done) / speed)
        parts.append(
            f"ETA {left // 3600}:{left // 60 % 60:02d}:{left % 60:02d}"
            if left >= 3600
            else f"ETA {left // 60}:{left % 60:02d}"
        )
    return " · ".join(parts)


class ByteProgress:
    """A progress line for one transfer, updated in place at most four times a second.

    Only the thread that made it shows anything: output printed from another thread would land in whichever
    cell ran last (see DESIGN.md, Known traps).
    """

    def __init__(self, label: str, total: int | None, done: int = 0, quiet: bool = False) -> None:
        self.label, self.total, self.done, self.start = label, total, done, done
        self.started = time.perf_counter()
        self._last = 0.0
        self._handle: Any = None
        self._console = False
        self.quiet = quiet or threading.current_thread() is not threading.main_thread()

    def update(self, count: int) -> None:
        """Count `count` more bytes."""
        self.done += count
        now = time.perf_counter()
        if now - self._last >= _REFRESH:
            self._last = now
            self._show()

    def close(self) -> None:
        """Show the final state (and end the console line)."""
        self._show()
        if self._console:
            sys.stderr.write("\n")
            sys.stderr.flush()

    def line(self) -> str:
        """The current progress line."""
        elapsed = time.perf_counter() - self.started
        return progress_line(self.label, self.done, self.total, elapsed, self.done - self.start)

    def _show(self) -> None:
        if self.quiet:
            return
        line = self.line()
        shell = _kernel_shell()
        if shell is None:
            self._console = True
            sys.stderr.write("\r" + line)
            sys.stderr.flush()
            return
        from IPython.display import display

        value = f' value="{self.done}" max="{self.total}"' if self.total else ""
        bar = f"<progress{value} style='width:16em'></progress> <code>{_escape(line)}</code>"
        bundle = {"text/plain": line, "text/html": bar}
        if self._handle is None:
            self._handle = display(bundle, raw=True, display_id=True)
        else:
            self._handle.update(bundle, raw=True)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _kernel_shell() -> Any:
    """The running kernel's shell, or None outside a kernel (a terminal IPython prints to the console)."""
    if "IPython" not in sys.modules:
        return None
    from IPython import get_ipython

    shell = get_ipython()
    return shell if shell is not None and getattr(shell, "kernel", None) is not None else None


def existing_parent(path: Path) -> Path:
    """The nearest folder at or above `path` that exists (what ``disk_usage`` can be asked about)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_space(folder: Path, needed: int, what: str, option: str = "download") -> None:
    """Refuse a transfer that would not fit, before anything is written.

    Raises
    ------
    ValueError
        When `folder`'s disk has less than `needed` bytes free.
    """
    free = shutil.disk_usage(existing_parent(folder)).free
    if needed > free:
        msg = (
            f"{option}: not enough disk space for {what} in {folder} "
            f"(needs {human_bytes(needed)}, {human_bytes(free)} free)"
        )
        raise ValueError(msg)


def copy_file(source: Path, target: Path, label: str) -> Path:
    """Copy `source` to `target` with a progress line; `target` appears only once the copy is whole.

    The bytes go to ``target.part`` first and are renamed into place at the end, so an interrupted copy never
    leaves a truncated file under the real name.
    """
    size = source.stat().st_size
    check_space(target.parent, size, source.name, option="copy")
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    progress = ByteProgress(label, size)
    try:
        with open(source, "rb") as reader, open(part, "wb") as writer:
            while chunk := reader.read(CHUNK):
                writer.write(chunk)
                progress.update(len(chunk))
        shutil.copystat(source, part)
        os.replace(part, target)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    finally:
        progress.close()
    return target
