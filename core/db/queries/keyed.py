"""Rows read by a text key: one key's row, or the rows of many keys in one statement."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, TypeVar

import attrs

from crucible.db.pool import Executor
from crucible.db.queries.columns import Row

R = TypeVar("R", bound=Row)


@attrs.frozen
class KeyedRows(Generic[R]):
    """The `row`s of `table` (the `columns` selected) by its text column `key`."""

    row: type[R]
    table: str
    key: str
    columns: str

    async def one(self, ex: Executor, value: str) -> R | None:
        return self.row.from_optional(
            await ex.fetchrow(
                f"SELECT {self.columns} FROM {self.table} WHERE {self.key} = $1", value
            )
        )

    async def many(self, ex: Executor, values: Sequence[str]) -> list[R]:
        rows = await ex.fetch(
            f"SELECT {self.columns} FROM {self.table} WHERE {self.key} = ANY($1::text[])",
            list(values),
        )
        return self.row.from_rows(rows)
