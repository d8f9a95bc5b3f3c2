"""Hostile and broken requests: always a problem document, never a 500 or a traceback,
and the server keeps serving afterwards."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from crucible import API_VERSION
from testlib.problems import assert_problem
from testlib.server import Harness, make_config, open_standalone_harness
from testlib.signing import authorization, client_date

TIMEOUT = 10


async def still_serving(manager: Harness) -> None:
    response = await manager.client.get("/auth/test")
    assert response.status_code == 200, response.text


BAD_JSON = [
    b"{",
    b"not json",
    b"\xff\xfe\x00garbage",
    b'{"status": "frozen",}',
    b"{'status': 'frozen'}",
    b"[" * 100_000,  # deep nesting must not blow the parser's stack into a 500
    b'{"a": ' * 50_000 + b"1" + b"}" * 50_000,
    b"NaN",
]
WRONG_TYPES: list[Any] = [[], ["status"], "frozen", 1, None, True, {"status": {"x": 1}}]


@pytest.mark.parametrize("body", BAD_JSON, ids=range(len(BAD_JSON)))
async def test_malformed_json_to_put_status(manager: Harness, body: bytes) -> None:
    with trio.fail_after(TIMEOUT):
        response = await manager.as_admin().put(
            "/manager/status", content=body, content_type="application/json"
        )
        assert_problem(response, 400, "invalid-api-params")
        await still_serving(manager)


@pytest.mark.parametrize("body", BAD_JSON, ids=range(len(BAD_JSON)))
async def test_malformed_json_to_auth_test(manager: Harness, body: bytes) -> None:
    with trio.fail_after(TIMEOUT):
        response = await manager.client.post(
            "/auth/test", content=body, content_type="application/json"
        )
        if body == b"NaN":
            # Python's parser accepts NaN; a number is simply not an object with "echo".
            assert response.status_code == 200
        else:
            assert_problem(response, 400, "invalid-auth-params")
        await still_serving(manager)


@pytest.mark.parametrize("value", WRONG_TYPES, ids=range(len(WRONG_TYPES)))
async def test_wrong_json_types(manager: Harness, value: Any) -> None:
    with trio.fail_after(TIMEOUT):
        response = await manager.as_admin().put(
            "/manager/status", content=json.dumps(value).encode(), content_type="application/json"
        )
        assert_problem(response, 400, "invalid-api-params")
        echo = await manager.client.post("/auth/test", json=value)
        assert echo.status_code == 200, echo.text
        await still_serving(manager)


@pytest.mark.manager_config({"manager": {"max_body_bytes": 1024}})
async def test_oversized_body(manager: Harness) -> None:
    big = json.dumps({"echo": "x" * 4096}).encode()
    with trio.fail_after(TIMEOUT):
        for method, path, client in (
            ("POST", "/auth/test", manager.client),
            ("PUT", "/manager/status", manager.as_admin()),
        ):
            response = await client.request(
                method, path, content=big, content_type="application/json"
            )
            assert_problem(response, 413, "request-too-large")
        small = await manager.client.post("/auth/test", json={"echo": "x" * 100})
        assert small.status_code == 200
        await still_serving(manager)


@pytest.mark.manager_config({"manager": {"max_body_bytes": 1024}})
async def test_oversized_chunked_body(manager: Harness) -> None:
    # No Content-Length: the limit must hold while the body streams in. A raw socket,
    # because the HTTP client would not read the early answer before finishing its upload.
    raw_date = client_date()
    host = manager.client.host
    authz = authorization(
        manager.user, method="POST", rel_url="/auth/test", raw_date=raw_date,
        host=host, content_type="application/json",
    )
    head = (
        f"POST /auth/test HTTP/1.1\r\nHost: {host}\r\nDate: {raw_date}\r\n"
        f"Content-Type: application/json\r\nX-BackendAI-Version: {API_VERSION}\r\n"
        f"Authorization: {authz}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    port = int(host.rpartition(":")[2])
    with trio.fail_after(TIMEOUT):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(head.encode())
            for _ in range(64):
                await stream.send_all(b"100\r\n" + b"x" * 256 + b"\r\n")
            await stream.send_all(b"0\r\n\r\n")
            received = b""
            while b"\r\n\r\n" not in received:
                chunk = await stream.receive_some(65536)
                assert chunk, received
                received += chunk
        status_line, _, rest = received.partition(b"\r\n")
        assert status_line.split()[1] == b"413", received
        assert b"content-type: application/problem+json" in rest.lower()
        await still_serving(manager)


UNKNOWN_ROUTES = [
    "GET /nonexistent",
    "GET /kernel/../../etc/passwd",
    "POST /v9/kernel",
    "GET /v4/nope",
    "GET /%ff%fe",
    "GET /" + "a" * 4000,
    "DELETE /v1/folders/x",
    "GET /auth/test/extra",
]
WRONG_METHODS = [
    "DELETE /",
    "POST /",
    "PUT /v4",
    "DELETE /auth/test",
    "PATCH /manager/status",
    "POST /manager/status",
]


@pytest.mark.parametrize(
    ("route", "status"),
    [(route, 404) for route in UNKNOWN_ROUTES] + [(route, 405) for route in WRONG_METHODS],
    ids=lambda value: str(value)[:60],
)
async def test_unknown_routes_and_wrong_methods(
    manager: Harness, route: str, status: int
) -> None:
    method, path = route.split(" ", 1)
    with trio.fail_after(TIMEOUT):
        response = await manager.client.request(method, path)
        if status == 404:
            assert_problem(response, 404, "generic-not-found")
        else:
            assert_problem(response, 405, "method-not-allowed")
            assert response.headers.get("Allow")
        await still_serving(manager)


async def test_absurd_method_override(manager: Harness) -> None:
    with trio.fail_after(TIMEOUT):
        for value in ("FROB", "", "get\tpost", "X" * 500, "GET, POST"):
            response = await manager.client.post(
                "/auth/test", headers={"X-Method-Override": value}
            )
            assert response.status_code in (200, 400, 404, 405), (value, response.text)
            if response.status_code >= 400:
                assert response.headers["content-type"] == "application/problem+json"
        await still_serving(manager)


# -- header garbage, generated ---------------------------------------------------------------
# pytest-trio hands one fixture value to every Hypothesis example, so these tests build
# their own manager per example and try a batch of values against it.

# What an HTTP/1.1 client can put in a header value: visible latin-1, inner spaces, tabs.
header_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=3000,
).map(str.strip)
batches = st.lists(header_text, min_size=1, max_size=25)
AUTH_HEADERS = st.sampled_from(["Authorization", "Date", "X-BackendAI-Version"])


def check_auth_problem(response: httpx.Response) -> None:
    assert response.status_code in (400, 401), response.text
    assert_problem(
        response,
        response.status_code,
        "invalid-auth-params" if response.status_code == 400 else "auth-failed",
    )


@settings(max_examples=4)
@given(header=AUTH_HEADERS, values=batches)
async def test_garbage_auth_headers(
    pg_dsn: str, tmp_path: Path, header: str, values: list[str]
) -> None:
    config = make_config(pg_dsn, tmp_path / "state")
    with trio.fail_after(30):
        async with open_standalone_harness(config) as manager:
            for value in values:
                response = await manager.client.get(
                    "/auth/test", headers={header: value.encode("latin-1")}
                )
                check_auth_problem(response)
            await still_serving(manager)


@settings(max_examples=4)
@given(values=batches)
async def test_garbage_credentials(pg_dsn: str, tmp_path: Path, values: list[str]) -> None:
    config = make_config(pg_dsn, tmp_path / "state")
    with trio.fail_after(30):
        async with open_standalone_harness(config) as manager:
            for value in values:
                authz = f"BackendAI signMethod=HMAC-SHA256, credential={value}".encode("latin-1")
                response = await manager.client.get("/auth/test", headers={"Authorization": authz})
                check_auth_problem(response)
                # Public endpoints ignore the same garbage entirely.
                response = await manager.client.get(
                    "/", headers={"Authorization": authz, "Date": value.encode("latin-1")}
                )
                assert response.status_code == 200
            await still_serving(manager)
