"""SQL has one home: `crucible.db` (its query modules, one per table).

A statement written anywhere else, a driver imported anywhere but the pool, or a table
without its query module fails here, so "add a column to kernels" keeps meaning one
folder.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = [ROOT / "core", ROOT / "agent", ROOT / "plugins"]
DB = ROOT / "core" / "db"
QUERIES = DB / "queries"
#: The start of an SQL statement in a string literal (f-string parts included).
SQL = re.compile(
    r"^\s*(SELECT\s.+\sFROM\s|INSERT\s+INTO\s|UPDATE\s+\w+\s+SET\s|DELETE\s+FROM\s"
    r"|WITH\s+\w+\s+AS\s*\(|LOCK\s+TABLE\s|CREATE\s+(TABLE|INDEX|DATABASE)\s)",
    re.IGNORECASE | re.DOTALL,
)
DRIVERS = {"asyncpg", "triopg"}


def _sources() -> Iterator[Path]:
    for top in PRODUCT:
        yield from sorted(top.rglob("*.py"))


def _strings(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


def test_no_sql_outside_crucible_db() -> None:
    found = []
    for path in _sources():
        if path.is_relative_to(DB):
            continue
        for line, text in _strings(ast.parse(path.read_text(), str(path))):
            if SQL.match(text):
                found.append(f"{path.relative_to(ROOT)}:{line}")
    assert not found, f"SQL written outside core/db (move it to core/db/queries): {found}"


def test_the_check_sees_sql() -> None:
    # The pattern must catch what the query modules write, or the test above is blind.
    caught = sum(
        1
        for path in sorted(QUERIES.glob("*.py"))
        for _line, text in _strings(ast.parse(path.read_text()))
        if SQL.match(text)
    )
    assert caught >= 50


def test_only_the_pool_imports_the_driver() -> None:
    importers = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            if any(name.split(".")[0] in DRIVERS for name in names):
                importers.append(str(path.relative_to(ROOT)))
    assert sorted(set(importers)) == ["core/db/pool.py"]


def test_every_table_has_its_query_module() -> None:
    schema = "\n".join(p.read_text() for p in sorted((DB / "migrations").glob("*.sql")))
    tables = set(re.findall(r"CREATE TABLE (\w+)", schema))
    assert "kernels" in tables
    missing = sorted(t for t in tables if not (QUERIES / f"{t}.py").is_file())
    assert not missing, f"tables without a module in core/db/queries: {missing}"
