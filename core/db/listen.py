"""Notifications between managers: LISTEN on one channel of the database, for as long
as a block lasts (the NOTIFY side is a statement, in `crucible.db.queries`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol, cast

import trio

from crucible.db.pool import Database

#: Notifications held for a slow reader; beyond them one "overflow" marker stands for
#: the rest (a reader that only wants to know *that* something happened loses nothing).
BUFFER = 64


class _Listening(Protocol):
    def listen(
        self, channel: str, max_buffer_size: int
    ) -> AbstractAsyncContextManager[trio.MemoryReceiveChannel[object]]: ...


@asynccontextmanager
async def listening(db: Database, channel: str) -> AsyncIterator[trio.MemoryReceiveChannel[object]]:
    """Notifications on `channel` (their payloads) while the block runs, on a connection
    of `db`'s pool held meanwhile."""
    async with db.open_connection() as conn:
        async with cast(_Listening, conn).listen(channel, max_buffer_size=BUFFER) as notes:
            yield notes
