"""One IPython shell for the magic tests, and running a cell the way a test wants it (errors re-raised)."""

from __future__ import annotations

from typing import Any


def start_shell() -> Any:
    """The process's one test shell with the extension loaded (the second ``start_ipython`` returns None)."""
    from IPython.testing import globalipapp

    ip = globalipapp.start_ipython() or globalipapp.get_ipython()
    ip.run_line_magic("load_ext", "jupyter_sd")
    return ip


def run(shell: Any, cell: str) -> Any:
    """Run a cell and re-raise what it raised (like jupysql's TestingShell); return the cell's value."""
    result = shell.run_cell(cell)
    if result.error_before_exec:
        raise result.error_before_exec
    if result.error_in_exec:
        raise result.error_in_exec
    return result.result
