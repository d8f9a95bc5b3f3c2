"""Custom scalars of the admin schema (spec 7.1), plus a 64-bit integer.

GraphQL's ``Int`` is 32-bit and graphql-core refuses to serialise anything larger, yet
byte counters and CPU milliseconds pass 2^31 within hours. ``Int`` cannot be redefined,
so such fields use ``BigInt``; on the wire both are JSON numbers, and no client of this
API reads type names.
"""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime
from typing import Any

from graphql import GraphQLError, GraphQLScalarType, ValueNode
from graphql.language import IntValueNode, StringValueNode


def _serialize_uuid(value: Any) -> str:
    return str(uuid.UUID(str(value)))


def _parse_uuid(value: Any) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise GraphQLError(f"Not a UUID: {value!r}.") from None


def _parse_uuid_literal(node: ValueNode, _variables: Any = None) -> str:
    if not isinstance(node, StringValueNode):
        raise GraphQLError("A UUID must be a string.")
    return _parse_uuid(node.value)


def _serialize_datetime(value: Any) -> str:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value)


def _parse_datetime(value: Any) -> datetime:
    if not isinstance(value, str):
        raise GraphQLError("A DateTime must be an ISO 8601 string.")
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise GraphQLError(f"Not an ISO 8601 date/time: {value!r}.") from None


def _parse_datetime_literal(node: ValueNode, _variables: Any = None) -> datetime:
    if not isinstance(node, StringValueNode):
        raise GraphQLError("A DateTime must be a string.")
    return _parse_datetime(node.value)


def _serialize_json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _parse_json(value: Any) -> Any:
    if not isinstance(value, str):
        raise GraphQLError("A JSONString must be a string.")
    try:
        return json.loads(value)
    except ValueError:
        raise GraphQLError("Not valid JSON text.") from None


def _parse_json_literal(node: ValueNode, _variables: Any = None) -> Any:
    if not isinstance(node, StringValueNode):
        raise GraphQLError("A JSONString must be a string.")
    return _parse_json(node.value)


def _serialize_bigint(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
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


UUIDScalar = GraphQLScalarType(
    "UUID",
    serialize=_serialize_uuid,
    parse_value=_parse_uuid,
    parse_literal=_parse_uuid_literal,
    description="8-4-4-4-12 hexadecimal string.",
)
DateTimeScalar = GraphQLScalarType(
    "DateTime",
    serialize=_serialize_datetime,
    parse_value=_parse_datetime,
    parse_literal=_parse_datetime_literal,
    description="ISO 8601 date/time string.",
)
JSONStringScalar = GraphQLScalarType(
    "JSONString",
    serialize=_serialize_json,
    parse_value=_parse_json,
    parse_literal=_parse_json_literal,
    description="JSON text in a string.",
)
BigIntScalar = GraphQLScalarType(
    "BigInt",
    serialize=_serialize_bigint,
    parse_value=_parse_bigint,
    parse_literal=_parse_bigint_literal,
    description="A signed integer of up to 64 bits (a JSON number).",
)
