"""Every operation the official client sends (spec 7.5, G1-G15), and owner isolation."""

from __future__ import annotations

from typing import Any

import pytest

from crucible.keypairs import KeypairRepository, NewKeypair
from testlib.problems import assert_problem
from testlib.server import Harness
from testlib.signing import Credentials

from .conftest import MiB, data_of, gql, insert_agent, insert_session

SESSION_FIELDS = (
    "sess_id lang created_at terminated_at status cpu_slot cpu_used mem_slot mem_cur_bytes "
    "mem_max_bytes gpu_slot"
)
G1 = "query($status:String) { compute_sessions(status:$status) { FIELDS } }".replace(
    "FIELDS", SESSION_FIELDS
)
G1_TAG = G1.replace(" lang ", " lang tag ")
G2 = (
    "query($ak:String, $status:String) { compute_sessions(access_key:$ak, status:$status) "
    "{ FIELDS } }".replace("FIELDS", SESSION_FIELDS)
)
G3 = "query($status:String) { compute_sessions(status:$status) { sess_id } }"
G4_FIELDS = (
    "sess_id role lang created_at terminated_at agent status status_info cpu_slot cpu_used "
    "mem_slot mem_cur_bytes mem_max_bytes gpu_slot num_queries net_rx_bytes net_tx_bytes "
    "io_read_bytes io_write_bytes io_max_scratch_size io_cur_scratch_size"
)
G4 = "query($sess_id:String) { compute_session(sess_id:$sess_id) { FIELDS } }".replace(
    "FIELDS", G4_FIELDS
)
KP_FIELDS = (
    "user_id access_key secret_key is_active is_admin created_at last_used resource_policy "
    "rate_limit concurrency_limit"
)
G5 = "query { keypair { FIELDS } }".replace("FIELDS", KP_FIELDS)
G6 = "query($is_active: Boolean) { keypairs(is_active: $is_active) { FIELDS } }".replace(
    "FIELDS", KP_FIELDS
)
G7 = (
    "query($user_id: UID, $is_active: Boolean) { keypairs(user_id: $user_id, "
    "is_active: $is_active) { " + KP_FIELDS + " } }"
)
AGENT_FIELDS = (
    "id status region first_contact cpu_slots used_cpu_slots cpu_cur_pct mem_slots "
    "used_mem_slots mem_cur_bytes gpu_slots used_gpu_slots"
)
G10 = "query($status: String) { agents(status: $status) { FIELDS } }".replace(
    "FIELDS", AGENT_FIELDS
)
G11 = "query($agent_id: String!) { agent(agent_id: $agent_id) { FIELDS } }".replace(
    "FIELDS", AGENT_FIELDS
)
VF_FIELDS = "name created_at last_used max_files max_size"
G12 = "query { vfolders { FIELDS } }".replace("FIELDS", VF_FIELDS)
G13 = "query($ak:String) { vfolders(access_key:$ak) { FIELDS } }".replace("FIELDS", VF_FIELDS)


async def test_keypair_g5_is_own_key_in_selection_order(manager: Harness) -> None:
    response = await gql(manager.client, G5)
    body = data_of(response)
    # The data object itself is the root, keys in the order of the selection set.
    assert list(body) == ["keypair"]
    keypair = body["keypair"]
    assert list(keypair) == KP_FIELDS.split()
    assert keypair["access_key"] == manager.user.access_key
    assert keypair["secret_key"] == manager.user.secret_key
    assert keypair["user_id"] == "user@test"
    assert keypair["is_admin"] is False and keypair["is_active"] is True
    assert keypair["resource_policy"] == "default"
    assert keypair["rate_limit"] == 5000 and keypair["concurrency_limit"] == 5
    # The raw text is in that order too (no encoder sorts it).
    assert response.text.index('"user_id"') < response.text.index('"access_key"')


async def test_keypair_sdk_default_fields_and_version_aliases(manager: Harness) -> None:
    for prefix in ("", "/v2", "/v3", "/v4"):
        body = data_of(
            await gql(
                manager.client,
                "query { keypair { access_key secret_key is_active is_admin } }",
                prefix=prefix,
            )
        )
        assert body["keypair"]["access_key"] == manager.user.access_key


