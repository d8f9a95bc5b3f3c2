"""The storage of record: migrations, usage flushing, the embedded server's lifecycle."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from crucible.config import config_from_dict
from crucible.db import open_database
from crucible.db.migrations import Migration, bundled_migrations, migrate
from crucible.db.pool import Database
from crucible.keypairs import KeypairCache, KeypairRepository, NewKeypair
from testlib.database import open_test_pool, with_database_name
from testlib.server import Harness
from testlib.signing import Credentials

TIMEOUT = 20


@pytest.fixture
async def scratch_dsn(db: Database, pg_dsn: str) -> AsyncIterator[str]:
    """A brand-new, empty database on the session's server."""
    name = "scratch_" + secrets.token_hex(4)
    await db.execute(f"CREATE DATABASE {name}")
    try:
        yield with_database_name(pg_dsn, name)
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(10):
            await db.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_bundled_migrations_are_ordered() -> None:
    migrations = bundled_migrations()
    assert migrations, "the initial schema must ship with the package"
    versions = [m.version for m in migrations]
    assert versions == sorted(set(versions))
    assert migrations[0].name == "0001_initial.sql"


async def test_migrations_are_idempotent(scratch_dsn: str) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_test_pool(scratch_dsn) as scratch:
            first = await migrate(scratch)
            assert first == [m.name for m in bundled_migrations()]
            assert await migrate(scratch) == []
            # The seed rows were written once, not once per call.
            assert await scratch.fetchval("SELECT count(*) FROM resource_policies") == 1
            assert await scratch.fetchval("SELECT value FROM manager_state") == "running"


async def test_concurrent_migrations_apply_once(scratch_dsn: str) -> None:
    results: list[list[str]] = []
    with trio.fail_after(TIMEOUT):
        async with open_test_pool(scratch_dsn) as one, open_test_pool(scratch_dsn) as two:

            async def run(database: Database) -> None:
                results.append(await migrate(database))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(run, one)
                nursery.start_soon(run, two)
            applied = await one.fetchval("SELECT count(*) FROM schema_migrations")
    assert sorted(results, key=len) == [[], [m.name for m in bundled_migrations()]]
    assert applied == len(bundled_migrations())


async def test_failing_migration_rolls_back(scratch_dsn: str) -> None:
    broken = [
        *bundled_migrations(),
        Migration(9999, "9999_broken.sql", "CREATE TABLE half_done (x int); SELECT nonsense;"),
    ]
    with trio.fail_after(TIMEOUT):
        async with open_test_pool(scratch_dsn) as scratch:
            with pytest.raises(Exception, match="nonsense"):
                await migrate(scratch, broken)
            # All or nothing: not even the good migrations stayed.
            assert await scratch.fetchval("SELECT to_regclass('keypairs')") is None
            assert await migrate(scratch) == [m.name for m in bundled_migrations()]


async def test_usage_is_flushed_to_the_database(
    manager: Harness, keypairs: KeypairRepository
) -> None:
    with trio.fail_after(TIMEOUT):
        for _ in range(3):
            assert (await manager.client.get("/auth/test")).status_code == 200
        while True:
            kp = await keypairs.get(manager.user.access_key)
            assert kp is not None
            if kp.num_queries == 3:
                break
            await trio.sleep(0.02)
    assert kp.last_used is not None
    admin = await keypairs.get(manager.admin.access_key)
    assert admin is not None and admin.num_queries == 0 and admin.last_used is None


async def test_failed_requests_are_not_recorded_as_usage(
    manager: Harness, keypairs: KeypairRepository
) -> None:
    forged = Credentials(manager.user.access_key, "y" * 40)
    with trio.fail_after(TIMEOUT):
        assert (await manager.client.get("/auth/test", creds=forged)).status_code == 401
        await manager.server.components.keypair_cache.flush()
    kp = await keypairs.get(manager.user.access_key)
    assert kp is not None and kp.num_queries == 0


async def test_cache_flushes_on_cancel(db: Database, keypairs: KeypairRepository) -> None:
    kp = await keypairs.create(NewKeypair("flush@test"))
    cache = KeypairCache(keypairs, ttl=1.0, flush_interval=3600)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(cache.run)
            cache.record_use(kp.access_key)
            cache.record_use(kp.access_key)
            nursery.cancel_scope.cancel()
    stored = await keypairs.get(kp.access_key)
    assert stored is not None and stored.num_queries == 2


async def test_cache_sees_changes_made_through_it_at_once(keypairs: KeypairRepository) -> None:
    kp = await keypairs.create(NewKeypair("cached@test"))
    cache = KeypairCache(keypairs, ttl=3600, flush_interval=3600)
    with trio.fail_after(TIMEOUT):
        assert (await cache.get(kp.access_key)) == kp
        await keypairs.set_active(kp.access_key, False)
        assert (await cache.get(kp.access_key)) == kp  # still cached
        cache.invalidate(kp.access_key)
        fresh = await cache.get(kp.access_key)
        assert fresh is not None and not fresh.is_active
        assert await cache.get("AKIANOSUCHKEY0000000") is None


async def test_bootstrap_admin_is_created_once(keypairs: KeypairRepository) -> None:
    with trio.fail_after(TIMEOUT):
        results: list[Any] = []

        async def boot() -> None:
            results.append(
                await keypairs.ensure_bootstrap_admin(
                    NewKeypair("admin@boot", is_admin=True), keys_given=False
                )
            )

        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(boot)
    created = [kp for kp, was_created in results if was_created]
    assert len(created) == 1
    assert {kp.access_key for kp, _ in results} == {created[0].access_key}
    assert created[0].is_admin


async def test_bootstrap_admin_with_explicit_keys(keypairs: KeypairRepository) -> None:
    ak, sk = "AKIABOOTSTRAP0000000", "s" * 40
    admin = NewKeypair("admin@boot", is_admin=True, access_key=ak, secret_key=sk)
    kp, created = await keypairs.ensure_bootstrap_admin(admin, keys_given=True)
    assert created and kp.access_key == ak and kp.secret_key == sk
    again, created = await keypairs.ensure_bootstrap_admin(admin, keys_given=True)
    assert not created and again == kp


@pytest.fixture
def private_dir() -> Iterator[Path]:
    # Outside pytest's basetemp, which a concurrent pytest run may prune (see conftest).
    path = Path(tempfile.mkdtemp(prefix="crucible-embedded-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def test_embedded_database_survives_restart(private_dir: Path, asyncio_loop: Any) -> None:
    # Its own state dir: this test starts and stops a second embedded server.
    tmp_path = private_dir
    config = config_from_dict({"state_dir": str(tmp_path / "s")})
    with trio.fail_after(60):
        async with open_database(config) as first:
            kp = await KeypairRepository(first).create(NewKeypair("durable@test"))
        async with open_database(config) as second:
            stored = await KeypairRepository(second).get(kp.access_key)
            assert await migrate(second) == []
    assert stored == kp
    assert (tmp_path / "s" / "postgres" / "PG_VERSION").exists()
