"""Process-level orchestration: database, manager, local agent, signals, client file."""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import trio
import trio_asyncio

from crucible.config import Config
from crucible.db import open_database
from crucible.db.pool import Database
from crucible.keypairs import Keypair, KeypairRepository, NewKeypair
from crucible.local_agent import READY, run_agent_process
from crucible.manager.components import open_manager
from crucible.manager.server import Endpoint, ManagerServer
from crucible.protocol.auth import load_or_create_secret
from crucible.supervision import Service, supervise

log = logging.getLogger(__name__)


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
async def _open_stop_signals(scope: trio.CancelScope) -> AsyncIterator[trio.Event]:
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


def _supervisor(config: Config) -> Service:
    """`supervise` with the ``[supervision]`` restart delays."""
    return functools.partial(
        supervise,
        delays=config.supervision.restart_delays,
        stable_after=config.supervision.stable_after,
    )


async def _bootstrap_admin(config: Config, db: Database) -> Keypair:
    boot = config.bootstrap
    admin = NewKeypair(
        boot.user_id,
        is_admin=True,
        concurrency_limit=config.keypairs.concurrency_limit,
        rate_limit=config.ratelimit.default_keypair_limit,
    )
    # Keys the table leaves empty stay random.
    if boot.access_key:
        admin = attrs.evolve(admin, access_key=boot.access_key)
    if boot.secret_key:
        admin = attrs.evolve(admin, secret_key=boot.secret_key)
    keypair, created = await KeypairRepository(db).ensure_bootstrap_admin(
        admin, keys_given=bool(boot.access_key)
    )
    if created:
        log.info("created the bootstrap admin keypair %s", keypair.access_key)
    return keypair


def _hand_over_keys(
    config: Config, endpoint: Endpoint, keypair: Keypair, *, print_keys: bool
) -> None:
    """Write the bootstrap admin's client variables to ``<state_dir>/client.env``; print
    them too (``crucible up``), or log where they are (``crucible manager``)."""
    lines = client_env_lines(endpoint, keypair)
    path = write_client_env(config.state_path, lines)
    if print_keys:
        print("\n".join(lines), flush=True)
        print(f"# written to {path}; Ctrl-C stops Crucible.", file=sys.stderr, flush=True)
    else:
        log.info(
            "the bootstrap admin's client settings (BACKEND_ENDPOINT, BACKEND_ACCESS_KEY "
            "and BACKEND_SECRET_KEY for %s) are in %s, readable by this user only",
            keypair.access_key,
            path,
        )


async def serve_manager(
    config: Config,
    *,
    with_agent: bool,
    print_keys: bool,
    keep_sessions: bool = False,
    agent_command: Callable[[list[str]], list[str]] | None = None,
) -> None:
    """Run a manager (and, for ``crucible up``, a local agent) until SIGINT/SIGTERM.

    `agent_command` gives the argv of the local agent's process for the manager URLs
    (`crucible.local_agent`); without it, or with ``manager.local_agent_process``
    off, the agent runs in this process.
    """
    secret = load_or_create_secret(config.cluster.secret, config.state_path)
    async with trio_asyncio.open_loop(), open_database(config) as db:
        keypair = await _bootstrap_admin(config, db)
        async with open_manager(config, db, cluster_secret=secret) as components:
            server = ManagerServer(components)
            async with trio.open_nursery() as nursery:
                async with _open_stop_signals(nursery.cancel_scope) as stop:
                    await _serve(
                        nursery, stop, server, keypair,
                        with_agent=with_agent, print_keys=print_keys, keep_sessions=keep_sessions,
                        agent_command=agent_command,
                    )  # fmt: skip


async def _serve(
    nursery: trio.Nursery,
    stop: trio.Event,
    server: ManagerServer,
    keypair: Keypair,
    *,
    with_agent: bool,
    print_keys: bool,
    keep_sessions: bool,
    agent_command: Callable[[list[str]], list[str]] | None,
) -> None:
    config, components = server.config, server.components
    restarting = _supervisor(config)
    # The manager and the local agent each restart on their own when they fail:
    # neither takes the other (or the database) down with it.
    endpoint: Endpoint = await nursery.start(restarting, "the manager", server.run)
    agent_scope = trio.CancelScope()
    if with_agent:
        urls = list(config.agent.manager_urls) or [_local_manager_url(endpoint)]
        agent: tuple[Any, ...]
        if agent_command is not None and config.manager.local_agent_process:
            manager = config.manager
            run = functools.partial(
                run_agent_process,
                start_timeout=manager.local_agent_start_timeout,
                stop_timeout=manager.local_agent_stop_timeout,
            )
            agent = ("the agent process", run, agent_command(urls))
        else:
            from crucible.agent.daemon import run_agent  # needs Docker; cluster managers don't

            agent = ("the agent", run_agent, config, urls, components.cluster_secret)
        await nursery.start(_scoped, agent_scope, restarting, *agent)
        # Announce only once sessions can be placed: the agent's first heartbeat
        # carries the images that `lang` resolves against.
        with trio.move_on_after(config.manager.local_agent_timeout):
            await components.agents.wait_reported()
    _hand_over_keys(config, endpoint, keypair, print_keys=print_keys)
    await stop.wait()
    grace = config.manager.shutdown_timeout
    if with_agent and not keep_sessions:
        # A single-machine Crucible that stops takes its sessions with it; a crash
        # instead leaves them for the agent to recover.
        with trio.move_on_after(config.sessions.shutdown_destroy_timeout):
            killed = await components.sessions.destroy_all()
            log.info("ended %d session(s) on shutdown", killed)
    agent_scope.cancel()
    server.stop()
    nursery.cancel_scope.deadline = trio.current_time() + grace + 2


async def _scoped(
    scope: trio.CancelScope, fn: Any, *args: Any, task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    with scope:
        await fn(*args, task_status=task_status)


async def serve_local_agent(config: Config, manager_urls: list[str]) -> None:
    """The agent process of ``crucible up`` (`crucible.local_agent`): like `serve_agent`,
    but it says on stdout when it has started, and stops when its stdin closes (the
    manager's process asks it to, or is gone)."""
    from crucible.agent.daemon import run_agent

    secret = load_or_create_secret(config.cluster.secret, config.state_path)
    async with trio.open_nursery() as nursery:
        async with _open_stop_signals(nursery.cancel_scope) as stop:
            await nursery.start(
                _supervisor(config), "the agent", run_agent, config, manager_urls, secret
            )
            ready = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
            with ready:
                ready.write(READY)
            # Nothing else goes to the pipe the parent stopped reading.
            os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
            nursery.start_soon(_set_on_eof, stop)
            await stop.wait()
            nursery.cancel_scope.cancel()


async def _set_on_eof(event: trio.Event) -> None:
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    async with stdin:
        while await stdin.receive_some(256):
            pass
    log.info("the manager's process closed the agent's stdin: stopping")
    event.set()


async def serve_agent(config: Config) -> None:
    """Run an agent alone (``crucible agent``) until SIGINT/SIGTERM; kernels survive it.

    The command has checked that the configuration names managers and the secret
    (`crucible.config.standalone_agent_problems`).
    """
    from crucible.agent.daemon import run_agent

    async with trio.open_nursery() as nursery:
        async with _open_stop_signals(nursery.cancel_scope) as stop:
            urls, secret = list(config.agent.manager_urls), config.cluster.secret
            await nursery.start(_supervisor(config), "the agent", run_agent, config, urls, secret)
            await stop.wait()
            nursery.cancel_scope.cancel()