async def test_keypairs_g6_g7(manager: Harness, keypairs: KeypairRepository) -> None:
    numeric = await keypairs.create(NewKeypair("123"))
    inactive = await keypairs.create(NewKeypair("user@test", is_active=False))
    admin = manager.as_admin()
    everyone = data_of(await gql(admin, G6, {"is_active": None}))["keypairs"]
    assert {kp["access_key"] for kp in everyone} == {
        manager.admin.access_key,
        manager.user.access_key,
        numeric.access_key,
        inactive.access_key,
    }
    assert all(list(kp) == KP_FIELDS.split() for kp in everyone)
    active = data_of(await gql(admin, G6, {"is_active": True}))["keypairs"]
    assert inactive.access_key not in {kp["access_key"] for kp in active}
    mine = data_of(
        await gql(admin, G7.replace("UID", "String!"), {"user_id": "user@test", "is_active": None})
    )["keypairs"]
    assert {kp["access_key"] for kp in mine} == {manager.user.access_key, inactive.access_key}
    # The client declares Int! for numeric ids; the server coerces to the string id.
    by_int = data_of(
        await gql(admin, G7.replace("UID", "Int!"), {"user_id": 123, "is_active": None})
    )
    assert [kp["access_key"] for kp in by_int["keypairs"]] == [numeric.access_key]
    assert by_int["keypairs"][0]["user_id"] == "123"


async def test_compute_sessions_g1_g3(manager: Harness) -> None:
    user = manager.user.access_key
    await insert_agent(manager.db)
    await insert_session(manager.db, user, "old-one", age=30, agent_id="agent-1")
    await insert_session(
        manager.db,
        user,
        "new-one",
        age=1,
        agent_id="agent-1",
        cpu=2,
        mem=1024 * MiB,
        tag="t1",
        last_stat={"cpu_used": 1234, "mem_cur_bytes": 3 * MiB, "mem_max_bytes": 5 * MiB},
    )
    await insert_session(manager.db, user, "gone", status="TERMINATED", age=60)
    await insert_session(manager.db, manager.admin.access_key, "admins-own")
    # The CLI sends "ak": null alongside; undeclared variables are ignored.
    sessions = data_of(await gql(manager.client, G1, {"status": "RUNNING", "ak": None}))[
        "compute_sessions"
    ]
    assert [s["sess_id"] for s in sessions] == ["new-one", "old-one"]  # newest first
    newest = sessions[0]
    assert list(newest) == SESSION_FIELDS.split()
    assert newest["lang"] == "python" and newest["status"] == "RUNNING"
    assert newest["cpu_slot"] == 2.0 and newest["mem_slot"] == 1024
    assert newest["cpu_used"] == 1234
    assert newest["mem_cur_bytes"] == 3 * MiB and newest["mem_max_bytes"] == 5 * MiB
    assert newest["gpu_slot"] == 0.0 and newest["terminated_at"] is None
    # Unknown live stats are numbers, never null (the CLI divides them).
    assert sessions[1]["mem_cur_bytes"] == 0 and sessions[1]["mem_max_bytes"] == 0
    with_tag = data_of(await gql(manager.client, G1_TAG, {"status": "RUNNING"}))
    assert with_tag["compute_sessions"][0]["tag"] == "t1"
    everything = data_of(await gql(manager.client, G1, {"status": None, "ak": None}))
    assert [s["sess_id"] for s in everything["compute_sessions"]] == [
        "new-one",
        "old-one",
        "gone",
    ]
    ids = data_of(await gql(manager.client, G3, {"status": "RUNNING", "ak": None}))
    assert ids == {"compute_sessions": [{"sess_id": "new-one"}, {"sess_id": "old-one"}]}
    terminated = data_of(await gql(manager.client, G1, {"status": "TERMINATED"}))
    assert [s["sess_id"] for s in terminated["compute_sessions"]] == ["gone"]
    assert terminated["compute_sessions"][0]["terminated_at"] is not None


