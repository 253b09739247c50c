import json
import subprocess
import sys
from pathlib import Path

import jupyter_sd

ROOT = Path(__file__).resolve().parents[1]


def test_all_matches_public_names():
    public = {name for name in dir(jupyter_sd) if not name.startswith("_")}
    modules = {name for name in public if type(getattr(jupyter_sd, name)).__name__ == "module"}
    assert set(jupyter_sd.__all__) - {"__version__", "Panel"} == public - modules - {"annotations", "Any"}


def test_batch_is_the_function_and_its_result_is_exported():
    assert callable(jupyter_sd.batch) and jupyter_sd.batch.__module__ == "jupyter_sd.batches.run"
    assert jupyter_sd.BatchResult.__module__ == "jupyter_sd.batches.result"


def test_version_matches_labextension():
    package = json.loads((ROOT / "labextension" / "package.json").read_text())
    assert package["version"] == jupyter_sd.__version__


def test_import_and_load_ext_do_not_import_torch():
    code = (
        "import sys, jupyter_sd\n"
        "from IPython.testing.globalipapp import start_ipython\n"
        "start_ipython().run_line_magic('load_ext', 'jupyter_sd')\n"
        "print(sorted(m for m in ('torch', 'diffusers', 'transformers', 'ipywidgets', 'ray') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stderr


def test_request_samplers_store_import_no_ipython():
    modules = "jupyter_sd.recipe.request, jupyter_sd.samplers, jupyter_sd.store, jupyter_sd.engine"
    code = f"import sys, {modules}; print('IPython' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False", done.stderr


def test_readme_lists_every_option_and_runs_the_test_command():
    from jupyter_sd.recipe.request import option_fields

    readme = (ROOT / "README.md").read_text()
    for f in option_fields():
        for flag in f.metadata["flags"]:
            assert f"`{flag}`" in readme, flag
    test_command = 'pip install torch==2.13.0 && pip install -e ".[test]" && python -m pytest'
    assert test_command in readme
    assert test_command in (ROOT / ".ci" / "run").read_text()


BOTTOM = (
    "fields",
    "request",
    "pasted",
    "infotext",
    "prompts",
    "prompt_editing",
    "presets",
    "samplers",
    "options",
    "result",
    "library",
    "store",
    "model_kind",
    "hashes",
    "fetch",
    "civitai",
    "hub",
    "downloads",
)
ABOVE = ("engine", "views", "painter", "xyz", "batch", "panel", "magics", "cli")


def _imported_modules(path: Path) -> set[str]:
    """The jupyter_sd modules and third-party packages a module imports, anywhere in it."""
    import ast

    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # from .x import y / from . import x
                base = [node.module.split(".")[0]] if node.module else [alias.name for alias in node.names]
                names.update(f"jupyter_sd.{name}" for name in base)
            elif node.module:
                names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_bottom_modules_import_nothing_above_them():
    """The wave-2 rooms: bottom modules never reach up into the engine or the front ends, nor into IPython."""
    package = ROOT / "jupyter_sd"
    files = {name: [package / f"{name}.py"] for name in BOTTOM if (package / f"{name}.py").is_file()}
    files.update({name: sorted((package / name).glob("*.py")) for name in BOTTOM if (package / name).is_dir()})
    assert {"fields", "request", "infotext", "library", "store"} <= set(files)
    for name, path in ((name, path) for name, paths in files.items() for path in paths):
        imported = _imported_modules(path)
        upward = {m for m in imported if m.split(".")[0] == "jupyter_sd" and m.split(".")[1] in ABOVE}
        ui = {m for m in imported if m.split(".")[0] in ("IPython", "ipywidgets", "ipykernel")}
        assert not upward and not ui, (name, upward, ui)


def test_engine_and_panel_packages_keep_their_public_names():
    from jupyter_sd.engine import Engine, Progress
    from jupyter_sd.panel import CellControls, Panel
