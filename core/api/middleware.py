"""ASGI layer in front of Quart's router: legacy prefixes, method overrides and CORS.

It rewrites only what routing sees (``scope["path"]``, ``scope["method"]``) and keeps
what authentication needs (the raw request-target and every method the client may
have signed) under ``scope["crucible"]``.
"""

from __future__ import annotations

import re
from typing import Any

import attrs

from crucible import API_VERSION

Scope = dict[str, Any]
Receive = Any
Send = Any

# Route groups reachable under each legacy version prefix (spec 1.1).
_LEGACY_GROUPS: dict[int, frozenset[str]] = {
    1: frozenset({"kernel", "auth", "authorize"}),
    **{
        n: frozenset(
            {"kernel", "auth", "authorize", "folders", "admin", "stream", "manager"}
        )
        for n in (2, 3, 4)
    },
}
# No leading zeros: "/v04/..." is not an alias of "/v4/..." and must 404.
_VERSION_PREFIX_RE = re.compile(r"^/v([1-9]\d*|0)(/.*)?$")
_CORS_HEADERS = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-expose-headers", b"*"),
]
_SERVER_HEADER = (b"server", f"BackendAI-API/{API_VERSION}".encode())


@attrs.frozen
class RequestTarget:
    """What the client put on the request line, before any rewriting."""

    #: Raw path plus ``?query``: line 2 of the string to sign.
    raw_target: str
    #: Methods the signature may have been made with, the preferred first (spec 1.3).
    sign_methods: tuple[str, ...]
    #: The version prefix the request came through (``/v3/kernel`` → 3), if any.
    legacy_version: int | None


def route_path(path: str) -> tuple[str, int | None]:
    """Map a request path to the path the router sees; returns ``(path, version)``.

    ``/vN`` alone stays (it is the version endpoint). ``/vN/<group>...`` loses its prefix
    when that group exists under version N; anything else is left as is, so it 404s.
    """
    match = _VERSION_PREFIX_RE.match(path)
    if match is None:
        return path, None
    version, rest = int(match[1]), match[2]
    if not rest or rest == "/":
        return path, None
    group = rest.split("/", 2)[1]
    if group in _LEGACY_GROUPS.get(version, frozenset()):
        return rest, version
    return path, None


class APIMiddleware:
    def __init__(self, app: Any, *, path_prefix: str = "") -> None:
        self.app = app
        self.path_prefix = path_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        scope = dict(scope)
        raw_path = scope.get("raw_path") or scope["path"].encode()
        raw_target = raw_path.decode("latin-1")
        if scope.get("query_string"):
            raw_target += "?" + scope["query_string"].decode("latin-1")
        path = scope["path"]
        if self.path_prefix:
            if path == self.path_prefix or path.startswith(self.path_prefix + "/"):
                path = path[len(self.path_prefix) :] or "/"
            else:
                # A proxy stripped the prefix; the client still signed it.
                raw_target = self.path_prefix + raw_target
        path, version = route_path(path)
        scope["path"] = path
        scope["raw_path"] = path.encode()

        method = scope.get("method", "GET").upper()
        sign_methods: tuple[str, ...] = (method,)
        if scope["type"] == "http":
            override = _header(scope, b"x-method-override")
            if override:
                override_method = override.strip().upper()
                sign_methods = (override_method, method)
                method = override_method
            if method == "REPORT":
                # WebDAV REPORT is "GET with a JSON body" (spec 1.3).
                method = "GET"
            elif method == "OPTIONS" and _header(scope, b"access-control-request-method"):
                await _send_preflight(scope, send)
                return
            scope["method"] = method
        scope["crucible"] = RequestTarget(raw_target, sign_methods, version)

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [*message.get("headers", []), *_CORS_HEADERS, _SERVER_HEADER]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


async def _send_preflight(scope: Scope, send: Send) -> None:
    requested = _header(scope, b"access-control-request-headers") or "*"
    headers = [
        *_CORS_HEADERS,
        (b"access-control-allow-methods", b"GET, POST, PUT, PATCH, DELETE, REPORT, OPTIONS"),
        (b"access-control-allow-headers", requested.encode("latin-1")),
        (b"access-control-max-age", b"86400"),
        _SERVER_HEADER,
    ]
    await send({"type": "http.response.start", "status": 204, "headers": headers})
    await send({"type": "http.response.body", "body": b""})
