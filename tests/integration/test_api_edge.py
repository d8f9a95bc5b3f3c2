"""Issue 9, findings 3 and 5: NULs and other unstorable input in URLs and bodies are 400s
checked before the database sees them, never 500s; a database refusal that slips past
the edge is still a 400. (Folder list caps: vfolders/test_request_limits.py; create and
execute against a real agent: sessions/test_bad_requests.py.)"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import pytest
import trio
from trio_websocket import ConnectionRejected, open_websocket_url

from crucible import errors
from crucible.db.pool import Database
from testlib.problems import assert_problem
from testlib.server import Harness
from testlib.signing import websocket_headers

TIMEOUT = 10

#: Tokens no session can have; the first is the payload of finding 3.
BAD_TOKENS = ["%00abcd", "abcd%00", "ab", "x" * 65, "sp%20ace", "-lead", "%C3%BCn%C3%AF", "abc%0A"]
#: Every REST route that names a session, with a body that is fine in itself.
SESSION_ROUTES: list[tuple[str, str, dict[str, object] | None]] = [
    ("GET", "", None),
    ("POST", "", {"mode": "query", "code": "print(1)"}),
    ("PATCH", "", None),
    ("DELETE", "", None),
    ("GET", "/files", {"path": "."}),
    ("GET", "/download", {"files": ["a.txt"]}),
    ("GET", "/logs", None),
    ("POST", "/interrupt", None),
    ("POST", "/complete", {"code": "pri", "options": {"row": 0, "col": 3}}),
]
STREAM_ROUTES = ["execute", "events", "pty"]
UPLOAD_BODY = b"--b\r\nContent-Disposition: form-data; name=src; filename=a\r\n\r\nx\r\n--b--\r\n"


async def still_serving(manager: Harness) -> None:
    response = await manager.client.get("/")
    assert response.status_code == 200, response.text


async def _session_request(
    manager: Harness, method: str, token: str, suffix: str, body: dict[str, object] | None
) -> httpx.Response:
    with trio.fail_after(TIMEOUT):
        return await manager.client.request(method, f"/kernel/{token}{suffix}", json=body)


@pytest.mark.parametrize("token", BAD_TOKENS)
async def test_malformed_session_tokens_are_400(manager: Harness, token: str) -> None:
    for method, suffix, body in SESSION_ROUTES:
        response = await _session_request(manager, method, token, suffix, body)
        problem = assert_problem(response, 400, "invalid-api-params")
        assert "kernelId" in problem["detail"], (method, suffix, problem)
    upload = await manager.client.post(
        f"/kernel/{token}/upload",
        content=UPLOAD_BODY,
        content_type="multipart/form-data; boundary=b",
    )
    assert_problem(upload, 400, "invalid-api-params")
    await still_serving(manager)


async def test_well_formed_unknown_tokens_stay_404(manager: Harness) -> None:
    for method, suffix, body in SESSION_ROUTES:
        response = await _session_request(manager, method, "nosuchsession", suffix, body)
        assert_problem(response, 404, "kernel-not-found")


@pytest.mark.parametrize("token", ["%00abcd", "ab"])
async def test_malformed_stream_tokens_are_400(manager: Harness, token: str) -> None:
    host = urlsplit(manager.url).netloc
    for route in STREAM_ROUTES:
        rel_url = f"/stream/kernel/{token}/{route}"
        with trio.fail_after(TIMEOUT), pytest.raises(ConnectionRejected) as caught:
            async with open_websocket_url(
                manager.url.replace("http://", "ws://") + rel_url,
                extra_headers=websocket_headers(manager.user, host, rel_url),
            ):
                pass
        assert caught.value.status_code == 400, (route, caught.value.body)
    await still_serving(manager)


@pytest.mark.parametrize("name", ["%00x", "x%00", "a" * 65, "sp%20ace", "-x"])
async def test_malformed_folder_names_in_urls_are_400(manager: Harness, name: str) -> None:
    client = manager.client
    with trio.fail_after(TIMEOUT):
        for method, suffix, body in [
            ("GET", "", None),
            ("DELETE", "", None),
            ("GET", "/files", {"path": "."}),
            ("POST", "/mkdir", {"path": "d"}),
            ("GET", "/download", {"files": ["a"]}),
            ("DELETE", "/delete_files", {"files": ["a"]}),
            ("POST", "/invite", {"perm": "ro", "user_ids": ["bob@test"]}),
        ]:
            response = await client.request(method, f"/folders/{name}{suffix}", json=body)
            assert_problem(response, 400, "invalid-api-params")
        await still_serving(manager)


@pytest.mark.parametrize(
    "body",
    [
        {"mode": "query", "code": "x", "runId": "a\x00b"},
        {"mode": "batch", "code": "", "options": {"build": "make\x00", "exec": "*"}},
        {"mode": "complete", "code": "x", "options": {"line": "a\x00"}},
        {"mode": "complete", "code": "x", "options": {"row": 10**30}},
        {"mode": "query", "code": "\ud800"},
        {"mode": "query", "code": "x" * (256 * 1024 + 1)},
    ],
    ids=range(6),
)
async def test_unstorable_execute_bodies_are_400(
    manager: Harness, body: dict[str, object]
) -> None:
    response = await _session_request(manager, "POST", "nosuchsession", "", body)
    assert_problem(response, 400, "invalid-api-params")


@pytest.mark.parametrize(
    "body",
    [
        {"lang": "python", "clientSessionToken": "abcd\n"},
        {"lang": "python", "clientSessionToken": "abcd", "tag": "t\x00"},
        {"lang": "py\x00thon", "clientSessionToken": "abcd"},
        {"lang": "python", "clientSessionToken": "abcd", "config": {"environ": {"A": "b\x00"}}},
        {"lang": "python", "clientSessionToken": "abcd", "config": {"environ": {"": "x"}}},
        {"lang": "python", "clientSessionToken": "abcd", "config": {"environ": {"A=B": "x"}}},
        {"lang": "python", "clientSessionToken": "abcd", "config": {"mounts": ["x\x00"]}},
        {"lang": "python", "clientSessionToken": "abcd", "config": {"mounts": ["x:y\n"]}},
        {"lang": "python", "clientSessionToken": "abcd", "config": {"instanceCores": 10**400}},
    ],
    ids=range(9),
)
async def test_unstorable_create_bodies_are_400(manager: Harness, body: dict[str, object]) -> None:
    with trio.fail_after(TIMEOUT):
        response = await manager.client.post("/kernel/create", json=body)
    assert_problem(response, 400, "invalid-api-params")
    assert await manager.db.fetchval("SELECT count(*) FROM kernels") == 0


@pytest.mark.parametrize(
    "raw",
    [
        b'{"echo": 1' + b"1" * 5000 + b"}",  # more digits than Python converts
        b'{"echo": "\\ud800"}',  # a lone surrogate: valid JSON, not valid Unicode
        b'{"\\udfff": 1}',
        b"[" * 40 + b"]" * 40,  # deeper than limits.max_json_depth
    ],
    ids=["digits", "surrogate", "surrogate-key", "depth"],
)
async def test_unreadable_json_is_400_everywhere(manager: Harness, raw: bytes) -> None:
    with trio.fail_after(TIMEOUT):
        for method, path, problem in [
            ("POST", "/auth/test", "invalid-auth-params"),
            ("POST", "/kernel/create", "invalid-api-params"),
            ("POST", "/folders", "invalid-api-params"),
            ("POST", "/admin/graphql", "invalid-api-params"),
        ]:
            response = await manager.client.request(
                method, path, content=raw, content_type="application/json"
            )
            assert_problem(response, 400, problem)
        await still_serving(manager)


@pytest.mark.manager_config({"limits": {"max_json_body_bytes": 2048}})
async def test_json_bodies_have_their_own_cap(manager: Harness) -> None:
    with trio.fail_after(TIMEOUT):
        big = await manager.client.post("/kernel/create", json={"lang": "x" * 4096})
        assert_problem(big, 413, "request-too-large")
        small = await manager.client.post("/auth/test", json={"echo": "x" * 100})
        assert small.status_code == 200


# -- GraphQL ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        ('{ keypairs(user_id: "a\\u0000b") { access_key } }', None),
        ("query($u: String) { keypairs(user_id: $u) { access_key } }", {"u": "a\x00b"}),
        ('{ keypair(access_key: "AK\\u0000") { user_id } }', None),
        ('{ compute_workers(sess_id: "x\\u0000") { sess_id } }', None),
        ('mutation { create_keypair(user_id: "n\\u0000l", props: {}) { ok msg } }', None),
        (
            "mutation($p: ResourcePolicyInput!) "
            '{ modify_resource_policy(name: "default", props: $p) { ok msg } }',
            {"p": {"max_memory_bytes": 2**70}},
        ),
        (
            'mutation { modify_resource_policy(name: "default", '
            "props: {max_vfolder_size_bytes: 99999999999999999999999}) { ok msg } }",
            None,
        ),
        (
            'mutation { modify_keypair(access_key: "AKIA", '
            "props: {rate_limit: " + "9" * 5000 + "}) { ok msg } }",
            None,
        ),
    ],
    ids=range(8),
)
async def test_graphql_unstorable_input_is_400(
    manager: Harness, query: str, variables: dict[str, object] | None
) -> None:
    body: dict[str, object] = {"query": query}
    if variables is not None:
        body["variables"] = variables
    with trio.fail_after(TIMEOUT):
        response = await manager.as_admin().post("/admin/graphql", json=body)
    assert_problem(response, 400, "invalid-api-params")
    await still_serving(manager)


# -- the net under the edge: crucible.db ------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "value"),
    [
        ("SELECT $1::text", "a\x00b"),  # CharacterNotInRepertoireError
        ("SELECT $1::text", "\ud800"),  # the driver cannot encode it
        ("SELECT $1::jsonb", '"\\u0000"'),  # UntranslatableCharacterError
        ("SELECT $1::text::int", "x"),  # InvalidTextRepresentationError
        ("SELECT $1::text::int", "99999999999"),  # NumericValueOutOfRangeError
        ("SELECT $1::text::date", "yesterday-ish"),  # InvalidDatetimeFormatError
        ("SELECT $1::bigint", 2**70),  # past 64 bits, refused by the driver
    ],
    ids=range(7),
)
async def test_database_data_errors_become_unstorable_value(
    db: Database, sql: str, value: object
) -> None:
    with trio.fail_after(TIMEOUT):
        with pytest.raises(errors.UnstorableValue) as caught:
            await db.fetchval(sql, value)
        assert caught.value.status == 400
        assert caught.value.type_suffix == "invalid-api-params"
        # Inside a transaction too, and the connection is fine afterwards.
        with pytest.raises(errors.UnstorableValue):
            async with db.transaction() as conn:
                await conn.fetchval(sql, value)
        assert await db.fetchval("SELECT 1") == 1
