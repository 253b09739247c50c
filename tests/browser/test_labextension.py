"""The JupyterLab extension seen from Python: its package metadata, its fixtures, and the wheel that ships it.

The front end itself is tested with Jest (``labextension/test``) and Playwright (``labextension/ui-tests``); run
them with ``.ci/labextension.sh``.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from PIL import Image

import jupyter_sd
from jupyter_sd.painting import store
from jupyter_sd.recipe.infotext import parse_infotext

ROOT = Path(__file__).resolve().parents[2]
LABEXT = ROOT / "labextension"
FIXTURES = LABEXT / "test" / "fixtures"
BUILT = ROOT / "jupyter_sd" / "labextension"


def _package_json() -> dict:
    return json.loads((LABEXT / "package.json").read_text(encoding="utf-8"))


def _expected() -> dict:
    return json.loads((FIXTURES / "expected.json").read_text(encoding="utf-8"))


def test_npm_package_matches_python_package():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    package = _package_json()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert package["version"] == jupyter_sd.__version__ == pyproject["project"]["version"]
    shared = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["shared-data"]
    assert shared["jupyter_sd/labextension"] == f"share/jupyter/labextensions/{package['name']}"
    assert package["jupyterlab"]["outputDir"] == "../jupyter_sd/labextension"
    assert jupyter_sd._jupyter_labextension_paths() == [{"src": "labextension", "dest": package["name"]}]


def test_install_json_names_the_python_package():
    install = json.loads((ROOT / "install.json").read_text(encoding="utf-8"))
    assert install["packageManager"] == "python"
    assert install["packageName"] == "jupyter_sd"


PACKAGE = ROOT / "jupyter_sd"
PATH_CALLS = {
    "join", "joinpath", "Path", "PurePath", "open", "files", "as_file", "glob", "rglob", "iterdir", "listdir",
    "scandir", "walk", "exists", "is_dir", "is_file", "read_text", "read_bytes", "resource_filename",
    "resource_string", "import_module", "find_spec", "__import__",
}  # fmt: skip
"""Calls that build, open or import a path: a string naming labextension must not be handed to one."""


def _package_modules() -> list[Path]:
    """Every module of the package, in every subpackage, but the built front end and the bundled model files."""
    skipped = (PACKAGE / "labextension", PACKAGE / "models")
    return sorted(path for path in PACKAGE.rglob("*.py") if not any(path.is_relative_to(s) for s in skipped))


def _labextension_paths(tree: ast.AST) -> list[tuple[int, str]]:
    """``(line, what)`` for each place `tree` imports the extension or joins "labextension" into a path.

    A path join is a string naming labextension as an operand of ``/``, an argument of a path call (`PATH_CALLS`,
    as a name or a method), or a string that is itself a path through it (``.../labextension/...``). The one
    exception: ``_jupyter_labextension_paths``, JupyterLab's hook, which names the folder for JupyterLab to read.
    """
    found = []

    def names_it(node: ast.AST) -> bool:
        return any(
            isinstance(leaf, ast.Constant) and isinstance(leaf.value, str) and "labextension" in leaf.value.lower()
            for leaf in ast.walk(node)
        )

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.FunctionDef) and node.name == "_jupyter_labextension_paths":
            return
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            return  # a docstring or bare string reads nothing
        if isinstance(node, ast.ImportFrom) and "labextension" in (node.module or ""):
            found.append((node.lineno, f"from {node.module} import"))
        if isinstance(node, ast.ImportFrom) and any("labextension" in alias.name for alias in node.names):
            found.append((node.lineno, "imports labextension"))
        if isinstance(node, ast.Import) and any("labextension" in alias.name for alias in node.names):
            found.append((node.lineno, "import"))
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and names_it(node):
            found.append((node.lineno, "path / 'labextension'"))
        if isinstance(node, ast.Call):
            callee = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if callee in PATH_CALLS and any(names_it(arg) for arg in [*node.args, *node.keywords]):
                found.append((node.lineno, f"{callee}(... 'labextension' ...)"))
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value.replace("\\", "/")
            if "labextension/" in text or "/labextension" in text:
                found.append((node.lineno, f"path string {node.value!r}"))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def test_the_labextension_check_sees_imports_and_path_joins():
    """The check below flags each way a module could reach the built front end (so its silence means something)."""
    bad = [
        "from jupyter_sd.labextension import static",
        "import jupyter_sd.labextension",
        "from . import labextension",
        "HERE = Path(__file__).parent / 'labextension' / 'package.json'",
        "os.path.join(os.path.dirname(__file__), 'labextension')",
        "files('jupyter_sd').joinpath('labextension/static')",
        "open(f'{root}/labextension/package.json')",
        "STATIC = 'jupyter_sd/labextension/static'",
        "importlib.import_module('jupyter_sd.labextension')",
    ]
    for source in bad:
        assert _labextension_paths(ast.parse(source)), source
    hook = 'def _jupyter_labextension_paths():\n    return [{"src": "labextension", "dest": "jupyter-sd"}]'
    assert _labextension_paths(ast.parse(hook)) == []
    assert _labextension_paths(ast.parse("def other():\n    return Path('x') / 'labextension'"))
    assert _labextension_paths(ast.parse('"""The front end is built into jupyter_sd/labextension/."""')) == []


def test_python_package_does_not_depend_on_the_extension():
    # Colab never loads JupyterLab extensions: no module may import or read the built front end.
    modules = _package_modules()
    relative = {path.relative_to(PACKAGE).as_posix() for path in modules}
    assert {"__init__.py", "magics.py", "engine/modes.py", "painting/inputs.py", "panel/__init__.py"} <= relative
    assert not any(name.startswith(("labextension/", "models/")) for name in relative)
    for path in modules:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        assert _labextension_paths(tree) == [], path
    # the one place that names the folder is JupyterLab's hook in __init__.py, and only it
    init = ast.parse((PACKAGE / "__init__.py").read_text(encoding="utf-8"))
    hooks = [node for node in ast.walk(init) if isinstance(node, ast.FunctionDef) and "labextension" in node.name]
    assert [hook.name for hook in hooks] == ["_jupyter_labextension_paths"]


@pytest.mark.parametrize("name", sorted(_expected()))
def test_fixture_parses_the_same_in_python(name):
    """The PNGs the Jest tests read give Python the values recorded in expected.json (which Jest also checks)."""
    want = _expected()[name]
    with Image.open(FIXTURES / name) as image:
        text = image.text.get(store.PARAMETERS_KEY)
    assert text == want["parameters"]
    if text is None:
        return
    prompt, negative, params = parse_infotext(text)
    assert prompt == want["prompt"]
    assert negative == want["negativePrompt"]
    assert params == want["params"]


def test_a1111_samples_parse_as_recorded_for_jest():
    """samples-python.json (which Jest compares with the TypeScript parser) matches Python's parse today."""
    recorded = json.loads((FIXTURES / "samples-python.json").read_text(encoding="utf-8"))
    assert len(recorded) >= 5
    for entry in recorded:
        prompt, negative, params = parse_infotext(entry["text"])
        assert (prompt, negative, params) == (entry["prompt"], entry["negativePrompt"], entry["params"])


