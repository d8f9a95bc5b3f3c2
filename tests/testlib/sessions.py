"""Driving sessions over the REST API the way the official client does."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import httpx
import pytest
import trio

from crucible.agent.service import Agent
from crucible.config import Config
from testlib.server import Harness
from testlib.signing import SigningClient

#: Bound on any single run in these tests (the slowest is a memory bomb).
RUN_TIMEOUT = 60.0


def new_token() -> str:
    return "t" + secrets.token_hex(6)


async def create(
    client: SigningClient, token: str, lang: str = "python", **config: Any
) -> httpx.Response:
    response = await client.post(
        "/kernel/create",
        json={"lang": lang, "clientSessionToken": token, "config": config or None},
    )
    return response


async def start_session(
    client: SigningClient, lang: str = "python", *, skip_without_image: bool = False, **config: Any
) -> str:
    """A new session of `lang` (with `config`), created or the test fails; its token.

    `skip_without_image`: skip the test instead where this machine has no image of `lang`.
    """
    token = new_token()
    response = await create(client, token, lang, **config)
    if skip_without_image and response.status_code == 404:
        pytest.skip(f"no {lang} image here (crucible images build {lang})")
    assert response.status_code == 201, response.text
    return token


async def execute(
    client: SigningClient,
    token: str,
    code: str,
    *,
    mode: str = "query",
    options: dict[str, Any] | None = None,
    inputs: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Run `code` to the end, answering `waiting-input` from `inputs`; return every result."""
    results: list[dict[str, Any]] = []
    pending_inputs = list(inputs or [])
    body: dict[str, Any] = {"mode": mode, "code": code, "runId": None}
    if options is not None:
        body["options"] = options
    with trio.fail_after(RUN_TIMEOUT):
        while True:
            response = await client.post(f"/kernel/{token}", json=body)
            assert response.status_code == 200, response.text
            result = response.json()["result"]
            results.append(result)
            status = result["status"]
            if status in ("finished", "exec-timeout"):
                return results
            body = {"runId": result["runId"], "mode": "continue", "code": ""}
            if status == "waiting-input":
                body = {"runId": result["runId"], "mode": "input", "code": pending_inputs.pop(0)}


async def start_blocker(client: SigningClient, token: str) -> str:
    """Start a run that keeps the session busy (waiting for input) until
    `release_blocker`: runs started meanwhile queue behind it. Returns its run id."""
    response = await client.post(
        f"/kernel/{token}", json={"mode": "query", "code": "input('go? ')", "runId": None}
    )
    result = response.json()["result"]
    assert result["status"] == "waiting-input", result
    return str(result["runId"])


async def release_blocker(client: SigningClient, token: str, run_id: str) -> None:
    """Answer the blocker's input and collect it to the end (it must not be interrupted)."""
    body = {"mode": "input", "code": "go", "runId": run_id}
    with trio.fail_after(RUN_TIMEOUT):
        while True:
            result = (await client.post(f"/kernel/{token}", json=body)).json()["result"]
            assert "KeyboardInterrupt" not in str(result["console"]), result
            if result["status"] == "finished":
                return
            body = {"mode": "continue", "code": "", "runId": run_id}


def stream_text(results: list[dict[str, Any]], stream: str = "stdout") -> str:
    return "".join(item[1] for result in results for item in result["console"] if item[0] == stream)


def try_each(targets: Sequence[object], attempt: str, *, setup: str = "") -> str:
    """Kernel code that runs `attempt` (a statement about `target`) for each of `targets`,
    after `setup`, printing ``allowed TARGET`` where it succeeds and ``refused ERRNO``
    where it raises OSError: how tests probe what user code must not reach."""
    return (
        f"{setup}\n"
        f"for target in {list(targets)!r}:\n"
        "    try:\n"
        f"        {attempt}\n"
        "        print('allowed', target)\n"
        "    except OSError as exc:\n"
        "        print('refused', exc.errno)\n"
    )


@attrs.frozen
class Cluster:
    """A single-host cluster for one test: a manager and a real agent beside it."""

    #: The manager, its database and the user's signing client.
    harness: Harness
    #: The agent, in this process: tests look at its kernels and slots directly.
    agent: Agent
    #: The configuration both were started with.
    config: Config

    async def status_info(self, token: str) -> str:
        """Why the latest kernel of session `token` ended, as the manager recorded it."""
        info = await self.harness.db.fetchval(
            "SELECT status_info FROM kernels WHERE sess_id = $1 ORDER BY created_at DESC LIMIT 1",
            token,
        )
        assert isinstance(info, str), info
        return info

    @property
    def client(self) -> SigningClient:
        return self.harness.client


async def agent_containers(agent_id: str, *, include_stopped: bool = True) -> list[str]:
    """Ids of the containers an agent made (found by its label, as a restarted agent would)."""
    argv = ["docker", "ps", "-q", "--filter", f"label=crucible.agent-id={agent_id}"]
    if include_stopped:
        argv.insert(2, "-a")
    with trio.fail_after(30):
        done = await trio.run_process(argv, capture_stdout=True)
    return done.stdout.decode().split()


@asynccontextmanager
async def removing_containers(agent_id: str) -> AsyncIterator[None]:
    """Remove every container `agent_id` made when the block ends, however it ends."""
    try:
        yield
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(90):
            await remove_containers(await agent_containers(agent_id))


async def remove_containers(ids: list[str]) -> None:
    with trio.fail_after(60):
        for container in ids:
            await trio.run_process(["docker", "rm", "-f", container], capture_stdout=True)
