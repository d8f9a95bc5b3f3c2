"""Versioned schema migrations, applied at start-up.

Each ``migrations/NNNN_name.sql`` file runs once, in order, inside one transaction
that holds an advisory lock, so two processes starting together do not race: the
second waits, then finds nothing left to do.
"""

from __future__ import annotations

import logging
import re
from importlib import resources

import attrs

from crucible.db.pool import Database
from crucible.db.queries import locks

log = logging.getLogger(__name__)

#: An arbitrary constant naming Crucible's migration lock in pg_advisory_xact_lock.
MIGRATION_LOCK_ID = 0x43525543  # "CRUC"
_NAME_RE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@attrs.frozen
class Migration:
    version: int
    name: str
    sql: str


def bundled_migrations() -> list[Migration]:
    found = []
    for entry in resources.files("crucible.db").joinpath("migrations").iterdir():
        if match := _NAME_RE.match(entry.name):
            found.append(Migration(int(match[1]), entry.name, entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration versions: {versions}")
    return found


async def migrate(db: Database, migrations: list[Migration] | None = None) -> list[str]:
    """Bring the schema up to date; returns the names of the migrations applied now."""
    migrations = bundled_migrations() if migrations is None else migrations
    applied_now = []
    async with db.transaction() as conn:
        await locks.hold(conn, MIGRATION_LOCK_ID)
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations")}
        for migration in migrations:
            if migration.version in done:
                continue
            log.info("applying migration %s", migration.name)
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                migration.version,
                migration.name,
            )
            applied_now.append(migration.name)
    return applied_now
