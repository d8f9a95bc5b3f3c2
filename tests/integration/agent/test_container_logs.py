"""A kernel's container log is bounded on the host disk and in what a logs call returns
(config keys ``agent.container_log_*`` and ``agent.logs_max_bytes``)."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import trio
from kernel_harness import Kernels

from crucible.agent.service import Agent
from crucible.config import config_from_dict

KiB = 1024


async def test_the_log_on_the_host_and_the_logs_call_are_capped(
    kernels: Kernels, tmp_path: Path
) -> None:
    config = config_from_dict(
        {
            "state_dir": str(tmp_path),
            "agent": {"container_log_max_bytes": 64 * KiB, "container_log_files": 2},
        },
        source="<test>",
    )
    hardening = Agent(config, kernels.driver).containers.hardening
    assert dict(hardening.log_options) == {"max-size": str(64 * KiB), "max-file": "2"}
    # 4 MiB of output straight to the container's stdout (what a runner's stderr is).
    spec = attrs.evolve(
        kernels.spec("import sys\nfor i in range(4096):\n    print('x' * 1023)\n"),
        hardening=hardening,
    )
    container = await kernels.driver.create_and_start(spec)
    kernels.started.append(container)
    with trio.fail_after(60):
        await kernels.driver.wait_for_exit(container)
    with trio.fail_after(30):
        done = await trio.run_process(
            ["docker", "inspect", "-f", "{{json .LogPath}}", container], capture_stdout=True
        )
    log_path = Path(json.loads(done.stdout))
    on_disk = sum(p.stat().st_size for p in log_path.parent.glob(log_path.name + "*"))
    # json-file wraps each line in JSON (about twice its size); two files of 64 KiB.
    assert on_disk <= 2 * 64 * KiB + 4 * KiB, on_disk
    logs = await kernels.driver.logs(container, max_bytes=config.agent.logs_max_bytes)
    assert 0 < len(logs.encode()) <= config.agent.logs_max_bytes
