"""Column value conversions shared by the query modules, and `Row`, the base of the
row classes they return."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from typing import Any, ClassVar, Self, cast

import attrs


def from_jsonb(value: Any) -> Any:
    """A ``jsonb`` column's value (the driver hands it over as text)."""
    return json.loads(value) if isinstance(value, str) else value


def to_jsonb(value: Any) -> str:
    """The text of `value` for a ``$n::jsonb`` parameter."""
    return json.dumps(value)


def hex_id(value: Any) -> str:
    """A ``uuid`` column's value as 32 hexadecimal digits (how folders are named, spec
    6.1)."""
    return uuid.UUID(str(value)).hex


class Row:
    """The base of the frozen attrs classes a query returns, one per kind of record.

    Each field is read from the record's column of its name, as it is, unless
    `converted` gives its value: a ``jsonb`` column decoded, a numeric one made a
    float, a column of another name.
    """

    __slots__ = ()
    __attrs_attrs__: ClassVar[tuple[attrs.Attribute[Any], ...]]

    @classmethod
    def converted(cls, row: Any) -> dict[str, Any]:
        """The values of the fields that are not their column's value as it is."""
        return {}

    @classmethod
    def from_row(cls, row: Any) -> Self:
        values = cls.converted(row)
        for field in attrs.fields(cls):
            if field.name not in values:
                values[field.name] = row[field.name]
        made: Self = cast("type[Any]", cls)(**values)
        return made

    @classmethod
    def from_rows(cls, rows: Iterable[Any]) -> list[Self]:
        return [cls.from_row(row) for row in rows]

    @classmethod
    def from_optional(cls, row: Any) -> Self | None:
        """None for no row (a ``fetchrow`` that found none)."""
        return None if row is None else cls.from_row(row)
