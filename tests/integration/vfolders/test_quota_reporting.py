"""Where nothing holds a folder's caps inside sessions, the manager says so: once at
start-up (a warning naming the host and its filesystem) and in every folder's info."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from crucible.config import Config
from testlib.loopfs import tmpfs_directory
from testlib.server import Harness, make_config

from .folder_api import create


@pytest.fixture
def tmpfs_root() -> Iterator[Path]:
    with tmpfs_directory() as path:
        yield path


@pytest.fixture
def manager_config(pg_dsn: str, tmp_path: Path, tmpfs_root: Path) -> Config:
    """Two hosts: one on tmpfs (no quotas anywhere), one on the default state dir."""
    hosts = {"shm": {"path": str(tmpfs_root / "vfolders")}, "local": {}}
    return make_config(pg_dsn, tmp_path / "state", {"storage": {"hosts": hosts}})


async def test_a_plain_filesystem_is_announced_and_reported(
    manager: Harness, tmpfs_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # pytest-trio starts async fixtures (the manager) inside the test's call phase.
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.name == "crucible.vfolders.hosts" and r.levelno == logging.WARNING
    ]
    shm = [w for w in warnings if w.startswith("storage host 'shm':")]
    assert len(shm) == 1, warnings
    assert "size and file count are not enforced in sessions" in shm[0]
    assert f"{tmpfs_root / 'vfolders'} is on tmpfs" in shm[0]

    client = manager.client
    assert (await create(client, "plain", ["shm"])).status_code == 201
    info = (await client.get("/folders/plain")).json()
    enforced = info["quota_enforced"]
    assert (enforced["size"], enforced["files"]) == ("api", "api")
    assert "not enforced in sessions" in enforced["detail"] and "tmpfs" in enforced["detail"]
    # The fields the 18.12 client reads are all still there.
    assert {"name", "id", "is_owner", "permission", "numFiles"} <= set(info)

    # The default host, on whatever the state dir is: the same keys, both caps named.
    assert (await create(client, "default", ["local"])).status_code == 201
    default = (await client.get("/folders/default")).json()["quota_enforced"]
    assert default["size"] in ("filesystem", "api") and default["files"] in ("filesystem", "api")
    assert str(Path(manager.config.state_dir) / "vfolders") in default["detail"]
