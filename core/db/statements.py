"""Small builders for SQL statements whose shape depends on the request."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def update_statement(
    table: str, key_column: str, changes: Mapping[str, Any], allowed: Iterable[str], returning: str
) -> tuple[str, list[Any]] | None:
    """``UPDATE table SET ... WHERE key_column = $1 RETURNING ...`` for the `changes`
    whose column is `allowed`; None when none is. The key is the first parameter, then
    the values in the order of the SET clause.

    Column names come from `allowed` (the caller's own list), never from the request, so
    the statement cannot be steered by input; values are always parameters.
    """
    columns = [column for column in allowed if column in changes]
    if not columns:
        return None
    assignments = ", ".join(f"{column} = ${i}" for i, column in enumerate(columns, start=2))
    sql = f"UPDATE {table} SET {assignments} WHERE {key_column} = $1 RETURNING {returning}"
    return sql, [changes[column] for column in columns]
