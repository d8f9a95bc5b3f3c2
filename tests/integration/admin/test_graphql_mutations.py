"""Keypair and resource-policy mutations, usage statistics, and policy enforcement."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import trio

from crucible.keypairs import KeypairRepository, NewKeypair
from testlib.problems import assert_problem
from testlib.server import Harness
from testlib.signing import Credentials

from .conftest import TIMEOUT, data_of, gql, insert_agent, insert_session

G8 = (
    "mutation($user_id: UID, $input: KeyPairInput!) { create_keypair(user_id: $user_id, "
    "props: $input) { ok msg keypair { access_key secret_key } } }"
)


def g8_input(**overrides: object) -> dict[str, object]:
    values: dict[str, object] = {
        "is_active": True,
        "is_admin": False,
        "resource_policy": None,
        "rate_limit": 5000,
        "concurrency_limit": 1,
    }
    values.update(overrides)
    return values


async def test_create_keypair_g8_and_the_new_key_works(manager: Harness) -> None:
    admin = manager.as_admin()
    body = data_of(
        await gql(
            admin,
            G8.replace("UID", "Int!"),
            {"user_id": 42, "input": g8_input(concurrency_limit=2, rate_limit=100)},
        )
    )
    result = body["create_keypair"]
    assert list(result) == ["ok", "msg", "keypair"] and result["ok"] is True
    access_key = result["keypair"]["access_key"]
    assert access_key.startswith("AKIA") and len(access_key) == 20
    assert len(result["keypair"]["secret_key"]) == 40
    stored = await KeypairRepository(manager.db).get(access_key)
    assert stored is not None and stored.user_id == "42"
    assert stored.concurrency_limit == 2 and stored.rate_limit == 100
    new_client = manager.client.with_credentials(
        Credentials(access_key, result["keypair"]["secret_key"])
    )
    mine = data_of(await gql(new_client, "{ keypair { user_id rate_limit } }"))
    assert mine == {"keypair": {"user_id": "42", "rate_limit": 100}}
    with trio.fail_after(TIMEOUT):
        response = await new_client.get("/auth/test")
    assert response.headers["X-RateLimit-Limit"] == "100"


async def test_create_keypair_refusals_are_ok_false(manager: Harness) -> None:
    admin = manager.as_admin()
    for user_id, values in (
        ("x@test", g8_input(resource_policy="no-such-policy")),
        ("x@test", g8_input(concurrency_limit=-1)),
        ("", g8_input()),
    ):
        result = data_of(
            await gql(admin, G8.replace("UID", "String!"), {"user_id": user_id, "input": values})
        )["create_keypair"]
        assert result["ok"] is False and result["keypair"] is None and result["msg"]


async def test_modify_and_delete_keypair(manager: Harness) -> None:
    admin = manager.as_admin()
    victim = await KeypairRepository(manager.db).create(NewKeypair("victim@test"))
    modify = (
        "mutation($ak: String!, $props: KeyPairInput!) "
        "{ modify_keypair(access_key: $ak, props: $props) { ok msg } }"
    )
    result = data_of(
        await gql(admin, modify, {"ak": victim.access_key, "props": {"is_active": False}})
    )
    assert result == {"modify_keypair": {"ok": True, "msg": ""}}
    changed = await KeypairRepository(manager.db).get(victim.access_key)
    assert changed is not None and changed.is_active is False
    assert changed.concurrency_limit == victim.concurrency_limit  # null/absent: unchanged
    missing = data_of(await gql(admin, modify, {"ak": "AKIANOSUCHKEY0000000", "props": {}}))
    assert missing["modify_keypair"]["ok"] is False
    delete = "mutation($ak: String!) { delete_keypair(access_key: $ak) { ok msg } }"
    await insert_session(manager.db, victim.access_key, "still-running")
    refused = data_of(await gql(admin, delete, {"ak": victim.access_key}))["delete_keypair"]
    assert refused["ok"] is False and "live session" in refused["msg"]
    await manager.db.execute("UPDATE kernels SET status = 'TERMINATED'")
    assert data_of(await gql(admin, delete, {"ak": victim.access_key})) == {
        "delete_keypair": {"ok": True, "msg": ""}
    }
    assert await KeypairRepository(manager.db).get(victim.access_key) is None
    itself = data_of(await gql(admin, delete, {"ak": manager.admin.access_key}))
    assert itself["delete_keypair"]["ok"] is False


async def test_statement_count_is_constant(manager: Harness) -> None:
    """N+1 check: nested lists cost one statement per kind and level, whatever N is."""
    repo = KeypairRepository(manager.db)
    ctx = manager.server.components
    query = (
        "{ keypairs { access_key concurrency_used vfolders { name } "
        "compute_sessions { sess_id workers { sess_id } } } agents { id computations "
        "{ sess_id } } images { name } }"
    )
    admin = await repo.get(manager.admin.access_key)
    assert admin is not None
    await insert_agent(manager.db)
    counts = []
    for extra in (1, 20):
        for i in range(extra):
            kp = await repo.create(NewKeypair(f"n{extra}-{i}@test"))
            for j in range(3):
                await insert_session(
                    manager.db, kp.access_key, f"s{extra}-{i}-{j}", agent_id="agent-1"
                )
                await insert_session(
                    manager.db,
                    kp.access_key,
                    f"s{extra}-{i}-{j}",
                    role="worker",
                    agent_id="agent-1",
                )
        with trio.fail_after(TIMEOUT):
            outcome = await ctx.graphql.run(admin, {"query": query})
        sessions = sum(len(kp["compute_sessions"]) for kp in outcome.data["keypairs"])
        assert sessions >= 3 * extra
        counts.append(outcome.statements)
    # keypairs, agents, images; then concurrency, vfolders, sessions, computations (one
    # statement each for all parents); then workers of every session at once.
    assert counts[0] == counts[1] == 8, counts


async def test_usage_per_period(manager: Harness, keypairs: KeypairRepository) -> None:
    user, admin_key = manager.user.access_key, manager.admin.access_key
    today = datetime.now(UTC).date()
    rows = [
        (user, date(2024, 1, 30), 2, 10, 1000, 100, 300, 3, 7),
        (user, date(2024, 1, 31), 1, 5, 500, 400, 100, 1, 9),
        (user, date(2024, 2, 1), 4, 1, 10, 50, 0, 0, 0),
        (admin_key, date(2024, 1, 31), 9, 9, 9, 9, 9, 1, 0),
        (user, today, 1, 1, 1, 1, 0, 0, 5),
    ]
    await manager.db.executemany(
        """INSERT INTO usage_daily (access_key, day, sessions_started, executions, cpu_time_ms,
               mem_peak_bytes, mem_sample_sum, mem_samples, storage_bytes)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
        rows,
    )
    fields = (
        "access_key period_start period_end sessions_started executions cpu_time_ms "
        "mem_peak_bytes mem_avg_bytes storage_bytes"
    )
    query = (
        "query($s: String, $e: String, $p: String) { usage(start_date: $s, end_date: $e, "
        "period: $p) { " + fields + " } }"
    )
    daily = data_of(await gql(manager.client, query, {"s": "2024-01-30", "e": "2024-02-01"}))
    assert [(r["period_start"], r["sessions_started"]) for r in daily["usage"]] == [
        ("2024-01-30", 2),
        ("2024-01-31", 1),
        ("2024-02-01", 4),
    ]
    assert daily["usage"][0]["mem_avg_bytes"] == 100 and daily["usage"][0]["storage_bytes"] == 7
    monthly = data_of(
        await gql(manager.client, query, {"s": "2024-01-01", "e": "2024-02-29", "p": "month"})
    )["usage"]
    assert [(r["period_start"], r["period_end"]) for r in monthly] == [
        ("2024-01-01", "2024-01-31"),
        ("2024-02-01", "2024-02-29"),
    ]
    january = monthly[0]
    assert january["access_key"] == user
    assert (january["sessions_started"], january["executions"], january["cpu_time_ms"]) == (
        3,
        15,
        1500,
    )
    assert january["mem_peak_bytes"] == 400 and january["mem_avg_bytes"] == 100
    assert january["storage_bytes"] == 9
    # Default: today only, own key.
    assert [r["period_start"] for r in data_of(await gql(manager.client, query))["usage"]] == [
        today.isoformat()
    ]
    # Admins: every key when none is named, or one key.
    admin = manager.as_admin()
    total = data_of(await gql(admin, query, {"s": "2024-01-01", "e": "2024-12-31", "p": "total"}))[
        "usage"
    ]
    assert {r["access_key"]: r["sessions_started"] for r in total} == {user: 7, admin_key: 9}
    one = data_of(
        await gql(
            admin,
            'query($ak: String) { usage(access_key: $ak, start_date: "2024-01-31", '
            'end_date: "2024-01-31") { access_key executions } }',
            {"ak": user},
        )
    )
    assert one == {"usage": [{"access_key": user, "executions": 5}]}
    assert_problem(
        await gql(manager.client, '{ usage(start_date: "1900-01-01") { access_key } }'),
        400,
        "invalid-api-params",
    )


