"""PostgreSQL access: the pool, the embedded server, migrations and queries."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from crucible.config import Config
from crucible.db.embedded import open_embedded_postgres
from crucible.db.migrations import migrate
from crucible.db.pool import Database, open_pool

__all__ = ["Database", "open_database"]


@asynccontextmanager
async def open_database(config: Config, *, run_migrations: bool = True) -> AsyncIterator[Database]:
    """Open the configured database (embedded when no DSN), migrated and ready.

    Must run inside ``trio_asyncio.open_loop()``.
    """
    async with AsyncExitStack() as stack:
        dsn = config.database.dsn
        if not dsn:
            dsn = await stack.enter_async_context(
                open_embedded_postgres(
                    config.state_path, timeout=config.database.embedded_start_timeout
                )
            )
        db = await stack.enter_async_context(
            open_pool(
                dsn,
                min_size=config.database.pool_min_size,
                max_size=config.database.pool_max_size,
                connect_timeout=config.database.connect_timeout,
                command_timeout=config.database.command_timeout,
            )
        )
        if run_migrations:
            await migrate(db)
        yield db
