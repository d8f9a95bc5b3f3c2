"""Reading request bodies: JSON on any method, as the client sends it (spec 1.4)."""

from __future__ import annotations

import json
from typing import Any

from crucible import errors
from quart import request


async def json_body() -> dict[str, Any]:
    """The body as a JSON object; an empty body is ``{}``.

    The content type is not checked: the client labels body-less requests
    ``text/plain`` and sends JSON bodies with GET and DELETE.
    """
    raw = await request.get_data(cache=True, as_text=False)
    if not raw.strip():
        return {}
    try:
        parsed = json.loads(raw)
    except RecursionError:
        # Deep nesting exhausts the parser's stack; that is bad input, not a server fault.
        raise errors.InvalidAPIParameters("The body is nested too deeply.") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise errors.InvalidAPIParameters(f"The body is not valid JSON: {exc}.") from None
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


def optional_bool(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise errors.InvalidAPIParameters(f"'{key}' must be a boolean.")
    return value
