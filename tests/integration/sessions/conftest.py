"""A whole single-host cluster for session tests: the manager and a real agent with the
real Docker engine, on the test database.

Skipped when Docker or the Python kernel image is missing; `scripts/test` provides both.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from crucible.db.pool import Database
from testlib.agents import running_agents
from testlib.server import make_config, open_harness
from testlib.sessions import Cluster, removing_containers, start_session

PYTHON_IMAGE_PREFIX = "crucible/kernel-python:"


def _docker_ok() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _has_python_image() -> bool:
    out = subprocess.run(
        ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"],
        capture_output=True,
        text=True,
        timeout=20,
    ).stdout
    return any(line.startswith(PYTHON_IMAGE_PREFIX) for line in out.splitlines())


@pytest.fixture(scope="session")
def docker_ready() -> None:
    if not _docker_ok():
        pytest.skip("the Docker engine is not running (scripts/test starts it)")
    if not _has_python_image():
        pytest.skip("the Python kernel image is missing (crucible images build python)")


@pytest.fixture
def short_state_dir() -> Iterator[Path]:
    # Kernel runner sockets live under the state dir; unix socket paths must stay short.
    path = Path(tempfile.mkdtemp(prefix="crs-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


CLUSTER_SETTINGS: dict[str, Any] = {
    "sessions": {"exec_flush_interval": 1.0, "agent_lost_after": 6.0},
    "agent": {"heartbeat_interval": 1.0},
}


@pytest.fixture
async def cluster(
    docker_ready: None,
    request: pytest.FixtureRequest,
    pg_dsn: str,
    short_state_dir: Path,
    db: Database,
) -> AsyncIterator[Cluster]:
    marker = request.node.get_closest_marker("manager_config")
    overrides: dict[str, Any] = marker.args[0] if marker else {}
    agent_id = f"test-{short_state_dir.name}"
    config = make_config(
        pg_dsn,
        short_state_dir,
        {
            **CLUSTER_SETTINGS,
            **overrides,
            "agent": {**CLUSTER_SETTINGS["agent"], **overrides.get("agent", {}), "id": agent_id},
        },
    )
    async with removing_containers(agent_id):
        async with open_harness(config, db) as harness:
            async with running_agents(harness, [config], timeout=30) as (agent,):
                yield Cluster(harness, agent, config)


@pytest.fixture
async def session(cluster: Cluster) -> str:
    """A Python session of the cluster's user: its token."""
    return await start_session(cluster.client)
