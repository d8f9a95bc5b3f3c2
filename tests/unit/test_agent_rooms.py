"""The agent's rooms keep their promises: one module speaks to Docker, modules stay small."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Product folders held to the size bound (issue 10: no product module over 450 lines).
SIZED = ("core", "agent", "plugins")
MAX_LINES = 450


def _python_files(*folders: str) -> list[Path]:
    return sorted(path for folder in folders for path in (ROOT / folder).rglob("*.py"))


def _imports_docker(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            if any(alias.name.split(".")[0] == "docker" for alias in node.names):
                return True
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] == "docker":
                return True
    return False


def test_only_the_driver_imports_the_docker_sdk() -> None:
    importers = [
        path.relative_to(ROOT).as_posix()
        for path in _python_files("core", "agent", "plugins")
        if _imports_docker(path)
    ]
    assert importers == ["agent/docker/driver.py"]


def test_no_product_module_is_over_the_bound() -> None:
    long = {
        path.relative_to(ROOT).as_posix(): lines
        for path in _python_files(*SIZED)
        if (lines := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}
