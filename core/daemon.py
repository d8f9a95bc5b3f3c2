"""Process-level orchestration: the database, the manager, signals, the client file."""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

import trio
import trio_asyncio

from crucible.config import Config
from crucible.db import open_database
from crucible.keypairs import Keypair, KeypairRepository
from crucible.manager import Endpoint, ManagerServer

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


async def _stop_on_signals(server: ManagerServer, scope: trio.CancelScope, grace: float) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            if server.ctx.status.local is None:
                log.info("received %s: stopping", signal.Signals(signum).name)
                server.stop()
                scope.deadline = trio.current_time() + grace
            else:
                log.warning("received %s again: stopping now", signal.Signals(signum).name)
                scope.cancel()


async def _run_until_done(
    server: ManagerServer,
    scope: trio.CancelScope,
    *,
    task_status: trio.TaskStatus[Endpoint] = trio.TASK_STATUS_IGNORED,
) -> None:
    try:
        await server.run(task_status=task_status)
    finally:
        scope.cancel()  # the server is gone: so is everything that served it


async def serve_manager(config: Config, *, announce_keypair: bool) -> None:
    """Run a manager until SIGINT/SIGTERM; with `announce_keypair`, print the admin keys."""
    async with trio_asyncio.open_loop(), open_database(config) as db:
        boot = config.bootstrap
        keypair, created = await KeypairRepository(db).ensure_bootstrap_admin(
            boot.user_id, boot.access_key, boot.secret_key
        )
        if created:
            log.info("created the bootstrap admin keypair %s", keypair.access_key)
        server = ManagerServer(config, db)
        async with trio.open_nursery() as nursery:
            endpoint: Endpoint = await nursery.start(_run_until_done, server, nursery.cancel_scope)
            if announce_keypair:
                lines = client_env_lines(endpoint, keypair)
                path = write_client_env(config.state_path, lines)
                print("\n".join(lines), flush=True)
                print(f"# written to {path}; Ctrl-C stops Crucible.", file=sys.stderr, flush=True)
            # Graceful stop gets the configured time plus a margin for the database.
            nursery.start_soon(
                _stop_on_signals, server, nursery.cancel_scope, config.manager.shutdown_timeout + 2
            )
