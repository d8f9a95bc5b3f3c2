"""One embedded PostgreSQL per test session, migrated once, emptied before each test."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import trio
import trio_asyncio

from crucible.db.migrations import migrate
from crucible.db.pool import Database, open_pool

#: Tables whose content the first migration seeds; they are re-seeded after each TRUNCATE.
SEED_SQL = (
    "INSERT INTO resource_policies (name) VALUES ('default')",
    "INSERT INTO manager_state (key, value) VALUES ('status', 'running')",
)


@contextmanager
def embedded_server(pgdata: Path) -> Iterator[str]:
    """Start pgserver in `pgdata`, yield its DSN, stop it afterwards."""
    import pgserver
    from pgserver import _commands

    server: Any = pgserver.get_server(pgdata, cleanup_mode=None)  # type: ignore[attr-defined]
    try:
        yield str(server.get_uri())
    finally:
        _commands.pg_ctl(  # type: ignore[attr-defined]
            ["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user
        )


def with_database_name(dsn: str, name: str) -> str:
    """The same server, another database (pgserver DSNs name it in the path)."""
    return re.sub(r"/[^/?]*(\?|$)", lambda m: f"/{name}{m[1]}", dsn, count=1)


@asynccontextmanager
async def open_test_pool(dsn: str, *, max_size: int = 4) -> AsyncIterator[Database]:
    async with open_pool(
        dsn, min_size=1, max_size=max_size, connect_timeout=10.0, command_timeout=10.0
    ) as db:
        yield db


def migrate_once(dsn: str) -> None:
    """Apply the migrations from synchronous code (a session fixture)."""

    async def main() -> None:
        with trio.fail_after(60):
            async with trio_asyncio.open_loop(), open_test_pool(dsn) as db:
                await migrate(db)

    trio.run(main)


async def reset(db: Database) -> None:
    """Empty every table but the migration log, then seed what the migration seeds."""
    async with db.transaction() as conn:
        rows = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'schema_migrations'"
        )
        names = ", ".join(f'"{row["tablename"]}"' for row in rows)
        await conn.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
        for statement in SEED_SQL:
            await conn.execute(statement)
