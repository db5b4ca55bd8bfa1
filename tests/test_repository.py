"""The repository's own promises: paired and executed lessons, honest badges, consistent requirements, lint."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted((ROOT / "lessons_src").glob("[0-9][0-9]_*.py"))
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_lesson_script_has_its_notebook_and_vice_versa():
    assert SCRIPTS, "no lessons found"
    assert [p.stem for p in SCRIPTS] == [p.stem for p in NOTEBOOKS]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_pair_in_sync(notebook):
    """jupytext's conversion of the notebook equals its script, byte for byte."""
    converted = subprocess.run(
        [sys.executable, "-m", "jupytext", "--to", "py:percent", "-q", "-o", "-", str(notebook)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    script = ROOT / "lessons_src" / f"{notebook.stem}.py"
    assert converted == script.read_text(), f"run: jupytext --sync {script.relative_to(ROOT)}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_was_executed_top_to_bottom_without_errors(notebook):
    cells = [c for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"]
    code_cells = [c for c in cells if "".join(c["source"]).strip()]
    counts = [c["execution_count"] for c in code_cells]
    assert None not in counts, f"{notebook.name} has unexecuted code cells"
    assert counts == list(range(1, len(counts) + 1)), f"{notebook.name} was not run top to bottom in one kernel"
    errors = [o for c in cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{notebook.name} has error outputs: {errors[0].get('ename')}"


def colab_badge_url(stem: str) -> str:
    slug = PYPROJECT["project"]["urls"]["Repository"].removeprefix("https://github.com/").rstrip("/")
    return f"https://colab.research.google.com/github/{slug}/blob/main/notebooks/{stem}.ipynb"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_lesson_has_title_badge_summary_and_exercises(script):
    text = script.read_text()
    badges = re.findall(r"https://colab\.research\.google\.com/github/[^)\s\"']+", text)
    assert badges == [colab_badge_url(script.stem)], "each lesson has exactly one badge, to its own notebook"
    assert re.search(r"^# # \S", text, re.M), "a lesson opens with a markdown title"
    assert re.search(r"^# ## Summary", text, re.M) and re.search(r"^# ## Exercises", text, re.M)


def requirement_names(lines: list[str]) -> set[str]:
    names = set()
    for line in lines:
        line = line.split("#")[0].strip()
        if not line or line.startswith("-r"):
            continue
        names.add("scratchlm" if line == "-e ." else re.split(r"[<>=!~\[ ;]", line)[0].lower())
    return names


def test_environment_yml_matches_requirements():
    req = requirement_names((ROOT / "requirements.txt").read_text().splitlines())
    req |= requirement_names((ROOT / "requirements-dev.txt").read_text().splitlines())
    env_text = (ROOT / "environment.yml").read_text()
    pip_lines = [m.group(1) for m in re.finditer(r"^\s{6}- (.+)$", env_text, re.M)]
    assert requirement_names(pip_lines) == req
    # and the versions agree: every requirement line appears verbatim in the conda file
    for name in ("requirements.txt", "requirements-dev.txt"):
        for line in (ROOT / name).read_text().splitlines():
            line = line.split("#")[0].strip()
            if line and not line.startswith("-r"):
                assert line in pip_lines, f"{line!r} from {name} is missing from environment.yml"


def test_runtime_requirements_cover_the_package_dependencies():
    declared = requirement_names(PYPROJECT["project"]["dependencies"])
    assert declared <= requirement_names((ROOT / "requirements.txt").read_text().splitlines())


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is not installed")
def test_ruff_clean():
    result = subprocess.run(["ruff", "check", "."], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is not installed")
def test_ruff_format_clean():
    result = subprocess.run(["ruff", "format", "--check", "."], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, f"run: ruff format\n{result.stdout}{result.stderr}"


def module_names(package: Path) -> dict[str, Path]:
    """{dotted module name: file} for every module of `package`; a package's `__init__.py` is the package."""
    names = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def executed_import_statements(tree: ast.Module) -> list[ast.stmt]:
    """The import statements that can run: at module level and inside functions (an import deferred into a
    function still ties the two modules together, it only hides the cycle until the function is called), but
    not those under `if TYPE_CHECKING:` (they never run)."""
    found, todo = [], list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo.extend(node.orelse)
        else:
            todo.extend(ast.iter_child_nodes(node))
    return found


def imported_modules(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of `known` that `module` imports, at import time or in a function (`from pkg import name` is
    the submodule pkg.name if there is one, else pkg itself)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    targets = set()
    for node in executed_import_statements(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
            continue
        base = node.module
        if node.level:  # relative: from . import x, from ..y import z
            anchor = package.rsplit(".", node.level - 1)[0]
            base = f"{anchor}.{base}" if base else anchor
        for alias in node.names:
            targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {t for t in targets if t in known and t != module}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of `graph` as [a, b, ..., a], or None: depth-first search for an edge back to the current path."""
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        path.append(node)
        for target in sorted(graph[node]):
            if target in path:
                return [*path[path.index(target) :], target]
            if target not in done and (cycle := visit(target)):
                return cycle
        path.pop()
        done.add(node)
        return None

    for start in sorted(graph):
        if start not in done and (cycle := visit(start)):
            return cycle
    return None


def test_find_cycle_reports_the_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]


def package_import_graph() -> dict[str, set[str]]:
    """{module: the scratchlm modules it imports} over the whole package."""
    known = module_names(ROOT / "scratchlm")
    return {module: imported_modules(module, path, known) for module, path in known.items()}


def test_imports_inside_functions_count_and_type_checking_ones_do_not():
    tree = ast.parse(
        "import os\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    import never_runs\n"
        "def f():\n"
        "    from deferred import thing\n"
        "class C:\n"
        "    def g(self):\n"
        "        import in_a_method\n"
    )
    names = {ast.unparse(node) for node in executed_import_statements(tree)}
    assert names == {
        "import os",
        "from typing import TYPE_CHECKING",
        "from deferred import thing",
        "import in_a_method",
    }


def test_the_package_has_no_import_cycles():
    """Modules couple by shape, not by type (the model does not import the KV cache's module, nor the cache the
    model's): a cycle of imports makes the import order matter and the modules inseparable. Imports deferred into
    a function count: they only hide a cycle until the function runs."""
    cycle = find_cycle(package_import_graph())
    assert cycle is None, f"import cycle: {' -> '.join(cycle)}"


def test_tokenizers_import_nothing_above_them():
    """Regression (issue 23): `BPETokenizer.from_pretrained` imported `scratchlm.data` inside a function to fetch
    rank files while `scratchlm.data` imports the tokenizers; both now use `scratchlm.downloads`, which sits below
    them. Everything the tokenizers reach is the tokenizers themselves or the package's bottom layer."""
    graph = package_import_graph()
    reached, todo = set(), [m for m in graph if m.startswith("scratchlm.tokenizers")]
    while todo:
        module = todo.pop()
        if module not in reached:
            reached.add(module)
            todo.extend(graph[module])
    above = {m for m in reached if not m.startswith("scratchlm.tokenizers")} - {
        "scratchlm.downloads",
        "scratchlm.errors",
        "scratchlm.files",
        "scratchlm.options",
    }
    assert not above, f"the tokenizers import {sorted(above)}"