async def test_compute_sessions_g2_admin_only(manager: Harness) -> None:
    await insert_session(manager.db, manager.user.access_key, "users-one")
    await insert_session(manager.db, manager.admin.access_key, "admins-one")
    admin = manager.as_admin()
    own = data_of(await gql(admin, G1, {"status": "RUNNING", "ak": None}))
    assert [s["sess_id"] for s in own["compute_sessions"]] == ["admins-one"]
    other = data_of(await gql(admin, G2, {"status": None, "ak": manager.user.access_key}))
    assert [s["sess_id"] for s in other["compute_sessions"]] == ["users-one"]
    assert_problem(
        await gql(manager.client, G2, {"status": None, "ak": manager.admin.access_key}),
        400,
        "invalid-api-params",
    )


async def test_compute_session_g4(manager: Harness) -> None:
    user = manager.user.access_key
    await insert_agent(manager.db)
    await insert_session(
        manager.db, user, "detail", agent_id="agent-1", last_stat={"net_rx_bytes": 7}
    )
    await insert_session(manager.db, manager.admin.access_key, "admins-secret")
    found = data_of(await gql(manager.client, G4, {"sess_id": "detail"}))["compute_session"]
    assert list(found) == G4_FIELDS.split()
    assert found["sess_id"] == "detail" and found["role"] == "master"
    assert found["agent"] == "agent-1" and found["net_rx_bytes"] == 7
    assert found["num_queries"] == 0 and found["io_max_scratch_size"] == 0
    # None found: an object of nulls, never null (the CLI reads .sess_id).
    for sess_id in ("no-such", "admins-secret"):
        missing = data_of(await gql(manager.client, G4, {"sess_id": sess_id}))
        assert missing["compute_session"] == dict.fromkeys(G4_FIELDS.split())
    # Admins see anyone's session.
    admin_view = data_of(await gql(manager.as_admin(), G4, {"sess_id": "detail"}))
    assert admin_view["compute_session"]["sess_id"] == "detail"


async def test_images_g9(manager: Harness) -> None:
    await insert_agent(manager.db)
    await insert_agent(manager.db, "agent-lost", status="LOST", images=[{"ref": "x/y:1"}])
    for client in (manager.client, manager.as_admin()):
        body = data_of(await gql(client, "query { images { name tag hash } }"))
        assert body == {
            "images": [
                {"name": "crucible/kernel-python", "tag": "3.11", "hash": "sha256:" + "ab" * 32}
            ]
        }


async def test_agents_g10_g11_g14(manager: Harness) -> None:
    await insert_agent(manager.db, "agent-1", cpu=8, mem=16 * 1024 * MiB)
    await insert_agent(manager.db, "agent-2", status="LOST")
    await insert_session(
        manager.db,
        manager.user.access_key,
        "on-one",
        agent_id="agent-1",
        cpu=1.5,
        mem=256 * MiB,
        last_stat={"mem_cur_bytes": 10 * MiB},
    )
    admin = manager.as_admin()
    alive = data_of(await gql(admin, G10, {"status": "ALIVE"}))["agents"]
    assert len(alive) == 1
    agent = alive[0]
    assert list(agent) == AGENT_FIELDS.split()
    assert agent["id"] == "agent-1" and agent["status"] == "ALIVE"
    assert agent["cpu_slots"] == 8.0 and agent["mem_slots"] == 16 * 1024
    assert agent["used_cpu_slots"] == 1.5 and agent["used_mem_slots"] == 256
    assert agent["mem_cur_bytes"] == 10 * MiB and agent["cpu_cur_pct"] == 0.0
    everyone = data_of(await gql(admin, G10, {"status": None}))["agents"]
    assert [a["id"] for a in everyone] == ["agent-1", "agent-2"]
    one = data_of(await gql(admin, G11, {"agent_id": "agent-2"}))["agent"]
    assert one["id"] == "agent-2" and one["status"] == "LOST"
    assert data_of(await gql(admin, G11, {"agent_id": "nope"})) == {"agent": None}
    sdk = data_of(
        await gql(
            admin,
            "query($status: String) { agents(status: $status) "
            "{ id addr status first_contact mem_slots cpu_slots gpu_slots } }",
            {"status": "ALIVE"},
        )
    )
    assert sdk["agents"][0]["addr"] == "tcp://127.0.0.1:6001"
    nested = data_of(
        await gql(admin, '{ agent(agent_id: "agent-1") { computations { sess_id role } } }')
    )
    assert nested == {"agent": {"computations": [{"sess_id": "on-one", "role": "master"}]}}
    assert_problem(await gql(admin, G10, {"status": "DEAD"}), 400, "invalid-api-params")


