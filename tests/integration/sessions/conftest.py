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
import trio

from crucible.agent.service import Agent
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


#: Pooled kernels a `kernel_start` = "pooled" cluster keeps ready.
POOLED_KERNELS = 2


@pytest.fixture
def kernel_start() -> str:
    """How the cluster's sessions start: "cold" (a container each) or "pooled" (claimed
    from a warm pool of python kernels). A module that runs its tests both ways
    overrides this fixture with ``params=["cold", "pooled"]``."""
    return "cold"


def cold_and_pooled() -> tuple[Any, Any]:
    """Fixtures that run each test of a module twice, on cold and on pooled kernels:
    ``kernel_start, pooled_kernels_claimed = cold_and_pooled()`` in the module. The
    second checks that the pooled run really claimed its kernels from the pool."""

    @pytest.fixture(params=["cold", "pooled"])
    def kernel_start(request: pytest.FixtureRequest) -> str:
        return str(request.param)

    @pytest.fixture(autouse=True)
    async def pooled_kernels_claimed(cluster: Cluster, kernel_start: str) -> AsyncIterator[None]:
        yield
        if kernel_start == "pooled":
            status = cluster.agent.pool.status()
            assert status.claims >= 1 and status.misses == 0, status

    return kernel_start, pooled_kernels_claimed


async def wait_for_pool(agent: Agent, ready: int) -> None:
    """Until `ready` kernels of the agent's pool are ready."""
    with trio.fail_after(60):
        while agent.pool.size < ready:
            await trio.sleep(0.05)


@pytest.fixture
async def cluster(
    docker_ready: None,
    kernel_start: str,
    request: pytest.FixtureRequest,
    pg_dsn: str,
    short_state_dir: Path,
    db: Database,
) -> AsyncIterator[Cluster]:
    marker = request.node.get_closest_marker("manager_config")
    overrides: dict[str, Any] = marker.args[0] if marker else {}
    if kernel_start == "pooled":
        pool = {"sizes": {"python": POOLED_KERNELS}, **overrides.get("pool", {})}
        overrides = {**overrides, "pool": pool}
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
                if kernel_start == "pooled" and "pool" not in (marker.args[0] if marker else {}):
                    # (A test that changes [pool] waits for what it expects itself.)
                    await wait_for_pool(agent, POOLED_KERNELS)
                yield Cluster(harness, agent, config)


@pytest.fixture
async def session(cluster: Cluster) -> str:
    """A Python session of the cluster's user: its token."""
    return await start_session(cluster.client)
