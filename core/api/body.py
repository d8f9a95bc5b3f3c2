"""Reading request bodies: JSON on any method, as the client sends it (spec 1.4)."""

from __future__ import annotations

import json
from typing import Any

from quart import request

from crucible import errors


async def raw_body() -> bytes:
    """The whole body (within the configured size cap), read once and cached."""
    data = await request.get_data(cache=True, as_text=False)
    return data if isinstance(data, bytes) else data.encode()


async def parsed_body(problem: type[errors.ProblemError] = errors.InvalidAPIParameters) -> Any:
    """The body as any JSON value (None when empty); `problem` when it is not JSON.

    The content type is not checked: the client labels body-less requests
    ``text/plain`` and sends JSON bodies with GET and DELETE.
    """
    raw = await raw_body()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except RecursionError:
        # Deep nesting exhausts the parser's stack; that is bad input, not a server fault.
        raise problem("The body is nested too deeply.") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise problem(f"The body is not valid JSON: {exc}.") from None


async def json_body() -> dict[str, Any]:
    """The body as a JSON object; an empty body is ``{}``."""
    parsed = await parsed_body()
    if parsed is None:
        return {}
    if not isinstance(parsed, dict):
        raise errors.InvalidAPIParameters("The body must be a JSON object.")
    return parsed


def optional_str(body: dict[str, Any], key: str, default: str | None = None) -> str | None:
    """`body[key]` when it is a string, `default` when missing or null; else 400."""
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, str):
        raise errors.InvalidAPIParameters(f"'{key}' must be a string.")
    return value


def optional_object(body: dict[str, Any], key: str) -> dict[str, Any]:
    """`body[key]` when it is an object, ``{}`` when missing or null; else 400."""
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise errors.InvalidAPIParameters(f"'{key}' must be an object.")
    return value


def optional_bool(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise errors.InvalidAPIParameters(f"'{key}' must be a boolean.")
    return value
