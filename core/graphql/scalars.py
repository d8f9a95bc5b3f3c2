"""Custom scalars of the admin schema (spec 7.1), plus a 64-bit integer.

GraphQL's ``Int`` is 32-bit and graphql-core refuses to serialise anything larger, yet
byte counters and CPU milliseconds pass 2^31 within hours. ``Int`` cannot be redefined,
so such fields use ``BigInt``; on the wire both are JSON numbers, and no client of this
API reads type names.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import date, datetime
from typing import Any, TypeVar

from graphql import GraphQLError, GraphQLScalarType, ValueNode
from graphql.language import IntValueNode, StringValueNode

T = TypeVar("T")


def _serialize_uuid(value: Any) -> str:
    return str(uuid.UUID(str(value)))


def _read(value: Any, read: Callable[[str], T], *, expected: str, unreadable: str) -> T:
    """``read(value)`` of a string `value`; the error says `expected` for anything but
    a string, `unreadable` (formatted with the value) for what `read` refuses."""
    if not isinstance(value, str):
        raise GraphQLError(expected)
    try:
        return read(value)
    except ValueError:
        raise GraphQLError(unreadable.format(value=value)) from None


def _parse_uuid(value: Any) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise GraphQLError(f"Not a UUID: {value!r}.") from None


def _serialize_datetime(value: Any) -> str:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value)


def _parse_datetime(value: Any) -> datetime:
    return _read(
        value,
        datetime.fromisoformat,
        expected="A DateTime must be an ISO 8601 string.",
        unreadable="Not an ISO 8601 date/time: {value!r}.",
    )


def _serialize_json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _parse_json(value: Any) -> Any:
    return _read(
        value,
        json.loads,
        expected="A JSONString must be a string.",
        unreadable="Not valid JSON text.",
    )


def _serialize_bigint(value: Any) -> int:
    return int(value)


#: A BigInt is what a PostgreSQL ``bigint`` column holds.
BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1
_BIGINT_RANGE = "BigInt is a signed 64-bit integer; the value is out of range."


def _parse_bigint(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise GraphQLError(f"BigInt cannot represent {str(value)[:40]!r}.")
    if not BIGINT_MIN <= value <= BIGINT_MAX:
        raise GraphQLError(_BIGINT_RANGE)
    return value


def _parse_bigint_literal(node: ValueNode, _variables: Any = None) -> int:
    if not isinstance(node, IntValueNode):
        raise GraphQLError("BigInt needs an integer literal.")
    try:
        value = int(node.value)
    except ValueError:
        # More digits than Python converts (sys.get_int_max_str_digits).
        raise GraphQLError(_BIGINT_RANGE) from None
    return _parse_bigint(value)


def _string_scalar(
    name: str, serialize: Callable[[Any], str], parse: Callable[[Any], T], description: str
) -> GraphQLScalarType:
    """A scalar written as a string: `parse` reads a variable's value and a literal's
    text; a literal of another kind is an error."""

    def parse_literal(node: ValueNode, _variables: Any = None) -> T:
        if not isinstance(node, StringValueNode):
            raise GraphQLError(f"A {name} must be a string.")
        return parse(node.value)

    return GraphQLScalarType(
        name,
        serialize=serialize,
        parse_value=parse,
        parse_literal=parse_literal,
        description=description,
    )


UUIDScalar = _string_scalar("UUID", _serialize_uuid, _parse_uuid, "8-4-4-4-12 hexadecimal string.")
DateTimeScalar = _string_scalar(
    "DateTime", _serialize_datetime, _parse_datetime, "ISO 8601 date/time string."
)
JSONStringScalar = _string_scalar(
    "JSONString", _serialize_json, _parse_json, "JSON text in a string."
)
BigIntScalar = GraphQLScalarType(
    "BigInt",
    serialize=_serialize_bigint,
    parse_value=_parse_bigint,
    parse_literal=_parse_bigint_literal,
    description="A signed integer of up to 64 bits (a JSON number).",
)
