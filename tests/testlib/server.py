"""Running a real `ManagerServer` inside a test's nursery."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypedDict, Unpack

import attrs
import trio
import trio_asyncio
from quart import Blueprint

from crucible.config import Config, config_from_dict, deep_merge
from crucible.db.pool import Database
from crucible.keypairs import KeypairRepository, NewKeypair
from crucible.manager.components import open_manager
from crucible.manager.server import Endpoint, ManagerServer
from testlib.database import open_test_pool, reset
from testlib.signing import Credentials, SigningClient

#: The secret test agents present; no agent links in these tests.
CLUSTER_SECRET = "test-cluster-secret-0123456789abcdef"

#: Values every test manager uses: port 0, fast usage flushes, no stale cache.
BASE_SETTINGS: dict[str, Any] = {
    "manager": {"bind": "127.0.0.1:0", "shutdown_timeout": 2.0},
    "auth": {"usage_flush_interval": 0.05, "keypair_cache_ttl": 0.05},
    "database": {"pool_max_size": 4, "command_timeout": 10.0},
    "logging": {"level": "WARNING"},
}


def make_config(
    dsn: str, state_dir: Path, overrides: Mapping[str, Any] | None = None
) -> Config:
    data = deep_merge(BASE_SETTINGS, {"state_dir": str(state_dir), "database": {"dsn": dsn}})
    return config_from_dict(deep_merge(data, overrides or {}), source="<test>")


class ManagerOptions(TypedDict, total=False):
    """What a test may add to its manager."""

    #: Test-only routes, e.g. to exercise a guard no real route uses yet.
    blueprints: tuple[Blueprint, ...]
    #: Storage plugins registered besides the installed ones.
    storage_plugins: tuple[object, ...]


@asynccontextmanager
async def running_manager(
    config: Config, db: Database, **options: Unpack[ManagerOptions]
) -> AsyncIterator[tuple[ManagerServer, Endpoint]]:
    """Serve until the block ends, then stop gracefully (bounded by a timeout)."""
    async with open_manager(
        config,
        db,
        cluster_secret=CLUSTER_SECRET,
        storage_plugins=options.get("storage_plugins", ()),
    ) as components:
        server = ManagerServer(components)
        for blueprint in options.get("blueprints", ()):
            server.app.register_blueprint(blueprint)
        async with _serving(server) as endpoint:
            yield server, endpoint


@asynccontextmanager
async def _serving(server: ManagerServer) -> AsyncIterator[Endpoint]:
    async with trio.open_nursery() as nursery:
        with trio.fail_after(10):
            endpoint: Endpoint = await nursery.start(server.run)
        try:
            yield endpoint
        finally:
            server.stop()
            # A graceful stop that hangs must fail the test, not the whole run.
            nursery.cancel_scope.deadline = trio.current_time() + 10


@attrs.define
class Harness:
    """A running manager, the database behind it and a client signing as a user."""

    server: ManagerServer
    url: str
    config: Config
    db: Database
    admin: Credentials
    user: Credentials
    client: SigningClient

    def as_admin(self) -> SigningClient:
        return self.client.with_credentials(self.admin)


@asynccontextmanager
async def open_harness(
    config: Config, db: Database, **options: Unpack[ManagerOptions]
) -> AsyncIterator[Harness]:
    """A manager on `db` with an admin and a user keypair, and a client for the user."""
    repo = KeypairRepository(db)
    admin_kp = await repo.create(NewKeypair("admin@test", is_admin=True))
    user_kp = await repo.create(NewKeypair("user@test"))
    admin = Credentials(admin_kp.access_key, admin_kp.secret_key)
    user = Credentials(user_kp.access_key, user_kp.secret_key)
    async with running_manager(config, db, **options) as (server, endpoint):
        client = SigningClient(endpoint.url, user)
        try:
            yield Harness(server, endpoint.url, config, db, admin, user, client)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await client.aclose()


@asynccontextmanager
async def open_standalone_harness(config: Config) -> AsyncIterator[Harness]:
    """Everything from the asyncio loop up, for tests that cannot use async fixtures
    (pytest-trio reuses fixture values across Hypothesis examples)."""
    async with trio_asyncio.open_loop(), open_test_pool(config.database.dsn) as db:
        await reset(db)
        async with open_harness(config, db) as harness:
            yield harness
