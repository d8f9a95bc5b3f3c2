"""Helpers for the agent integration tests: hostile snippets in kernel-like containers.

(A plain module rather than conftest.py content, so test modules can import the types;
its name is unique in the suite because these test folders are not packages.)
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from typing import Any

import attrs
import trio

from crucible.agent import sandbox
from crucible.agent.docker.driver import DockerDriver
from crucible.agent.docker.specs import BindMount, ContainerSpec, ContainerState

MiB = 1024 * 1024
TEST_RUN_LABEL = "crucible.test-run"
TEST_CASE_LABEL = "crucible.test-case"
#: Debian bookworm with python3 (built by ``crucible images build``); override to test
#: another image.
BASE_IMAGE = os.environ.get("CRUCIBLE_TEST_BASE_IMAGE", "crucible/base:bookworm")
CONTAINER_WORK_DIR = "/home/work"
CONTAINER_IPC_DIR = "/opt/crucible/ipc"


@attrs.frozen
class Outcome:
    state: ContainerState
    logs: str

    def values(self) -> dict[str, str]:
        """``key=value`` lines the probe printed."""
        found: dict[str, str] = {}
        for line in self.logs.splitlines():
            key, sep, value = line.partition("=")
            if sep and key.isidentifier():
                found[key] = value.strip()
        return found


@attrs.define
class Kernels:
    """Starts python3 snippets in containers hardened exactly like kernel containers."""

    driver: DockerDriver
    image: str
    labels: dict[str, str]
    scratch: sandbox.ScratchDir
    started: list[str] = attrs.Factory(list)

    def spec(
        self,
        code: str,
        *,
        memory_bytes: int = 256 * MiB,
        pids_limit: int = 64,
        tmp_size_bytes: int = 8 * MiB,
        cpu_cores: float = 1.0,
        command: Sequence[str] | None = None,
        user: str = "1000:1000",
    ) -> ContainerSpec:
        return ContainerSpec(
            image=self.image,
            name=f"crucible-test-{uuid.uuid4().hex[:16]}",
            labels=self.labels,
            memory_bytes=memory_bytes,
            cpu_cores=cpu_cores,
            pids_limit=pids_limit,
            command=tuple(command) if command is not None else ("python3", "-c", code),
            env={"HOME": CONTAINER_WORK_DIR, "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1"},
            user=user,
            workdir=CONTAINER_WORK_DIR,
            binds=(
                BindMount(str(self.scratch.work), CONTAINER_WORK_DIR, read_only=False),
                BindMount(str(self.scratch.ipc), CONTAINER_IPC_DIR, read_only=True),
            ),
            tmpfs=(sandbox.tmp_mount(tmp_size_bytes),),
        )

    async def start(self, code: str, **limits: Any) -> str:
        container_id: str = await self.driver.create_and_start(self.spec(code, **limits))
        self.started.append(container_id)
        return container_id

    async def run(self, code: str, *, seconds: float = 30.0, **limits: Any) -> Outcome:
        """Run *code* to its end (at most *seconds*) and return its state and output."""
        container_id = await self.start(code, **limits)
        with trio.fail_after(seconds):
            await self.driver.wait_for_exit(container_id)
        state = await self.driver.inspect(container_id)
        return Outcome(state, await self.driver.logs(container_id))
