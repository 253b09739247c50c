"""Start a throwaway JupyterLab for the browser tests, with this checkout's extension.

Usage: python ui-tests/start_lab.py PORT ROOT

ROOT is emptied and used as the server root. Settings, workspaces and the lab
extension path live in a temporary folder, so the user's own JupyterLab setup
neither leaks in nor changes. The built extension (jupyter_sd/labextension, from
`jlpm build`) is linked in through `extra_labextensions_path`; kernels import
jupyter_sd from this checkout.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILT = REPO / "jupyter_sd" / "labextension"


def main() -> None:
    """Empty ROOT, then replace this process with the JupyterLab server."""
    port, root = sys.argv[1], Path(sys.argv[2])
    if not (BUILT / "package.json").exists():
        sys.exit(f"start_lab: {BUILT} is missing; run 'jlpm build' in labextension/ first")
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    state = Path(tempfile.mkdtemp(prefix="jupyter-sd-lab-"))
    extensions = state / "labextensions"
    extensions.mkdir()
    (extensions / "jupyter-sd").symlink_to(BUILT, target_is_directory=True)
    # No news or update toasts over the page.
    notification = state / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notification.parent.mkdir(parents=True)
    notification.write_text('{"fetchNews": "false", "checkForUpdates": false}')
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "JUPYTER_CONFIG_DIR": str(state / "config"),
        "JUPYTER_RUNTIME_DIR": str(state / "runtime"),
    }
    argv = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--allow-root",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        "--ServerApp.ip=127.0.0.1",
        "--IdentityProvider.token=",
        "--ServerApp.password=",
        "--ServerApp.disable_check_xsrf=True",
        f"--ServerApp.root_dir={root}",
        f"--LabApp.user_settings_dir={state / 'settings'}",
        f"--LabApp.workspaces_dir={state / 'workspaces'}",
        f"--LabServerApp.extra_labextensions_path={extensions}",
    ]
    os.chdir(root)
    os.execvpe(argv[0], argv, env)


if __name__ == "__main__":
    main()
