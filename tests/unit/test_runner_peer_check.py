"""The runner-peer check on /proc as the kernel shows it (real containers:
tests/integration/agent/test_runner_peer.py)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from crucible.agent.cgroups import oom_kill_count
from crucible.agent.kernel.runner_peer import (
    PeerRefused,
    check_runner_peer,
    peer_credentials,
    peer_pidfd,
)

CID = "ab" * 32


def _proc(tmp_path: Path, pid: int, nspid: str, cgroup: str) -> Path:
    entry = tmp_path / str(pid)
    entry.mkdir(parents=True)
    (entry / "status").write_text(f"Name:\tpython3\nNSpid:\t{nspid}\nUid:\t1000\n")
    (entry / "cgroup").write_text(cgroup)
    return tmp_path


@pytest.mark.parametrize(
    "cgroup",
    [
        f"12:pids:/docker/{CID}\n0::/docker/{CID}\n",  # cgroup v1/v2, cgroupfs driver
        f"0::/system.slice/docker-{CID}.scope\n",  # v2, systemd driver
    ],
)
def test_pid_1_of_the_container_passes(tmp_path: Path, cgroup: str) -> None:
    check_runner_peer(4321, 1000, None, CID, proc=_proc(tmp_path, 4321, "4321\t1", cgroup))


@pytest.mark.parametrize(
    ("uid", "nspid", "cgroup", "why"),
    [
        (0, "4321\t1", f"0::/docker/{CID}\n", "uid"),
        (1000, "4321\t7", f"0::/docker/{CID}\n", "first process"),  # user code
        (1000, "4321", "0::/user.slice\n", "first process"),  # a host process
        (1000, "4321\t9\t1", f"0::/docker/{CID}\n", "first process"),  # nested namespace
        (1000, "4321\t1", f"0::/docker/{'cd' * 32}\n", "not in container"),
        (1000, "4321\t1", f"0::/docker/{CID}-x\n", "not in container"),
    ],
)
def test_everything_else_is_refused(
    tmp_path: Path, uid: int, nspid: str, cgroup: str, why: str
) -> None:
    proc = _proc(tmp_path, 4321, nspid, cgroup)
    with pytest.raises(PeerRefused, match=why):
        check_runner_peer(4321, uid, None, CID, proc=proc)


def test_a_vanished_or_invisible_peer_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PeerRefused, match="gone"):
        check_runner_peer(4321, 1000, None, CID, proc=tmp_path)
    with pytest.raises(PeerRefused, match="not visible"):
        check_runner_peer(0, 1000, None, CID, proc=tmp_path)
    with pytest.raises(PeerRefused, match="container id"):
        check_runner_peer(4321, 1000, None, "../../etc", proc=tmp_path)


def test_credentials_and_pidfd_of_a_real_peer() -> None:
    left, right = socket.socketpair(socket.AF_UNIX)
    with left, right:
        assert peer_credentials(left.fileno()) == (os.getpid(), os.geteuid())
        pidfd = peer_pidfd(left.fileno())
        try:
            # This process is no container's pid 1.
            with pytest.raises(PeerRefused, match="first process"):
                check_runner_peer(os.getpid(), os.geteuid(), pidfd, CID, kernel_uid=os.geteuid())
        finally:
            if pidfd is not None:  # Linux 6.5+
                os.close(pidfd)


def test_oom_counter_paths_take_only_container_ids() -> None:
    assert oom_kill_count("../../../../etc") is None