@pytest.mark.manager_config(
    {
        "resource_policies": {
            "default": {"max_concurrent_sessions": 5},
            "small": {"max_concurrent_sessions": 1, "max_cpu_cores": 0.5},
        }
    }
)
async def test_policies_from_toml_and_mutations(manager: Harness) -> None:
    admin = manager.as_admin()
    policies = data_of(
        await gql(admin, "{ resource_policies { name max_concurrent_sessions max_cpu_cores } }")
    )["resource_policies"]
    assert {"name": "small", "max_concurrent_sessions": 1, "max_cpu_cores": 0.5} in policies
    create = (
        'mutation { create_resource_policy(name: "gold", props: {max_concurrent_sessions: 9, '
        "max_memory_bytes: 8589934592}) { ok msg } }"
    )
    assert data_of(await gql(admin, create))["create_resource_policy"]["ok"] is True
    assert data_of(await gql(admin, create))["create_resource_policy"]["ok"] is False
    modify = (
        'mutation { modify_resource_policy(name: "gold", props: {max_memory_bytes: null, '
        "max_vfolder_count: 3}) { ok } }"
    )
    assert data_of(await gql(admin, modify))["modify_resource_policy"]["ok"] is True
    gold = data_of(
        await gql(
            admin,
            '{ resource_policy(name: "gold") { max_concurrent_sessions max_memory_bytes '
            "max_vfolder_count } }",
        )
    )
    assert gold == {
        "resource_policy": {
            "max_concurrent_sessions": 9,
            "max_memory_bytes": None,
            "max_vfolder_count": 3,
        }
    }
    result = data_of(
        await gql(
            admin,
            G8.replace("UID", "String!"),
            {"user_id": "golden@test", "input": g8_input(resource_policy="gold")},
        )
    )["create_keypair"]
    assert result["ok"] is True
    delete = 'mutation { delete_resource_policy(name: "gold") { ok msg } }'
    assert data_of(await gql(admin, delete))["delete_resource_policy"]["ok"] is False  # in use
    owner_view = data_of(await gql(manager.client, "{ resource_policy { name } }"))
    assert owner_view == {"resource_policy": {"name": "default"}}


