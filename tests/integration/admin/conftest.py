"""Helpers of the admin API tests: GraphQL calls and rows inserted straight into the tables."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import trio

from crucible.db.pool import Database
from testlib.signing import SigningClient

TIMEOUT = 10
MiB = 1024 * 1024
PYTHON_REF = "crucible/kernel-python:3.11"


async def gql(
    client: SigningClient, query: str, variables: Any = None, *, prefix: str = ""
) -> httpx.Response:
    """POST a GraphQL document as the SDK does (no `variables` key when there are none)."""
    body: dict[str, Any] = {"query": query}
    if variables is not None:
        body["variables"] = variables
    with trio.fail_after(TIMEOUT):
        return await client.post(prefix + "/admin/graphql", json=body)


def data_of(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


async def insert_agent(
    db: Database,
    agent_id: str = "agent-1",
    *,
    status: str = "ALIVE",
    cpu: float = 8,
    mem: int = 16 * 1024 * MiB,
    images: list[dict[str, Any]] | None = None,
) -> None:
    if images is None:
        images = [
            {
                "ref": PYTHON_REF,
                "id": "sha256:" + "ab" * 32,
                "labels": {"crucible.lang": "python", "crucible.aliases": "python,python3"},
            }
        ]
    await db.execute(
        """INSERT INTO agents (id, status, addr, available_slots, images)
           VALUES ($1, $2, 'tcp://127.0.0.1:6001', $3::jsonb, $4::jsonb)""",
        agent_id,
        status,
        json.dumps({"cpu": cpu, "mem": mem}),
        json.dumps(images),
    )


async def insert_session(
    db: Database,
    access_key: str,
    sess_id: str,
    *,
    status: str = "RUNNING",
    agent_id: str | None = None,
    role: str = "master",
    age: float = 0.0,
    cpu: float = 1.0,
    mem: int = 512 * MiB,
    last_stat: dict[str, int] | None = None,
    lang: str = "python",
    tag: str | None = None,
) -> str:
    """A kernels row as the session lifecycle writes it; `age` seconds old. Returns its id."""
    kernel_id = uuid.uuid4()
    created = datetime.now(UTC) - timedelta(seconds=age)
    await db.execute(
        """INSERT INTO kernels (id, sess_id, role, access_key, agent_id, status, image, lang,
                                tag, occupied_slots, last_stat, created_at, terminated_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11::jsonb, $12, $13)""",
        kernel_id,
        sess_id,
        role,
        access_key,
        agent_id,
        status,
        PYTHON_REF,
        lang,
        tag,
        json.dumps({"cpu": cpu, "mem": mem}),
        None if last_stat is None else json.dumps(last_stat),
        created,
        created + timedelta(seconds=1) if status == "TERMINATED" else None,
    )
    return str(kernel_id)
