"""The storage of record: the only module that talks to PostgreSQL through triopg.

triopg wraps asyncpg, which lives on asyncio; the caller must run inside a
``trio_asyncio.open_loop()`` (see `crucible.db.open_database`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol

import trio
import triopg


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


class Database:
    """A connection pool with a timeout on every statement."""

    def __init__(self, pool: Any, command_timeout: float) -> None:
        self._pool = pool
        self.command_timeout = command_timeout

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        with trio.fail_after(self.command_timeout):
            conn_cm = self._pool.acquire()
            conn = await conn_cm.__aenter__()
        try:
            yield conn
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(self.command_timeout):
                await conn_cm.__aexit__(None, None, None)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        async with self.connection() as conn, conn.transaction():
            yield conn

    async def execute(self, query: str, *args: Any) -> str:
        async with self.connection() as conn:
            return await conn.execute(query, *args, timeout=self.command_timeout)

    async def executemany(self, query: str, args: Iterable[Sequence[Any]]) -> None:
        async with self.connection() as conn:
            await conn.executemany(query, args, timeout=self.command_timeout)

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        async with self.connection() as conn:
            return await conn.fetch(query, *args, timeout=self.command_timeout)

    async def fetchrow(self, query: str, *args: Any) -> Any:
        async with self.connection() as conn:
            return await conn.fetchrow(query, *args, timeout=self.command_timeout)

    async def fetchval(self, query: str, *args: Any) -> Any:
        async with self.connection() as conn:
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
        yield Database(pool, command_timeout)
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(command_timeout):
            await pool_cm.__aexit__(None, None, None)
