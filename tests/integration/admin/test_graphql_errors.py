"""Malformed GraphQL is always a 400 problem, never a 500 (spec 7.1); limits; crashes."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from crucible.graphql import data
from testlib.problems import assert_problem
from testlib.server import Harness

from .conftest import TIMEOUT, gql


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        ("{ keypair { access_key }", None),  # syntax
        ("query { keypair { no_such_field } }", None),
        ("query { no_such_root }", None),
        ("{ keypair }", None),  # an object needs a selection
        ("query($s: Int) { compute_sessions(status: $s) { sess_id } }", {"s": 1}),
        ("query($s: String) { compute_sessions(status: $s) { sess_id } }", {"s": 5}),
        ("query($s: String!) { compute_sessions(status: $s) { sess_id } }", {}),
        ('{ compute_sessions(status: "NOPE") { sess_id } }', None),
        ("{ compute_workers { sess_id } }", None),  # required argument missing
        ("subscription { images { name } }", None),
        ("query A { images { name } } query B { images { tag } }", None),  # which one?
        ('{ usage(period: "fortnight") { access_key } }', None),
        ('{ usage(start_date: "yesterday") { access_key } }', None),
        ('{ usage(start_date: "2024-02-01", end_date: "2024-01-01") { access_key } }', None),
        ("fragment F on Query { ...F images { name } } { ...F }", None),  # a cycle
        ("{ images { name } } fragment Unused on Query { images { tag } }", None),
        ("", None),
        ("\x00\x01", None),
    ],
)
async def test_invalid_documents_are_400(
    manager: Harness, query: str, variables: dict[str, Any] | None
) -> None:
    for client in (manager.client, manager.as_admin()):
        assert_problem(await gql(client, query, variables), 400, "invalid-api-params")


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"query": None},
        {"query": 5},
        {"query": ["{ images { name } }"]},
        {"query": "{ images { name } }", "variables": []},
        {"query": "{ images { name } }", "variables": "x"},
        {"query": "{ images { name } }", "operationName": 3},
        ["{ images { name } }"],
    ],
)
async def test_bad_bodies_are_400(manager: Harness, body: Any) -> None:
    with trio.fail_after(TIMEOUT):
        response = await manager.client.post("/admin/graphql", json=body)
    assert_problem(response, 400, "invalid-api-params")


async def test_unparseable_body_is_400(manager: Harness) -> None:
    with trio.fail_after(TIMEOUT):
        response = await manager.client.post(
            "/admin/graphql", content=b"{not json", content_type="application/json"
        )
    assert_problem(response, 400, "invalid-api-params")


async def test_huge_and_deep_documents_are_400(manager: Harness) -> None:
    megabyte = "{ images { name } }" + " " * (1024 * 1024)
    many_tokens = "{ " + " ".join(f"a{i}: images {{ name }}" for i in range(4000)) + " }"
    deep_braces = "{ keypair " + "{ compute_sessions " * 5000 + "}" * 5001
    deep_lists = "{ keypairs(user_id: " + "[" * 20000 + "]" * 20000 + ") { user_id } }"
    deep_selection = "{ keypair { compute_sessions { workers { sess_id } } } }"
    for query in (megabyte, many_tokens, deep_braces, deep_lists):
        body = assert_problem(await gql(manager.as_admin(), query), 400, "invalid-api-params")
        assert "Traceback" not in body["detail"]
    assert (await gql(manager.client, deep_selection)).status_code == 200


@pytest.mark.manager_config({"graphql": {"max_depth": 3}})
async def test_depth_limit_counts_through_fragments(manager: Harness) -> None:
    ok = "{ keypair { compute_sessions { sess_id } } }"
    assert (await gql(manager.client, ok)).status_code == 200
    too_deep = "{ keypair { compute_sessions { workers { sess_id } } } }"
    assert_problem(await gql(manager.client, too_deep), 400, "invalid-api-params")
    via_fragment = (
        "fragment S on ComputeSession { workers { sess_id } } "
        "{ keypair { compute_sessions { ...S } } }"
    )
    body = assert_problem(await gql(manager.client, via_fragment), 400, "invalid-api-params")
    assert "deeper than 3" in body["detail"]


async def test_fragment_explosion_is_refused(manager: Harness) -> None:
    # Each fragment uses the previous one ten times through aliases: 10^6 fields.
    lines = ["fragment F0 on ComputeSession { sess_id }"]
    for i in range(1, 7):
        spreads = " ".join(f"w{j}: workers {{ ...F{i - 1} }}" for j in range(10))
        lines.append(f"fragment F{i} on ComputeSession {{ {spreads} }}")
    lines.append("{ keypair { compute_sessions { ...F6 } } }")
    with trio.fail_after(TIMEOUT):
        body = assert_problem(
            await gql(manager.client, "\n".join(lines)), 400, "invalid-api-params"
        )
    assert "fields" in body["detail"] or "deeper" in body["detail"]


async def test_resolver_crash_is_500_general_error(
    manager: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_args: Any) -> dict[Any, Any]:
        raise RuntimeError("secret internals")

    monkeypatch.setitem(data.FETCHERS, "images", (broken, []))
    body = assert_problem(await gql(manager.client, "{ images { name } }"), 500, "general-error")
    assert "secret internals" not in str(body)


async def test_mutations_while_frozen_are_503(manager: Harness) -> None:
    admin = manager.as_admin()
    mutation = (
        'mutation { create_keypair(user_id: "frozen@test", props: {concurrency_limit: 1, '
        "rate_limit: 10}) { ok msg } }"
    )
    with trio.fail_after(TIMEOUT):
        assert (await admin.put("/manager/status", json={"status": "frozen"})).status_code == 204
    assert_problem(await gql(admin, mutation), 503, "server-frozen")
    # Queries keep working while frozen (spec 1.8).
    assert (await gql(admin, "{ images { name } }")).status_code == 200
    # An owner's mutation is invalid before it is frozen: 400 either way.
    assert_problem(await gql(manager.client, mutation), 400, "invalid-api-params")
    assert (
        await manager.db.fetchval("SELECT count(*) FROM keypairs WHERE user_id = 'frozen@test'")
        == 0
    )
    with trio.fail_after(TIMEOUT):
        assert (await admin.put("/manager/status", json={"status": "running"})).status_code == 204
    assert (await gql(admin, mutation)).json() == {"create_keypair": {"ok": True, "msg": ""}}


async def test_unauthenticated_is_401(manager: Harness) -> None:
    with trio.fail_after(TIMEOUT):
        response = await manager.client.post(
            "/admin/graphql", json={"query": "{ images { name } }"}, sign=False
        )
    assert_problem(response, 401, "auth-failed")
