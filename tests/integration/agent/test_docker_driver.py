"""The Docker driver against the real engine: lifecycle, lookups, errors, timeouts."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import trio
from kernel_harness import BASE_IMAGE, TEST_RUN_LABEL, Kernels, MiB

from crucible.agent.docker.answers import stats_from_docker
from crucible.agent.docker.driver import DockerDriver
from crucible.agent.docker.errors import (
    ContainerConflict,
    ContainerNotFound,
    DockerError,
    DockerTimeout,
    DockerUnavailable,
    ImageNotFound,
)
from crucible.agent.docker.specs import ContainerSpec
from crucible.config import AgentConfig, PositiveFloat
from crucible.protocol.stats import KernelStats

SPEC_STATS_KEYS = {
    "cpu_used",
    "mem_max_bytes",
    "mem_cur_bytes",
    "net_rx_bytes",
    "net_tx_bytes",
    "io_read_bytes",
    "io_write_bytes",
    "io_max_scratch_size",
    "io_cur_scratch_size",
}

SLEEPER = "import time\nprint('hello from the kernel', flush=True)\ntime.sleep(120)\n"


async def _wait_for_logs(driver: DockerDriver, container_id: str, text: str) -> str:
    with trio.fail_after(10):
        while True:
            logs: str = await driver.logs(container_id)
            if text in logs:
                return logs
            await trio.sleep(0.1)


async def test_lifecycle(kernels: Kernels, driver: DockerDriver) -> None:
    container_id = await kernels.start(SLEEPER, memory_bytes=128 * MiB, cpu_cores=0.25)

    state = await driver.inspect(container_id)
    assert state.id == container_id
    assert state.running
    assert state.status == "running"
    assert state.started_at is not None and state.started_at.tzinfo is not None
    assert state.finished_at is None
    assert state.labels[TEST_RUN_LABEL] == "1"

    logs = await _wait_for_logs(driver, container_id, "hello from the kernel")
    assert logs.endswith("\n")

    stats = await driver.stats(container_id)
    as_dict = stats.as_dict()
    assert set(as_dict) == SPEC_STATS_KEYS
    assert all(type(value) is int for value in as_dict.values())
    assert 0 < stats.mem_cur_bytes <= 128 * MiB
    assert stats.mem_max_bytes >= stats.mem_cur_bytes
    assert stats.net_rx_bytes == stats.net_tx_bytes == 0  # --network none

    listed = await driver.list_containers(kernels.labels)
    assert [row.id for row in listed] == [container_id]
    assert listed[0].status == "running"
    assert listed[0].image == kernels.image

    assert await driver.kill(container_id)
    with trio.fail_after(15):
        assert await driver.wait_for_exit(container_id) == 137
    state = await driver.inspect(container_id)
    assert not state.running
    assert state.exit_code == 137
    assert not state.oom_killed
    assert state.finished_at is not None and state.started_at is not None
    assert state.finished_at >= state.started_at

    # A stopped container: killing is a no-op, stats are zeros, it is still listed.
    assert not await driver.kill(container_id)
    assert set((await driver.stats(container_id)).as_dict()) == SPEC_STATS_KEYS
    assert [row.status for row in await driver.list_containers(kernels.labels)] == ["exited"]

    assert await driver.remove(container_id)
    assert not await driver.remove(container_id)  # already gone: tolerated
    with pytest.raises(ContainerNotFound):
        await driver.inspect(container_id)
    with pytest.raises(ContainerNotFound):
        await driver.kill(container_id)
    assert await driver.list_containers(kernels.labels) == []


async def test_wait_for_exit_follows_the_callers_deadline(
    kernels: Kernels, driver: DockerDriver
) -> None:
    container_id = await kernels.start(SLEEPER)
    started = trio.current_time()
    with trio.move_on_after(1.0) as scope:
        await driver.wait_for_exit(container_id)
    assert scope.cancelled_caught
    assert trio.current_time() - started < 3.0
    assert (await driver.inspect(container_id)).running


async def test_exit_code_and_logs_of_a_finished_container(kernels: Kernels) -> None:
    out = await kernels.run("import sys\nprint('out')\nprint('err', file=sys.stderr)\nsys.exit(3)")
    assert out.state.exit_code == 3
    assert not out.state.running
    assert "out" in out.logs and "err" in out.logs


async def test_logs_are_bounded(kernels: Kernels, driver: DockerDriver) -> None:
    out = await kernels.run("for i in range(5000): print(f'line {i}')")
    assert out.state.exit_code == 0
    tail = await driver.logs(out.state.id, tail_lines=10)
    assert tail.splitlines() == [f"line {i}" for i in range(4990, 5000)]
    small = await driver.logs(out.state.id, max_bytes=100)
    assert len(small.encode()) <= 100
    assert small.endswith("line 4999\n")


async def test_remove_of_a_missing_container_is_tolerated(driver: DockerDriver) -> None:
    assert not await driver.remove("crucible-test-no-such-container-4f1c")


async def test_missing_image(kernels: Kernels, driver: DockerDriver) -> None:
    spec = attrs.evolve(kernels.spec("pass"), image="crucible/no-such-image:never")
    with pytest.raises(ImageNotFound):
        await driver.create_and_start(spec)
    with pytest.raises(ImageNotFound):
        await driver.image_labels("crucible/no-such-image:never")
    assert await driver.list_containers(kernels.labels) == []


async def test_failed_start_leaves_no_container(kernels: Kernels, driver: DockerDriver) -> None:
    # (A missing program does not fail the start: docker-init is what runs first.)
    spec = attrs.evolve(kernels.spec("pass"), user="no-such-user")
    with pytest.raises(DockerError) as info:
        await driver.create_and_start(spec)
    assert isinstance(info.value.__cause__, Exception)  # raised from the SDK's error
    assert await driver.list_containers(kernels.labels) == []


async def test_name_conflict(kernels: Kernels, driver: DockerDriver) -> None:
    spec = kernels.spec(SLEEPER)
    kernels.started.append(await driver.create_and_start(spec))
    with pytest.raises(ContainerConflict):
        await driver.create_and_start(spec)


async def test_images_and_labels(driver: DockerDriver, base_image: str) -> None:
    labels = await driver.image_labels(base_image)
    assert isinstance(labels, dict)
    for key in labels:
        images = await driver.list_images(key)
        assert any(base_image in image.tags for image in images)
        assert all(key in image.labels for image in images)
    assert await driver.list_images("crucible.test-no-image-has-this-label") == []


async def test_list_containers_needs_a_filter(driver: DockerDriver) -> None:
    with pytest.raises(ValueError):
        await driver.list_containers({})


async def test_timeouts_become_driver_errors(driver: DockerDriver) -> None:
    slow = DockerDriver(driver._client, AgentConfig(docker_timeout=PositiveFloat(1e-9)))
    with pytest.raises(DockerTimeout):
        await slow.inspect("anything")
    with pytest.raises(DockerUnavailable):
        await slow.ping()


async def test_unreachable_engine() -> None:
    with pytest.raises(DockerUnavailable):
        await DockerDriver.connect(
            AgentConfig(docker_timeout=PositiveFloat(5.0)),
            base_url="unix:///nonexistent/docker.sock",
        )


def test_spec_refuses_root_and_bad_limits() -> None:
    base: dict[str, Any] = {
        "image": BASE_IMAGE,
        "name": "crucible-test-x",
        "labels": {},
        "memory_bytes": 64 * MiB,
        "cpu_cores": 0.5,
        "pids_limit": 16,
    }
    spec = ContainerSpec(**base, command=["a", "b"])
    assert spec.command == ("a", "b")
    assert spec.nano_cpus == 500_000_000
    for bad in (
        {"user": "root"},
        {"user": "0:0"},
        {"memory_bytes": 1024},
        {"cpu_cores": 0.0},
        {"cpu_cores": float("nan")},
        {"pids_limit": 0},
        {"name": "/bad name"},
    ):
        with pytest.raises(ValueError):
            ContainerSpec(**{**base, **bad})


# -- stats parsing (no engine needed) -------------------------------------------------------

CGROUP_V1_SAMPLE: dict[str, Any] = {
    "cpu_stats": {"cpu_usage": {"total_usage": 2_500_000_000}},
    "memory_stats": {
        "usage": 50_000_000,
        "max_usage": 80_000_000,
        "stats": {"total_inactive_file": 10_000_000, "cache": 12_000_000},
    },
    "networks": {"eth0": {"rx_bytes": 100, "tx_bytes": 200}},
    "blkio_stats": {
        "io_service_bytes_recursive": [
            {"major": 8, "minor": 0, "op": "Read", "value": 4096},
            {"major": 8, "minor": 0, "op": "Write", "value": 8192},
            {"major": 8, "minor": 0, "op": "Sync", "value": 12288},
            {"major": 8, "minor": 0, "op": "Total", "value": 12288},
        ]
    },
}

CGROUP_V2_SAMPLE: dict[str, Any] = {
    "cpu_stats": {"cpu_usage": {"total_usage": 1_234_567_890}},
    "memory_stats": {"usage": 30_000_000, "stats": {"inactive_file": 5_000_000, "anon": 1}},
    "blkio_stats": {
        "io_service_bytes_recursive": [
            {"major": 254, "minor": 0, "op": "read", "value": 100},
            {"major": 254, "minor": 0, "op": "write", "value": 300},
        ]
    },
}


def test_stats_from_cgroup_v1() -> None:
    stats = stats_from_docker(CGROUP_V1_SAMPLE)
    assert stats == KernelStats(
        cpu_used=2500,
        mem_max_bytes=80_000_000,
        mem_cur_bytes=40_000_000,
        net_rx_bytes=100,
        net_tx_bytes=200,
        io_read_bytes=4096,
        io_write_bytes=8192,
    )


def test_stats_from_cgroup_v2() -> None:
    stats = stats_from_docker(CGROUP_V2_SAMPLE)
    assert stats.cpu_used == 1234
    assert stats.mem_cur_bytes == 25_000_000
    assert stats.mem_max_bytes == 25_000_000  # v2 reports no peak
    assert (stats.io_read_bytes, stats.io_write_bytes) == (100, 300)
    assert (stats.net_rx_bytes, stats.net_tx_bytes) == (0, 0)


def test_stats_of_an_empty_or_odd_sample_are_zeros() -> None:
    assert stats_from_docker({}) == KernelStats()
    odd = {
        "memory_stats": {"usage": None},
        "blkio_stats": {"io_service_bytes_recursive": None},
        "networks": None,
        "cpu_stats": {"cpu_usage": {"total_usage": True}},
    }
    assert stats_from_docker(odd) == KernelStats()
