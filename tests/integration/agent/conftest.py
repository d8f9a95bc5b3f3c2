"""Fixtures for tests against the real Docker engine and real kernel containers.

Every container a test creates carries ``crucible.test-run=1`` (so a cleanup can find
leftovers from a crashed run) and a per-test ``crucible.test-case`` label, and is removed
in a ``finally``. Tests are skipped, not failed, where there is no engine, no base image
or no root (mounting the scratch tmpfs needs it).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from kernel_harness import BASE_IMAGE, TEST_CASE_LABEL, TEST_RUN_LABEL, Kernels, MiB

from crucible.agent import sandbox
from crucible.agent.docker.driver import DockerDriver
from crucible.agent.docker.errors import DockerUnavailable, ImageNotFound
from crucible.config import AgentConfig, PositiveFloat, PositiveInt


@pytest.fixture
async def driver() -> AsyncIterator[DockerDriver]:
    config = AgentConfig(docker_timeout=PositiveFloat(30.0), docker_concurrency=PositiveInt(4))
    try:
        drv = await DockerDriver.connect(config)
    except DockerUnavailable as exc:
        pytest.skip(f"no Docker engine: {exc}")
    try:
        await drv.ping()
        yield drv
    finally:
        with trio.CancelScope(shield=True):
            await drv.aclose()


@pytest.fixture
async def base_image(driver: DockerDriver) -> str:
    try:
        await driver.image_labels(BASE_IMAGE)
    except ImageNotFound:
        pytest.skip(f"{BASE_IMAGE} is not built (crucible images build)")
    return BASE_IMAGE


@pytest.fixture
def case_label() -> dict[str, str]:
    """Labels that identify this test's containers (and only them)."""
    return {TEST_RUN_LABEL: "1", TEST_CASE_LABEL: uuid.uuid4().hex}


@pytest.fixture
async def scratch(tmp_path: Path) -> AsyncIterator[sandbox.ScratchDir]:
    if os.geteuid() != 0:
        pytest.skip("mounting the scratch tmpfs needs root")
    scratch_dir = await sandbox.prepare_scratch(tmp_path / "kernel", size_bytes=16 * MiB)
    try:
        yield scratch_dir
    finally:
        with trio.CancelScope(shield=True):
            await sandbox.release_scratch(scratch_dir.root)


@pytest.fixture
async def kernels(
    driver: DockerDriver,
    base_image: str,
    case_label: dict[str, str],
    scratch: sandbox.ScratchDir,
) -> AsyncIterator[Kernels]:
    k = Kernels(driver, base_image, case_label, scratch)
    try:
        yield k
    finally:
        with trio.CancelScope(shield=True):
            for container_id in k.started:
                await driver.remove(container_id)
            # Also anything of this test that escaped the bookkeeping (e.g. a create
            # that timed out on our side but completed in the engine).
            for row in await driver.list_containers(case_label):
                await driver.remove(row.id)
