"""The package's public face and its house rules: layers that import one way, no circles, small rooms."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import jupyter_sd

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "jupyter_sd"

LAYERS = {
    "version": -1,
    "recipe": 0,
    "library": 0,
    "downloads": 1,
    "engine": 2,
    "painting": 3,
    "plots": 4,
    "batches": 4,
    "extras": 4,
    "panel": 5,
    "api": 6,
    "magics": 7,
    "cli": 7,
}
"""Each top-level room of the package and its layer: a module imports only from its own layer or those below."""
SIDEWAYS = {("recipe", "library")}
"""Imports between two rooms of one layer that are allowed, one way only (a pasted recipe names models)."""


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        if {"labextension", "models"} & set(path.relative_to(PACKAGE).parts):
            continue
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path) -> set[str]:
    """Every jupyter_sd module `name` imports, anywhere in it (inside functions and TYPE_CHECKING blocks too)."""
    modules = _modules()
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                full = f"{target}.{alias.name}"
                found.add(full if full in modules else target)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m.split(".")[0] == "jupyter_sd" and m != "jupyter_sd"}


def _room(module: str) -> str:
    return module.split(".")[1]


def test_every_module_sits_in_a_known_room():
    rooms = {_room(name) for name in _modules() if name != "jupyter_sd"}
    assert rooms == set(LAYERS), rooms ^ set(LAYERS)


def test_imports_run_one_way_down_the_layers():
    wrong = []
    for name, path in _modules().items():
        if name == "jupyter_sd":
            continue
        for target in _imports(name, path):
            mine, theirs = _room(name), _room(target)
            if mine == theirs:
                continue
            if LAYERS[theirs] > LAYERS[mine] or (LAYERS[theirs] == LAYERS[mine] and (mine, theirs) not in SIDEWAYS):
                wrong.append(f"{name} -> {target}")
    assert not wrong, wrong


def test_no_import_circles():
    modules = _modules()
    graph = {name: {t for t in _imports(name, path) if t in modules and t != name} for name, path in modules.items()}
    # a package's __init__ re-exports its rooms: an edge *into* an __init__ is the same as into what it re-exports
    graph = {n: {t for t in ts if modules[t].name != "__init__.py"} for n, ts in graph.items()}
    seen: dict[str, int] = {}
    circles = []

    def visit(node: str, trail: list[str]) -> None:
        seen[node] = 1
        for nxt in graph[node]:
            if seen.get(nxt) == 1:
                circles.append(trail[trail.index(nxt) :] + [nxt] if nxt in trail else [node, nxt])
            elif nxt not in seen:
                visit(nxt, [*trail, nxt])
        seen[node] = 2

    for start in graph:
        if start not in seen:
            visit(start, [start])
    assert not circles, circles


def test_recipes_import_no_front_end_and_no_torch():
    """What a picture is (``recipe/``) is pure Python: the CLI, Ray workers and the lab extension's tools read it."""
    for name, path in _modules().items():
        if name == "jupyter_sd" or _room(name) != "recipe":
            continue
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and not node.level:
                imported.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
        assert not imported & {"IPython", "ipywidgets", "ipykernel", "torch", "diffusers"}, (name, imported)


def test_small_rooms():
    """No module over 400 lines; no function over 60 lines of code (its docstring not counted)."""
    too_big = []
    for name, path in _modules().items():
        text = path.read_text()
        if text.count("\n") > 400:
            too_big.append(f"{name}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.body
                if len(body) > 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                    body = body[1:]
                if node.end_lineno - body[0].lineno + 1 > 60:
                    too_big.append(f"{name}.{node.name}")
    assert not too_big, too_big


def test_all_matches_public_names_and_no_public_name_shadows_a_module():
    public = {name for name in dir(jupyter_sd) if not name.startswith("_")}
    modules = {name for name in public if type(getattr(jupyter_sd, name)).__name__ == "module"}
    assert set(jupyter_sd.__all__) - {"__version__", "Panel"} == public - modules - {"annotations", "Any"}
    for name in jupyter_sd.__all__:
        assert not (PACKAGE / f"{name}.py").exists() and not (PACKAGE / name).is_dir(), name


def test_public_names_stay():
    from jupyter_sd.engine import Engine, Fanout, Progress  # noqa: F401
    from jupyter_sd.panel import CellControls, Panel  # noqa: F401

    assert jupyter_sd.plot is jupyter_sd.xyz and callable(jupyter_sd.batch) and callable(jupyter_sd.paint)
    assert jupyter_sd.BatchResult.__name__ == "BatchResult" and jupyter_sd.PlotResult.__name__ == "PlotResult"
    for name in ("parse_attention", "prompt_schedules", "split_and", "extract_networks"):
        assert callable(getattr(jupyter_sd.prompts, name)), name
    assert jupyter_sd._jupyter_labextension_paths() == [{"src": "labextension", "dest": "jupyter-sd"}]
    from jupyter_sd.painting.store import PARAMETERS_KEY, REQUEST_KEY

    assert (PARAMETERS_KEY, REQUEST_KEY) == ("parameters", "jupyter_sd")


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


def test_recipe_library_and_engine_import_no_ipython():
    modules = "jupyter_sd.recipe.request, jupyter_sd.recipe.samplers, jupyter_sd.painting.store, jupyter_sd.engine"
    code = f"import sys, {modules}; print('IPython' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False", done.stderr


def test_readme_runs_the_test_command_that_ci_runs():
    test_command = 'pip install torch==2.13.0 && pip install -e ".[test]" && python -m pytest'
    assert test_command in (ROOT / "README.md").read_text()
    assert test_command in (ROOT / ".ci" / "run").read_text()


OPTIONAL_IN_TESTS = {"ray": "ray"}
"""Modules a test may use only behind ``pytest.importorskip`` (an extra's package, skipped with its install line)."""


def _declared_distributions() -> set[str]:
    """The distributions a fresh ``pip install -e ".[test]"`` brings: core and test requirements, and theirs."""
    import re
    from importlib import metadata

    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["test"]]
    found: set[str] = set()
    while wanted:
        name = re.split(r"[<>=!~\[; ]", wanted.pop(), maxsplit=1)[0].strip().lower().replace("_", "-")
        if name in found:
            continue
        found.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        wanted += [r for r in requires if "extra ==" not in r]
    return found


def test_the_tests_need_nothing_the_test_extra_does_not_declare():
    """A fresh clone passes its own tests with nothing else installed: every package a test imports is declared."""
    import sys
    from importlib import metadata

    providers = metadata.packages_distributions()
    declared = _declared_distributions()
    undeclared = []
    for path in (ROOT / "tests").rglob("*.py"):
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                modules = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                modules = [node.module.split(".")[0]]
            else:
                continue
            for module in modules:
                if module in sys.stdlib_module_names or module in ("helpers", "jupyter_sd", "google"):
                    continue
                if module in OPTIONAL_IN_TESTS:
                    assert f'importorskip("{module}"' in text, (path.name, module)
                    continue
                dists = {d.lower().replace("_", "-") for d in providers.get(module, [])}
                if not dists & declared:
                    undeclared.append(f"{path.relative_to(ROOT)}: {module}")
    assert not undeclared, undeclared
