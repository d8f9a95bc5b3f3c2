"""The benchmark scripts (Python files without a .py extension) are named where ruff and
mypy must be told about them: a new script missing there would be neither linted nor
type-checked, and nothing else would say so."""

from __future__ import annotations

import configparser
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"


def _scripts() -> set[str]:
    return {
        path.name
        for path in BENCH.iterdir()
        if path.is_file()
        and not path.suffix
        and path.read_bytes().startswith(b"#!")
        and b"python" in path.read_bytes().splitlines()[0]
    }


def test_there_are_benchmark_scripts() -> None:
    assert {"sessions", "api_overhead", "session_files"} <= _scripts()


def test_ruff_lints_every_benchmark_script() -> None:
    ruff = tomllib.loads((BENCH / "ruff.toml").read_text())
    assert set(ruff["extend-include"]) == _scripts()


def test_mypy_checks_every_benchmark_script() -> None:
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(ROOT / "tox.ini")
    commands = tox["testenv:type-tests"]["commands"]
    named = {word.rsplit("}", 1)[-1] for word in commands.split() if "bench{/}" in word}
    assert named == _scripts()
