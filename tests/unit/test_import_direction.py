"""Imports go one way: manager modules → shared modules ← agent modules.

Read from the source (``ast``), not by importing: a module that imports the other side
lazily, inside a function, counts too.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {"core": "crucible", "agent": "crucible.agent", "plugins": "crucible.plugins"}
#: The composition: the only modules that may import both sides.
COMPOSITION = ("crucible.cli", "crucible.daemon", "crucible.__main__")
#: Rooms both sides import; they import neither side.
SHARED = ("crucible.kernels", "crucible.fstree", "crucible.errors")
#: The manager's rooms, which the agent never imports.
MANAGER = (
    "crucible.api",
    "crucible.sessions",
    "crucible.graphql",
    "crucible.vfolders",
    "crucible.keypairs",
    "crucible.cluster",
    "crucible.manager",
    "crucible.usage",
    "crucible.resource_policies",
)
RUNNER = ROOT / "agent" / "runner"
#: What user code imports from the runner's pysite/ (put on the child's sys.path).
PYSITE = {path.stem for path in (RUNNER / "pysite").glob("*.py")}


def _modules() -> Iterator[tuple[str, Path]]:
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield ".".join((package, *parts)), path


def _imports(path: Path) -> set[str]:
    """Absolute module names `path` imports anywhere in it (relative imports left out)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _within(name: str, rooms: tuple[str, ...]) -> bool:
    return any(name == room or name.startswith(room + ".") for room in rooms)


MODULES = dict(_modules())


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_one_way(module: str) -> None:
    imported = _imports(MODULES[module])
    agent_side = {name for name in imported if _within(name, ("crucible.agent",))}
    manager_side = {name for name in imported if _within(name, MANAGER + COMPOSITION)}
    if module in COMPOSITION:
        return
    if _within(module, SHARED):
        assert not agent_side | manager_side, f"{module} is shared: it imports neither side"
    elif _within(module, ("crucible.agent",)):
        assert not manager_side, f"{module} is agent code: it never imports the manager"
    else:
        assert not agent_side, f"{module} is manager code: it never imports the agent"


@pytest.mark.parametrize(
    "path", sorted(RUNNER.rglob("*.py")), ids=lambda path: str(path.relative_to(RUNNER))
)
def test_the_runner_imports_only_the_standard_library(path: Path) -> None:
    # It is bind-mounted alone into images whose python3 may be 3.9 (bullseye); the
    # modules of pysite/ run in the user's interpreter, where matplotlib may be present.
    ast.parse(path.read_text(), str(path), feature_version=(3, 9))
    if path.parent.name == "pysite":
        return
    for name in _imports(path):
        top = name.split(".")[0]
        assert top in sys.stdlib_module_names or top in PYSITE, f"{path.name}: {name}"


def test_the_runner_needs_no_python_newer_than_3_9() -> None:
    # The syntax check above misses library calls: a dataclasses.field(kw_only=...) parsed
    # fine and stopped every runner of the bullseye images (python3 3.9) at import.
    vermin = shutil.which("vermin", path=str(Path(sys.executable).parent))
    assert vermin is not None, "vermin is one of the test extras"
    found = subprocess.run(
        [vermin, "--target=3.9-", "--violations", "--no-tips", "--no-parse-comments", str(RUNNER)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert found.returncode == 0, found.stdout + found.stderr
