"""The example notebooks run top to bottom (the quick start on the bundled model, on a CPU)."""

import json
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from jupyter_sd.engine.models import BUNDLED_MODEL

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_quickstart_runs_top_to_bottom(tmp_path):
    assert (BUNDLED_MODEL / "model_index.json").is_file()
    notebook_file = tmp_path / "quickstart.ipynb"
    shutil.copy(ROOT / "examples" / "quickstart.ipynb", notebook_file)
    notebook = nbformat.read(notebook_file, as_version=4)
    client = NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    # what Jupyter Server tells a notebook's kernel, so pictures go beside the notebook
    notebook.cells.insert(0, nbformat.v4.new_code_cell(f"__session__ = {str(notebook_file)!r}"))
    client.execute()
    outputs = [output for cell in notebook.cells for output in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    texts = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "using the bundled demo model" in texts
    assert "True" in texts.split("\n")  # painting a PNG's recipe again gives the same pixels
    saved = sorted(p.name for p in (tmp_path / "quickstart-paint").glob("*.png"))
    assert saved == ["00001-1.png", "00002-7.png", "00003-8.png", "00004-1234.png"]
    images = [o for o in outputs if o.get("output_type") == "execute_result" and "image/png" in o.get("data", {})]
    assert len(images) >= 3  # the finished pictures stay in the saved notebook


def test_colab_notebook_is_valid_and_installs_the_package():
    notebook = nbformat.read(ROOT / "examples" / "colab.ipynb", as_version=4)
    nbformat.validate(notebook)
    source = "\n".join(cell.source for cell in notebook.cells)
    assert "pip install" in source and "%paint drive" in source and "%load_ext jupyter_sd" in source
    assert json.loads((ROOT / "examples" / "colab.ipynb").read_text())["metadata"]["accelerator"] == "GPU"
