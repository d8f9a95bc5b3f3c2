"""Spec 1.1 legacy prefixes, and what the ASGI layer hands to routing and signing."""

from __future__ import annotations

from typing import Any

import pytest

from crucible.api.middleware import APIMiddleware, RequestTarget, route_path

GROUPS_V1 = ["kernel", "auth"]
GROUPS_V2_TO_V4 = ["kernel", "auth", "folders", "admin", "stream", "manager"]


@pytest.mark.parametrize("version", [1, 2, 3, 4])
@pytest.mark.parametrize(
    "group", sorted(set(GROUPS_V1) | set(GROUPS_V2_TO_V4))
)
def test_route_path_table(version: int, group: str) -> None:
    path = f"/v{version}/{group}/x/y"
    served = group in (GROUPS_V1 if version == 1 else GROUPS_V2_TO_V4)
    expected = (f"/{group}/x/y", version) if served else (path, None)
    assert route_path(path) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/kernel/create", ("/kernel/create", None)),
        ("/", ("/", None)),
        ("/v4", ("/v4", None)),
        ("/v4/", ("/v4/", None)),
        ("/v1/kernel/", ("/kernel/", 1)),
        ("/v1/kernel", ("/kernel", 1)),
        ("/v3/auth/test", ("/auth/test", 3)),
        ("/v2/admin/graphql", ("/admin/graphql", 2)),
        ("/v4/manager/status", ("/manager/status", 4)),
        ("/v4/stream/kernel/x/pty", ("/stream/kernel/x/pty", 4)),
        # Groups a version never had stay prefixed, so they 404.
        ("/v1/folders", ("/v1/folders", None)),
        ("/v1/admin/graphql", ("/v1/admin/graphql", None)),
        ("/v1/manager/status", ("/v1/manager/status", None)),
        # Unsupported majors are never stripped.
        ("/v5/kernel/create", ("/v5/kernel/create", None)),
        ("/v0/kernel/create", ("/v0/kernel/create", None)),
        ("/v04/kernel", ("/v04/kernel", None)),
        ("/v4/unknown", ("/v4/unknown", None)),
        ("/v4kernel", ("/v4kernel", None)),
        ("/version", ("/version", None)),
        ("/v4/v4/kernel", ("/v4/v4/kernel", None)),
    ],
)
def test_route_path_cases(path: str, expected: tuple[str, int | None]) -> None:
    assert route_path(path) == expected


class Recorder:
    def __init__(self) -> None:
        self.scopes: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.scopes.append(scope)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)


def http_scope(method: str, path: str, *, query: bytes = b"",
               headers: list[tuple[bytes, bytes]] | None = None,
               raw_path: bytes | None = None) -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": raw_path if raw_path is not None else path.encode(),
        "query_string": query,
        "headers": headers or [],
    }


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def call(scope: dict[str, Any], *, prefix: str = "") -> Recorder:
    recorder = Recorder()
    await APIMiddleware(recorder.app, path_prefix=prefix)(scope, receive, recorder.send)
    return recorder


async def test_raw_target_is_kept_for_signing() -> None:
    rec = await call(http_scope("GET", "/v4/kernel/my sess", query=b"app=jupyter+lab",
                                raw_path=b"/v4/kernel/my%20sess"))
    scope = rec.scopes[0]
    assert scope["path"] == "/kernel/my sess"
    assert scope["crucible"] == RequestTarget("/v4/kernel/my%20sess?app=jupyter+lab", ("GET",), 4)


async def test_method_override_and_report() -> None:
    rec = await call(http_scope("POST", "/auth/test", headers=[(b"x-method-override", b"put")]))
    assert rec.scopes[0]["method"] == "PUT"
    assert rec.scopes[0]["crucible"].sign_methods == ("PUT", "POST")
    rec = await call(http_scope("REPORT", "/auth/test"))
    assert rec.scopes[0]["method"] == "GET"
    assert rec.scopes[0]["crucible"].sign_methods == ("REPORT",)


async def test_preflight_is_answered_without_the_app() -> None:
    rec = await call(http_scope("OPTIONS", "/kernel/x", headers=[
        (b"origin", b"https://example.org"),
        (b"access-control-request-method", b"DELETE"),
        (b"access-control-request-headers", b"x-backendai-version"),
    ]))
    assert rec.scopes == []
    start = rec.sent[0]
    headers = dict(start["headers"])
    assert start["status"] == 204
    assert headers[b"access-control-allow-origin"] == b"*"
    assert b"DELETE" in headers[b"access-control-allow-methods"]
    assert headers[b"access-control-allow-headers"] == b"x-backendai-version"


async def test_cors_and_server_headers_on_every_response() -> None:
    rec = await call(http_scope("GET", "/"))
    headers = dict(rec.sent[0]["headers"])
    assert headers[b"access-control-allow-origin"] == b"*"
    assert headers[b"access-control-expose-headers"] == b"*"
    assert headers[b"server"] == b"BackendAI-API/v4.20181215"


@pytest.mark.parametrize(
    ("path", "routed", "raw_target"),
    [
        ("/api/v4/kernel/x", "/kernel/x", "/api/v4/kernel/x"),
        ("/api", "/", "/api"),
        # A proxy already stripped the prefix; the client signed it nevertheless.
        ("/kernel/x", "/kernel/x", "/api/kernel/x"),
        ("/apiary", "/apiary", "/api/apiary"),
    ],
)
async def test_path_prefix(path: str, routed: str, raw_target: str) -> None:
    rec = await call(http_scope("GET", path), prefix="/api")
    assert rec.scopes[0]["path"] == routed
    assert rec.scopes[0]["crucible"].raw_target == raw_target


async def test_lifespan_passes_through() -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope)

    scope = {"type": "lifespan"}
    await APIMiddleware(app)(scope, receive, None)
    assert seen == [scope]
