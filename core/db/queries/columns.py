"""Column value conversions shared by the query modules."""

from __future__ import annotations

import json
from typing import Any

import attrs


def from_jsonb(value: Any) -> Any:
    """A ``jsonb`` column's value (the driver hands it over as text)."""
    return json.loads(value) if isinstance(value, str) else value


def to_jsonb(value: Any) -> str:
    """The text of `value` for a ``$n::jsonb`` parameter."""
    return json.dumps(value)


def same_names(cls: type[Any], row: Any) -> dict[str, Any]:
    """The row's values for the attrs class `cls`, whose fields are named as the columns
    (for ``cls(**same_names(cls, row))`` when no value needs converting)."""
    return {field.name: row[field.name] for field in attrs.fields(cls)}
