"""The embedded PostgreSQL server (the `pgserver` package) used when no DSN is set.

Its data lives in ``<state-dir>/postgres`` and survives restarts. pgserver's calls
block (they run ``initdb`` and ``pg_ctl``), so they run in a worker thread.

Ownership: the server is stopped by the process that owns it, recorded in
``<state-dir>/postgres.owner`` (pid and kernel start time, so a recycled pid is never
mistaken for the owner). A process that finds the server running under a live owner
(``crucible keypair ...`` next to ``crucible up``) attaches and leaves it running; one
that finds it running under a dead owner (a ``crucible up`` killed with SIGKILL) adopts
it and stops it on exit, so no process of a killed instance outlives the next one.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import logging
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import trio

log = logging.getLogger(__name__)

OWNER_FILE = "postgres.owner"
_LOCK_FILE = "postgres.lock"


@attrs.frozen
class ProcessIdentity:
    """A process as the kernel knows it: its pid and start time (clock ticks after boot)."""

    pid: int
    start_ticks: int

    @classmethod
    def of(cls, pid: int) -> ProcessIdentity | None:
        """The live (non-zombie) process `pid`, or None."""
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        # The command name (field 2) may hold spaces and parentheses: split after it.
        fields = stat.rpartition(")")[2].split()
        if not fields or fields[0] == "Z":
            return None
        return cls(pid, int(fields[19]))  # field 22 of proc(5): starttime

    @classmethod
    def current(cls) -> ProcessIdentity:
        me = cls.of(os.getpid())
        assert me is not None
        return me

    def is_alive(self) -> bool:
        return ProcessIdentity.of(self.pid) == self


def read_owner(state_dir: Path) -> ProcessIdentity | None:
    try:
        data = json.loads((state_dir / OWNER_FILE).read_text())
        return ProcessIdentity(int(data["pid"]), int(data["start_ticks"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_owner(state_dir: Path, owner: ProcessIdentity) -> None:
    path = state_dir / OWNER_FILE
    staging = path.with_name(f"{OWNER_FILE}.{owner.pid}")
    staging.write_text(json.dumps(attrs.asdict(owner)))
    os.replace(staging, path)


def _forget_owner(state_dir: Path, owner: ProcessIdentity) -> None:
    if read_owner(state_dir) == owner:
        with contextlib.suppress(FileNotFoundError):
            (state_dir / OWNER_FILE).unlink()


@contextlib.contextmanager
def _ownership_lock(state_dir: Path) -> Iterator[None]:
    # Two processes starting at once must not both decide they own the server.
    fd = os.open(state_dir / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _start(state_dir: Path, pgdata: Path) -> tuple[Any, bool]:
    """Start the server, or attach to one already serving `pgdata`.

    Returns ``(server, owned)``: only its owner stops it (see the module docstring).
    """
    import pgserver  # imported late: it is heavy and only the embedded mode needs it
    from pgserver.postgres_server import PostgresServer
    from pgserver.utils import PostmasterInfo

    pgdata.mkdir(parents=True, exist_ok=True)
    with _ownership_lock(state_dir):
        info = PostmasterInfo.read_from_pgdata(pgdata)
        already_running = info is not None and info.is_running()
        owner = read_owner(state_dir)
        me = ProcessIdentity.current()
        if already_running and owner is not None and owner != me and owner.is_alive():
            server = pgserver.get_server(pgdata, cleanup_mode=None)  # type: ignore[attr-defined]
            return server, False
        if already_running:
            log.warning(
                "adopting the embedded PostgreSQL (pid %s) of a crucible process that is "
                "gone (pid %s); it stops when this process stops",
                info.pid if info is not None else "?",
                owner.pid if owner is not None else "unknown",
            )
        stale = PostgresServer._instances.get(pgdata.expanduser().resolve())
        if stale is not None and not already_running:
            # pgserver keeps one handle per data directory for the life of the process
            # and would hand back this stopped one instead of starting the server again.
            del PostgresServer._instances[stale.pgdata]
            atexit.unregister(stale._cleanup)
        # cleanup_mode None: we stop the server ourselves, deterministically, on exit.
        server = pgserver.get_server(pgdata, cleanup_mode=None)  # type: ignore[attr-defined]
        _write_owner(state_dir, me)
        return server, True


def _stop(state_dir: Path, server: Any) -> None:
    from pgserver import _commands

    _commands.pg_ctl(  # type: ignore[attr-defined]
        ["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user
    )
    _forget_owner(state_dir, ProcessIdentity.current())


@asynccontextmanager
async def open_embedded_postgres(state_dir: Path, *, timeout: float) -> AsyncIterator[str]:
    """Start (or attach to) the embedded server and yield its DSN; stop it on exit.

    Starting, and stopping, may take `timeout` seconds each
    (``database.embedded_start_timeout``).
    """
    pgdata = state_dir / "postgres"
    log.info("starting the embedded PostgreSQL in %s", pgdata)
    with trio.fail_after(timeout):
        server, owned = await trio.to_thread.run_sync(_start, state_dir, pgdata)
    try:
        yield str(server.get_uri())
    finally:
        if owned:
            await _stop_shielded(state_dir, server, timeout)


async def _stop_shielded(state_dir: Path, server: Any, timeout: float) -> None:
    with trio.CancelScope(shield=True), trio.move_on_after(timeout):
        log.info("stopping the embedded PostgreSQL")
        try:
            await trio.to_thread.run_sync(_stop, state_dir, server)
        except Exception:
            log.exception("stopping the embedded PostgreSQL failed")
