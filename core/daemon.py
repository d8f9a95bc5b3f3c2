"""Process-level orchestration: database, manager, local agent, signals, client file."""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio
import trio_asyncio

from crucible.config import Config
from crucible.db import open_database
from crucible.keypairs import Keypair, KeypairRepository
from crucible.manager import Endpoint, ManagerServer
from crucible.protocol.auth import load_or_create_secret
from crucible.supervision import supervise

log = logging.getLogger(__name__)


#: How long `crucible up` may spend ending its sessions when it stops.
SHUTDOWN_DESTROY_TIMEOUT = 30.0


def client_env_lines(endpoint: Endpoint, keypair: Keypair) -> list[str]:
    """The official client's variables (spec 10.1) for `keypair` at `endpoint`."""
    return [
        f"BACKEND_ENDPOINT={endpoint.url}",
        f"BACKEND_ACCESS_KEY={keypair.access_key}",
        f"BACKEND_SECRET_KEY={keypair.secret_key}",
    ]


def write_client_env(state_dir: Path, lines: list[str]) -> Path:
    path = state_dir / "client.env"
    state_dir.mkdir(parents=True, exist_ok=True)
    # The file holds a secret key: readable by its owner only, from the first byte.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fp:
        fp.write("\n".join(lines) + "\n")
    return path


@asynccontextmanager
async def _signals_cancel(scope: trio.CancelScope) -> AsyncIterator[trio.Event]:
    """Yield an event set on the first SIGINT/SIGTERM; a second one cancels `scope`."""
    stop = trio.Event()

    async def watch() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                name = signal.Signals(signum).name
                if not stop.is_set():
                    log.info("received %s: stopping", name)
                    stop.set()
                else:
                    log.warning("received %s again: stopping now", name)
                    scope.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        yield stop
        nursery.cancel_scope.cancel()


def _local_manager_url(endpoint: Endpoint) -> str:
    return endpoint.url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)


async def serve_manager(
    config: Config, *, with_agent: bool, announce_keypair: bool, keep_sessions: bool = False
) -> None:
    """Run a manager (and, for ``crucible up``, a local agent) until SIGINT/SIGTERM."""
    secret = load_or_create_secret(config.cluster.secret, config.state_path)
    async with trio_asyncio.open_loop(), open_database(config) as db:
        boot = config.bootstrap
        keypair, created = await KeypairRepository(db).ensure_bootstrap_admin(
            boot.user_id,
            boot.access_key,
            boot.secret_key,
            concurrency_limit=config.keypairs.concurrency_limit,
            rate_limit=config.ratelimit.default_keypair_limit,
        )
        if created:
            log.info("created the bootstrap admin keypair %s", keypair.access_key)
        server = ManagerServer(config, db, cluster_secret=secret)
        async with trio.open_nursery() as nursery:
            async with _signals_cancel(nursery.cancel_scope) as stop:
                # The manager and the local agent each restart on their own when they
                # fail: neither takes the other (or the database) down with it.
                endpoint: Endpoint = await nursery.start(supervise, "the manager", server.run)
                agent_scope = trio.CancelScope()
                if with_agent:
                    from crucible.agent.daemon import (
                        run_agent,
                    )  # needs Docker; cluster managers don't

                    urls = list(config.agent.manager_urls) or [_local_manager_url(endpoint)]
                    agent = ("the agent", run_agent, config, urls, secret)
                    await nursery.start(_scoped, agent_scope, supervise, *agent)
                    # Announce only once sessions can be placed: the agent's first
                    # heartbeat carries the images that `lang` resolves against.
                    with trio.move_on_after(30):
                        await server.ctx.agents.wait_reported()
                if announce_keypair:
                    lines = client_env_lines(endpoint, keypair)
                    path = write_client_env(config.state_path, lines)
                    print("\n".join(lines), flush=True)
                    print(
                        f"# written to {path}; Ctrl-C stops Crucible.", file=sys.stderr, flush=True
                    )
                await stop.wait()
                grace = config.manager.shutdown_timeout
                if with_agent and not keep_sessions:
                    # A single-machine Crucible that stops takes its sessions with it;
                    # a crash instead leaves them for the agent to recover.
                    with trio.move_on_after(SHUTDOWN_DESTROY_TIMEOUT):
                        killed = await server.ctx.registry.destroy_all()
                        log.info("ended %d session(s) on shutdown", killed)
                agent_scope.cancel()
                server.stop()
                nursery.cancel_scope.deadline = trio.current_time() + grace + 2


async def _scoped(
    scope: trio.CancelScope, fn: Any, *args: Any, task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    with scope:
        await fn(*args, task_status=task_status)


async def serve_agent(config: Config) -> None:
    """Run an agent alone (``crucible agent``) until SIGINT/SIGTERM; kernels survive it."""
    from crucible.agent.daemon import run_agent

    if not config.agent.manager_urls:
        raise SystemExit("crucible agent: set agent.manager_urls in the configuration")
    if not config.cluster.secret:
        raise SystemExit("crucible agent: set cluster.secret (the managers' shared secret)")
    async with trio.open_nursery() as nursery:
        async with _signals_cancel(nursery.cancel_scope) as stop:
            urls, secret = list(config.agent.manager_urls), config.cluster.secret
            await nursery.start(supervise, "the agent", run_agent, config, urls, secret)
            await stop.wait()
            nursery.cancel_scope.cancel()
