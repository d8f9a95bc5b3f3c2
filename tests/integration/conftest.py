"""Fixtures for tests against a real PostgreSQL and a real manager on 127.0.0.1:0.

One embedded server runs per test session (migrated once); each test starts with
emptied tables. triopg needs an asyncio loop inside trio: the `asyncio_loop` fixture
opens it, and since pytest-trio runs every fixture and the test in one shared
contextvars context, the loop it opens is the current one for all of them.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio_asyncio

from crucible.config import Config
from crucible.db.pool import Database
from crucible.keypairs import KeypairRepository
from testlib.database import embedded_server, migrate_once, open_test_pool, reset
from testlib.server import Harness, make_config, open_harness


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "manager_config(overrides): settings laid over the test manager's config"
    )


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    # Not under pytest's basetemp: a second pytest run by the same user prunes old
    # basetemps and would delete the data directory under a running server. A short
    # path also keeps PostgreSQL's unix socket path under its ~100-byte limit.
    base = Path(tempfile.mkdtemp(prefix="crucible-pg-"))
    try:
        with embedded_server(base / "data") as dsn:
            migrate_once(dsn)
            yield dsn
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
async def asyncio_loop() -> AsyncIterator[Any]:
    async with trio_asyncio.open_loop() as loop:
        yield loop


@pytest.fixture
async def db(pg_dsn: str, asyncio_loop: Any) -> AsyncIterator[Database]:
    async with open_test_pool(pg_dsn) as database:
        with trio.fail_after(10):
            await reset(database)
        yield database


@pytest.fixture
def keypairs(db: Database) -> KeypairRepository:
    return KeypairRepository(db)


@pytest.fixture
def config_file(tmp_path: Path, pg_dsn: str) -> Path:
    """A configuration file for `crucible` commands run in-process (``crucible.cli.main``)
    on the session's PostgreSQL; a test may append tables to it."""
    path = tmp_path / "crucible.toml"
    path.write_text(
        f'state_dir = "{tmp_path / "state"}"\n'
        f"[database]\ndsn = {json.dumps(pg_dsn)}\n"
        '[logging]\nlevel = "WARNING"\n',
        encoding="utf-8",
    )
    return path


@pytest.fixture
def manager_config(request: pytest.FixtureRequest, pg_dsn: str, tmp_path: Path) -> Config:
    marker = request.node.get_closest_marker("manager_config")
    overrides: dict[str, Any] = marker.args[0] if marker else {}
    return make_config(pg_dsn, tmp_path / "state", overrides)


@pytest.fixture
async def manager(manager_config: Config, db: Database) -> AsyncIterator[Harness]:
    async with open_harness(manager_config, db) as harness:
        yield harness
