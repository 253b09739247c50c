#!/usr/bin/env bash
# The JupyterLab extension on a fresh machine: install what its tests need, build it, run Jest, the Python-side
# checks (fixtures parse the same in Python, the wheel ships the prebuilt extension) and the Playwright test in
# Debian's Chromium against a real JupyterLab.
#
# Env: SKIP_UI=1 skips the browser test; CHROMIUM=/path picks the browser; JSD_UI_MODEL=/folder paints with
# another diffusers model than the bundled tiny one.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1 HF_HUB_OFFLINE=1
mkdir -p artifacts/labextension

echo "== labextension: system Chromium (Playwright downloads nothing)"
if [ -z "${CHROMIUM:-}" ] && ! command -v chromium-headless-shell >/dev/null && ! command -v chromium >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium-headless-shell >/dev/null \
    || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

echo "== labextension: Python build tools (jlpm comes with JupyterLab) and jupyter_sd for the kernel"
python -m pip install -q "jupyterlab>=4.0,<5" "hatchling>=1.21" "hatch-jupyter-builder>=0.5" pillow pytest
python -c "import jupyter_sd, diffusers, ipykernel" 2>/dev/null || python -m pip install -q -e ".[test]"

echo "== labextension: node packages (from yarn.lock) and the production build"
cd labextension
jlpm install --immutable
jlpm build:prod
jlpm prettier:check

echo "== labextension: jest"
jlpm test --ci

echo "== labextension: Python side (fixtures, package metadata, the wheel)"
(cd .. && python -m pytest -q tests/browser/test_labextension.py)

if [ "${SKIP_UI:-0}" = "1" ]; then
  echo "== labextension: browser test skipped (SKIP_UI=1)"
  exit 0
fi
echo "== labextension: Playwright in Chromium against a real JupyterLab (screenshots in artifacts/labextension/)"
jlpm test:ui
