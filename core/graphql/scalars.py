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


def _serialize_datetime(value: Any) -> str:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value)


def _serialize_json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


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
    name: str,
    serialize: Callable[[Any], str],
    read: Callable[[str], T],
    description: str,
    *,
    unreadable: str,
) -> GraphQLScalarType:
    """A scalar written as a string: `read` turns a variable's value or a literal's text
    into the value; what it refuses (``ValueError``) is the error `unreadable` (formatted
    with the text), and a value or literal of another kind is an error too."""

    def parse_value(value: Any) -> T:
        if not isinstance(value, str):
            raise GraphQLError(f"A {name} must be a string.")
        try:
            return read(value)
        except ValueError:
            raise GraphQLError(unreadable.format(value=value)) from None

    def parse_literal(node: ValueNode, _variables: Any = None) -> T:
        if not isinstance(node, StringValueNode):
            raise GraphQLError(f"A {name} must be a string.")
        return parse_value(node.value)

    return GraphQLScalarType(
        name,
        serialize=serialize,
        parse_value=parse_value,
        parse_literal=parse_literal,
        description=description,
    )


UUIDScalar = _string_scalar(
    "UUID", _serialize_uuid, lambda text: str(uuid.UUID(text)), "8-4-4-4-12 hexadecimal string.",
    unreadable="Not a UUID: {value!r}.",
)
DateTimeScalar = _string_scalar(
    "DateTime", _serialize_datetime, datetime.fromisoformat, "ISO 8601 date/time string.",
    unreadable="Not an ISO 8601 date/time: {value!r}.",
)
JSONStringScalar = _string_scalar(
    "JSONString", _serialize_json, json.loads, "JSON text in a string.",
    unreadable="Not valid JSON text.",
)
BigIntScalar = GraphQLScalarType(
    "BigInt",
    serialize=_serialize_bigint,
    parse_value=_parse_bigint,
    parse_literal=_parse_bigint_literal,
    description="A signed integer of up to 64 bits (a JSON number).",
)
