"""Reading request bodies: JSON on any method, as the client sends it (spec 1.4).

A JSON body is bounded before it is parsed (``limits.max_json_body_bytes``, 413 beyond),
and once parsed it holds only valid Unicode and is nested at most
``limits.max_json_depth`` deep (400 otherwise; `crucible.validation`): parsing a huge
document would hold the event loop, and every other tenant's requests with it.
"""

from __future__ import annotations

from typing import Any

from quart import request

from crucible import errors
from crucible.api.context import manager_context
from crucible.api.flow_control import cap_body_limit
from crucible.validation import parse_json


async def raw_body() -> bytes:
    """The whole body (within the JSON body cap), read once and cached."""
    cap = manager_context().config.limits.max_json_body_bytes
    cap_body_limit(cap)
    data = await request.get_data(cache=True, as_text=False)
    raw = data if isinstance(data, bytes) else data.encode()
    if len(raw) > cap:
        # Bytes that arrived before the cap was lowered are still counted.
        raise errors.RequestTooLarge(f"A JSON body may be at most {cap} bytes.")
    return raw


async def parsed_body(problem: type[errors.ProblemError] = errors.InvalidAPIParameters) -> Any:
    """The body as any JSON value (None when empty); `problem` when it is not JSON.

    The content type is not checked: the client labels body-less requests
    ``text/plain`` and sends JSON bodies with GET and DELETE.
    """
    raw = await raw_body()
    if not raw.strip():
        return None
    try:
        return parse_json(raw, max_depth=manager_context().config.limits.max_json_depth)
    except errors.InvalidAPIParameters as exc:
        if problem is errors.InvalidAPIParameters:
            raise
        raise problem(exc.detail) from None


async def json_body() -> dict[str, Any]:
    """The body as a JSON object; an empty body is ``{}``."""
    parsed = await parsed_body()
    if parsed is None:
        return {}
    if not isinstance(parsed, dict):
        raise errors.InvalidAPIParameters("The body must be a JSON object.")
    return parsed


def optional_bool(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise errors.InvalidAPIParameters(f"'{key}' must be a boolean.")
    return value
