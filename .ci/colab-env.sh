#!/usr/bin/env bash
# A second environment pinned to Google Colab's notebook stack (ipywidgets 7.7.1, ipykernel 6.17.1, IPython 7.34.0),
# layered over the main environment's packages (torch, diffusers, ...) so it builds in seconds.
# Usage: bash .ci/colab-env.sh [VENV]   (default /tmp/colab-venv); prints the venv's python path last.
set -euo pipefail
venv=${1:-/tmp/colab-venv}
if [ ! -x "$venv/bin/python" ]; then
  python -m venv --system-site-packages "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check \
  "ipywidgets==7.7.1" "ipykernel==6.17.1" "ipython==7.34.0" "jupyter_client<8" "traitlets<5.10" \
  "widgetsnbextension<4" "jupyterlab_widgets<2" >&2
"$venv/bin/python" - >&2 <<'PY'
import IPython, ipykernel, ipywidgets, jupyter_sd
print("colab-pinned env:", "IPython", IPython.__version__, "ipykernel", ipykernel.__version__, "ipywidgets", ipywidgets.__version__)
PY
echo "$venv/bin/python"