async def test_vfolders_g12_g13(manager: Harness) -> None:
    await manager.db.execute(
        """INSERT INTO vfolders (id, host, name, owner_access_key, max_files, max_size)
           VALUES (gen_random_uuid(), 'local', 'mine', $1, 1000, 1048576),
                  (gen_random_uuid(), 'local', 'theirs', $2, 10, 2048)""",
        manager.user.access_key,
        manager.admin.access_key,
    )
    mine = data_of(await gql(manager.client, G12, {}))["vfolders"]
    assert [list(v) for v in mine] == [VF_FIELDS.split()]
    assert mine[0]["name"] == "mine" and mine[0]["max_size"] == 1024  # KiB
    # The client forgets to pass ak: null means the caller's own folders.
    admin = manager.as_admin()
    assert [v["name"] for v in data_of(await gql(admin, G13, {}))["vfolders"]] == ["theirs"]
    other = data_of(await gql(admin, G13, {"ak": manager.user.access_key}))["vfolders"]
    assert [v["name"] for v in other] == ["mine"]
    assert_problem(await gql(manager.client, G13, {}), 400, "invalid-api-params")


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        (G2, {"status": None, "ak": "AKIAANYTHING"}),
        (G6, {"is_active": None}),
        (G7.replace("UID", "String!"), {"user_id": "user@test"}),
        (G10, {"status": "ALIVE"}),
        (G11, {"agent_id": "agent-1"}),
        (G13, {}),
        ('{ keypair(access_key: "AKIAX") { access_key } }', None),
        ('{ usage(access_key: "AKIAX") { access_key } }', None),
        ("{ resource_policies { name } }", None),
        (
            'mutation { create_keypair(user_id: "x", props: {concurrency_limit: 1, '
            "rate_limit: 1}) { ok } }",
            None,
        ),
    ],
)
async def test_owner_cannot_use_admin_fields(
    manager: Harness, query: str, variables: dict[str, Any] | None
) -> None:
    body = assert_problem(await gql(manager.client, query, variables), 400, "invalid-api-params")
    # Nothing about the admin schema leaks into the message.
    assert "Did you mean" not in body["detail"]


async def test_owner_isolation_through_nested_fields(manager: Harness) -> None:
    other = await KeypairRepository(manager.db).create(NewKeypair("other@test"))
    await insert_session(manager.db, other.access_key, "not-yours")
    await insert_session(manager.db, other.access_key + "", "not-yours-either", role="worker")
    await insert_session(manager.db, manager.user.access_key, "yours")
    body = data_of(
        await gql(
            manager.client,
            "{ keypair { access_key concurrency_used compute_sessions { sess_id workers "
            '{ sess_id } } vfolders { name } } compute_workers(sess_id: "not-yours-either") '
            "{ sess_id } }",
        )
    )
    assert body == {
        "keypair": {
            "access_key": manager.user.access_key,
            "concurrency_used": 1,
            "compute_sessions": [{"sess_id": "yours", "workers": []}],
            "vfolders": [],
        },
        "compute_workers": [],
    }
    other_client = manager.client.with_credentials(Credentials(other.access_key, other.secret_key))
    theirs = data_of(
        await gql(other_client, '{ compute_workers(sess_id: "not-yours-either") { role } }')
    )
    assert theirs == {"compute_workers": [{"role": "worker"}]}
