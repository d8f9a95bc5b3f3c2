"""The storage of record: the only module that talks to PostgreSQL through triopg.

triopg wraps asyncpg, which lives on asyncio; the caller must run inside a
``trio_asyncio.open_loop()`` (see `crucible.db.open_database`).

A value the database refuses as data (SQLSTATE class 22, or one the driver cannot even
encode) surfaces as `crucible.errors.UnstorableValue`, a 400: whatever slipped past the
edge checks is still the request's fault, never a 500.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol

import asyncpg
import attrs
import trio
import triopg
from asyncpg.exceptions import _base as asyncpg_base

from crucible import errors

log = logging.getLogger(__name__)

#: The server's data exceptions (class 22) and the driver's "cannot encode this argument"
#: (a different class of the same name, not exported by asyncpg).
DATA_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.exceptions.DataError,
    asyncpg_base.DataError,
)
#: What the client is told, by SQLSTATE; the server's own wording stays in the log.
_REASONS = {
    "22021": "it contains a character the database cannot store (such as NUL)",
    "22P05": "it contains a character the database cannot store (such as NUL)",
    "22001": "a value is too long",
    "22003": "a number is out of range",
    "22P02": "a value is malformed",
    "22007": "a date or time is malformed",
    "22008": "a date or time is out of range",
}


def unstorable(exc: Exception) -> errors.UnstorableValue:
    """The problem to raise in place of one of the `DATA_ERRORS`."""
    if isinstance(exc, asyncpg.exceptions.DataError):
        reason = _REASONS.get(exc.sqlstate, "a value is invalid")
    else:
        # An argument the driver cannot encode: an unpaired surrogate, an integer past
        # 64 bits, a value of the wrong type.
        reason = "a value cannot be encoded (an unpaired surrogate, a number out of range?)"
    log.warning("the database refused a value: %s: %s", type(exc).__name__, exc)
    return errors.UnstorableValue(f"A value in the request cannot be stored: {reason}.")


class Connection(Protocol):
    """The subset of a triopg connection Crucible uses."""

    async def execute(self, query: str, *args: Any, timeout: float | None = None) -> str: ...
    async def executemany(
        self, query: str, args: Iterable[Sequence[Any]], *, timeout: float | None = None
    ) -> None: ...
    async def fetch(self, query: str, *args: Any, timeout: float | None = None) -> list[Any]: ...
    async def fetchrow(self, query: str, *args: Any, timeout: float | None = None) -> Any: ...
    async def fetchval(self, query: str, *args: Any, timeout: float | None = None) -> Any: ...
    def transaction(self) -> AbstractAsyncContextManager[Any]: ...


class Executor(Protocol):
    """What a query function (`crucible.db.queries`) runs its statements on: the
    `Database` (one pooled connection per statement), a `Connection` inside the caller's
    transaction, or anything that wraps one of them (the GraphQL loader counts them)."""

    async def execute(self, query: str, *args: Any) -> str: ...
    async def executemany(self, query: str, args: Iterable[Sequence[Any]]) -> None: ...
    async def fetch(self, query: str, *args: Any) -> list[Any]: ...
    async def fetchrow(self, query: str, *args: Any) -> Any: ...
    async def fetchval(self, query: str, *args: Any) -> Any: ...


class Database:
    """A connection pool with a timeout on every statement."""

    def __init__(self, pool: Any, command_timeout: float, dsn: str = "") -> None:
        self._pool = pool
        self.command_timeout = command_timeout
        #: Where the pool connects: a listener (`listen` below) opens its own
        #: connection there, so that holding it does not take one from the pool.
        self.dsn = dsn

    @asynccontextmanager
    async def open_connection(self) -> AsyncIterator[Connection]:
        with trio.fail_after(self.command_timeout):
            conn_cm = self._pool.acquire()
            conn = await conn_cm.__aenter__()
        try:
            yield conn
        except DATA_ERRORS as exc:
            raise unstorable(exc) from exc
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(self.command_timeout):
                await conn_cm.__aexit__(None, None, None)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        async with self.open_connection() as conn, conn.transaction():
            yield conn

    async def execute(self, query: str, *args: Any) -> str:
        async with self.open_connection() as conn:
            return await conn.execute(query, *args, timeout=self.command_timeout)

    async def executemany(self, query: str, args: Iterable[Sequence[Any]]) -> None:
        async with self.open_connection() as conn:
            await conn.executemany(query, args, timeout=self.command_timeout)

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        async with self.open_connection() as conn:
            return await conn.fetch(query, *args, timeout=self.command_timeout)

    async def fetchrow(self, query: str, *args: Any) -> Any:
        async with self.open_connection() as conn:
            return await conn.fetchrow(query, *args, timeout=self.command_timeout)

    async def fetchval(self, query: str, *args: Any) -> Any:
        async with self.open_connection() as conn:
            return await conn.fetchval(query, *args, timeout=self.command_timeout)


@asynccontextmanager
async def open_pool(
    dsn: str, *, min_size: int, max_size: int, connect_timeout: float, command_timeout: float
) -> AsyncIterator[Database]:
    """Open a pool on `dsn`; must run inside a trio-asyncio loop."""
    with trio.fail_after(connect_timeout + 1):
        pool_cm = triopg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            timeout=connect_timeout,
            command_timeout=command_timeout,
        )
        pool = await pool_cm.__aenter__()
    try:
        yield Database(pool, command_timeout, dsn)
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(command_timeout):
            await pool_cm.__aexit__(None, None, None)


# -- a connection that LISTENs ----------------------------------------------------------
#
# Notifications arrive on whatever connection listens, so a listener does not borrow one
# from the pool (it would hold it for ever): it connects to the pool's DSN itself.
# asyncpg says nothing when such an idle connection dies, so its holder checks it
# (`Listening.check`) and, when that fails, listens again: notifications sent in between
# are lost, which the holder must make up for (`crucible.sessions.event_relay`).

#: The ``application_name`` of listening connections.
LISTENER_NAME = "crucible-listener"
#: The round trip `Listening.check` makes.
PING = "SELECT 1"


@attrs.frozen
class Listening:
    """One listening connection: its notifications' payloads, in order; ``None`` in
    their place means some were dropped (more arrived than `listen`'s `buffer` held)."""

    _conn: Any
    _receive: trio.MemoryReceiveChannel[Any]
    _timeout: float

    async def receive(self) -> str | None:
        payload = await self._receive.receive()
        return payload if isinstance(payload, str) else None

    async def check(self) -> None:
        """A round trip on the connection: raises when it is gone (or too slow)."""
        with trio.fail_after(self._timeout):
            await self._conn.fetchval(PING)


@asynccontextmanager
async def listen(db: Database, channel: str, *, buffer: int) -> AsyncIterator[Listening]:
    """LISTEN on `channel` on a new connection to `db`'s server, for the block's duration.

    Raises what the connection raises (OSError, the driver's errors, `trio.TooSlowError`).
    """
    with trio.fail_after(db.command_timeout):
        conn = triopg.connect(
            db.dsn,
            timeout=db.command_timeout,
            # So an operator can tell it apart in pg_stat_activity.
            server_settings={"application_name": LISTENER_NAME},
        )
        await conn.__aenter__()
    try:
        with trio.fail_after(db.command_timeout):
            listening = conn.listen(channel, max_buffer_size=buffer)
            receive = await listening.__aenter__()
        try:
            yield Listening(conn, receive, db.command_timeout)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(db.command_timeout):
                try:
                    await listening.__aexit__(None, None, None)
                except Exception as exc:  # the connection is gone: nothing to undo
                    log.debug("unlisten failed: %r", exc)
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(db.command_timeout):
            try:
                await conn.close()
            except Exception as exc:
                log.debug("closing the listening connection failed: %r", exc)