def test_fixtures_cover_every_text_chunk_kind():
    kinds = {entry["chunk"] for entry in _expected().values()}
    assert {"tEXt", "iTXt", "iTXt (compressed)", "zTXt", "none"} <= kinds


@pytest.mark.slow
@pytest.mark.skipif(not (BUILT / "static" / "style.js").exists(), reason="lab extension not built (jlpm build:prod)")
def test_wheel_ships_the_prebuilt_extension(tmp_path):
    """A plain ``pip install`` of the wheel gives JupyterLab an enabled, OK extension (no rebuild)."""
    # Built without isolation (offline, fast), so the build backend must be importable here.
    pytest.importorskip("hatchling")
    pytest.importorskip("hatch_jupyter_builder")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-w", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("jupyter_sd-*.whl")
    prefix = "jupyter_sd-0.1.0.data/data/share/jupyter/labextensions/jupyter-sd/"
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        assert prefix + "package.json" in names
        assert prefix + "install.json" in names
        assert any(n.startswith(prefix + "static/remoteEntry.") for n in names)
        for stem in ("gallery", "highlight", "commands"):
            assert prefix + f"schemas/jupyter-sd/{stem}.json" in names
        assert not any("node_modules" in n or n.startswith("labextension/") for n in names)
        assert "jupyter_sd/panel/mask.js" in names  # the mask painter's front end ships in the package
        zf.extractall(tmp_path / "unpacked")

    # What pip puts under sys.prefix/share/jupyter, JupyterLab finds through JUPYTER_PATH.
    data = tmp_path / "unpacked" / "jupyter_sd-0.1.0.data" / "data" / "share" / "jupyter"
    env = {**os.environ, "JUPYTER_PATH": str(data), "JUPYTER_CONFIG_DIR": str(tmp_path / "config")}
    listed = subprocess.run(
        [sys.executable, "-m", "jupyterlab.labextensions", "list"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    output = listed.stdout + listed.stderr
    line = next(line for line in output.splitlines() if "jupyter-sd" in line)
    assert "enabled" in line and "OK" in line and "0.1.0" in line, output
    assert "(python, jupyter_sd)" in line, output