@pytest.mark.manager_config(
    {"resource_policies": {"tiny": {"max_concurrent_sessions": 1, "max_memory_bytes": 2**30}}}
)
async def test_policy_refuses_sessions_beyond_it(manager: Harness) -> None:
    """The policy's caps apply at creation (no agent needed: the quota check comes first)."""
    repo = KeypairRepository(manager.db)
    kp = await repo.create(NewKeypair("tiny@test", concurrency_limit=10, resource_policy="tiny"))
    client = manager.client.with_credentials(Credentials(kp.access_key, kp.secret_key))
    await insert_agent(manager.db)
    await insert_session(manager.db, kp.access_key, "first-one", agent_id="agent-1")
    with trio.fail_after(TIMEOUT):
        response = await client.post(
            "/kernel/create", json={"lang": "python", "clientSessionToken": "second"}
        )
    body = assert_problem(response, 412, "quota-exceeded")
    assert "1 sessions" in body["detail"]
    # Memory in total: one live session of 1 GiB fills the policy's memory.
    await repo.update(kp.access_key, {"resource_policy": "default"})
    await manager.db.execute(
        "INSERT INTO resource_policies (name, max_memory_bytes) VALUES ('mem', $1)", 2**30
    )
    await repo.update(kp.access_key, {"resource_policy": "mem"})
    with trio.fail_after(TIMEOUT):
        response = await client.post(
            "/kernel/create", json={"lang": "python", "clientSessionToken": "third"}
        )
    # The live session holds 512 MiB; a default session (512 MiB) still fits...
    assert response.status_code != 412 or "memory" not in response.text
    await manager.db.execute(
        'UPDATE kernels SET occupied_slots = \'{"cpu": 1, "mem": 1073741824}\''
    )
    with trio.fail_after(TIMEOUT):
        response = await client.post(
            "/kernel/create", json={"lang": "python", "clientSessionToken": "fourth"}
        )
    assert "memory" in assert_problem(response, 412, "quota-exceeded")["detail"]


@pytest.mark.manager_config({"resource_policies": {"gpu": {"max_gpu_slots": 1.5}}})
async def test_a_policy_caps_gpus(manager: Harness) -> None:
    admin = manager.as_admin()
    query = '{ resource_policy(name: "NAME") { max_gpu_slots } }'
    gpu = data_of(await gql(admin, query.replace("NAME", "gpu")))
    assert gpu == {"resource_policy": {"max_gpu_slots": 1.5}}
    create = (
        'mutation { create_resource_policy(name: "gpus", props: {max_gpu_slots: 0.25}) '
        "{ ok msg } }"
    )
    assert data_of(await gql(admin, create))["create_resource_policy"]["ok"] is True
    assert data_of(await gql(admin, query.replace("NAME", "gpus")))["resource_policy"] == {
        "max_gpu_slots": 0.25
    }
    modify = 'mutation { modify_resource_policy(name: "gpus", props: {max_gpu_slots: -1}) { ok } }'
    assert data_of(await gql(admin, modify))["modify_resource_policy"]["ok"] is False
    clear = 'mutation { modify_resource_policy(name: "gpus", props: {max_gpu_slots: null}) { ok } }'
    assert data_of(await gql(admin, clear))["modify_resource_policy"]["ok"] is True
    assert data_of(await gql(admin, query.replace("NAME", "gpus")))["resource_policy"] == {
        "max_gpu_slots": None
    }
