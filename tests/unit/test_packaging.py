"""Every source package is listed in pyproject.toml, so `pip install .` ships it."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAPPING = {"core": "crucible", "agent": "crucible.agent", "plugins": "crucible.plugins"}


def _source_packages() -> set[str]:
    found = set()
    for folder, package in MAPPING.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder)
            parts = [package, *relative.parts] if relative.parts else [package]
            found.add(".".join(parts))
    return found


def test_every_package_is_listed() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(pyproject["tool"]["setuptools"]["packages"])
    assert _source_packages() - listed == set()
