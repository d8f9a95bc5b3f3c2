"""The kernel contract is written once, and where it cannot be shared, kept equal."""

from __future__ import annotations

from pathlib import Path

from crucible.agent import containers as agent
from crucible.agent.runner import server
from crucible.kernels import contract


def test_the_runner_works_where_the_contract_says() -> None:
    # The runner is bind-mounted alone and cannot import crucible.kernels.
    assert server.WORK_DIR == contract.WORK_DIR


def test_the_runner_the_agent_mounts_is_this_one() -> None:
    assert (Path(agent.RUNNER_HOST_DIR) / "main.py").is_file()
    assert Path(agent.RUNNER_HOST_DIR) == Path(server.__file__).parent


def test_the_base_environment_is_the_kernel_users() -> None:
    assert contract.BASE_ENVIRONMENT["USER"] == contract.WORK_USER
    assert contract.BASE_ENVIRONMENT["HOME"] == contract.WORK_DIR
    assert contract.CONTAINER_USER == f"{contract.WORK_UID}:{contract.WORK_GID}"
