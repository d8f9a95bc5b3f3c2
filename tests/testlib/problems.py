"""Assertions about RFC 7807 problem responses (spec 1.7)."""

from __future__ import annotations

from typing import Any

import httpx

from crucible.errors import PROBLEM_TYPE_PREFIX


def assert_problem(response: httpx.Response, status: int, type_suffix: str) -> dict[str, Any]:
    """The response is `status` with a well-formed problem document of that type."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].split(";")[0] == "application/problem+json"
    assert "Traceback" not in response.text
    body = response.json()
    assert isinstance(body, dict), body
    assert body["type"] == PROBLEM_TYPE_PREFIX + type_suffix, body
    # The CLI's error printer indexes `title` unconditionally (spec 1.7 trap).
    for key in ("title", "detail"):
        assert isinstance(body.get(key), str) and body[key], body
    return body
