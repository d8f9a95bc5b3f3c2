"""The embedded PostgreSQL server (the `pgserver` package) used when no DSN is set.

Its data lives in ``<state-dir>/postgres`` and survives restarts. pgserver's calls
block (they run ``initdb`` and ``pg_ctl``), so they run in a worker thread.
"""

from __future__ import annotations

import atexit
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

log = logging.getLogger(__name__)

#: How long starting or stopping the embedded server may take.
EMBEDDED_START_TIMEOUT = 60.0


def _start(pgdata: Path) -> tuple[Any, bool]:
    """Start the server, or attach to one already serving `pgdata`.

    Returns ``(server, started_here)``: only the process that started it stops it, so
    ``crucible keypair ...`` next to a running ``crucible up`` leaves the database up.
    """
    import pgserver  # imported late: it is heavy and only the embedded mode needs it
    from pgserver.postgres_server import PostgresServer
    from pgserver.utils import PostmasterInfo

    pgdata.mkdir(parents=True, exist_ok=True)
    info = PostmasterInfo.read_from_pgdata(pgdata)
    already_running = info is not None and info.is_running()
    stale = PostgresServer._instances.get(pgdata.expanduser().resolve())
    if stale is not None and not already_running:
        # pgserver keeps one handle per data directory for the life of the process and
        # would hand back this stopped one instead of starting the server again.
        del PostgresServer._instances[stale.pgdata]
        atexit.unregister(stale._cleanup)
    # cleanup_mode None: we stop the server ourselves, deterministically, on exit.
    server = pgserver.get_server(pgdata, cleanup_mode=None)  # type: ignore[attr-defined]
    return server, not already_running


def _stop(server: Any) -> None:
    from pgserver import _commands

    _commands.pg_ctl(  # type: ignore[attr-defined]
        ["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user
    )


@asynccontextmanager
async def open_embedded_postgres(state_dir: Path) -> AsyncIterator[str]:
    """Start (or attach to) the embedded server and yield its DSN; stop it on exit."""
    pgdata = state_dir / "postgres"
    log.info("starting the embedded PostgreSQL in %s", pgdata)
    with trio.fail_after(EMBEDDED_START_TIMEOUT):
        server, started_here = await trio.to_thread.run_sync(_start, pgdata)
    try:
        yield str(server.get_uri())
    finally:
        if started_here:
            await _stop_shielded(server)


async def _stop_shielded(server: Any) -> None:
    with trio.CancelScope(shield=True), trio.move_on_after(EMBEDDED_START_TIMEOUT):
        log.info("stopping the embedded PostgreSQL")
        try:
            await trio.to_thread.run_sync(_stop, server)
        except Exception:
            log.exception("stopping the embedded PostgreSQL failed")
