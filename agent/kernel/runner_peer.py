"""Who is on the other end of a runner connection: the kernel's runner, or nobody we talk to.

The agent's socket lies in a directory the container can only read, but every process
in the container (user code included) runs as the same uid as the runner and can
connect to it. So a connection is accepted only from a process the kernel cannot forge,
read from the kernel's own records rather than from anything the peer sends:

* its uid (``SO_PEERCRED``, recorded by the kernel at ``connect()``) is the kernel user;
* it is PID 1 of a PID namespace one level below ours (``NSpid`` in
  ``/proc/<pid>/status``). The runner is the container's first process and the only
  one that can ever hold PID 1 there: when it exits the namespace and every process in
  it die. User code cannot make a PID namespace of its own (seccomp refuses it);
* it lives in the cgroup Docker made for the expected container
  (``/proc/<pid>/cgroup``); nothing inside a container can move itself to another
  cgroup (cgroupfs is read-only there);
* and the pid still names the process that connected after these reads: the check
  holds a pidfd of the peer (``SO_PEERPIDFD``, Linux 6.5+) and confirms the process
  behind it has not exited, so a recycled pid cannot stand in for it. On older kernels
  the checks above already exclude recycling: a process that took over the pid would
  have to be PID 1 in the expected container's cgroup, and that container's PID 1 is
  the runner itself, alive under its own pid (were it dead, so would be the container).

The agent must see the kernels' PIDs, i.e. run in the host PID namespace (or one that
contains Docker's); otherwise the peer pid reads as 0 and every connection is refused.
"""

from __future__ import annotations

import socket
import struct
from pathlib import Path

from crucible.kernels.contract import WORK_UID

#: ``SO_PEERPIDFD`` from <asm-generic/socket.h>; Python 3.11's socket module lacks it.
SO_PEERPIDFD = 77
_UCRED = struct.Struct("3i")


class PeerRefused(Exception):
    """The connecting process is not the expected kernel's runner."""


def peer_credentials(fd: int) -> tuple[int, int]:
    """``(pid, uid)`` of the process that connected socket `fd`, as the kernel recorded
    them at ``connect()``."""
    with socket.fromfd(fd, socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, _ = _UCRED.unpack(raw)
    return pid, uid


def peer_pidfd(fd: int) -> int | None:
    """A pidfd of the process that connected socket `fd` (the caller closes it), or
    None where the kernel has no SO_PEERPIDFD."""
    with socket.fromfd(fd, socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            return int(sock.getsockopt(socket.SOL_SOCKET, SO_PEERPIDFD))
        except OSError:
            return None


def _pidfd_pid(pidfd: int) -> int:
    """The pid a pidfd refers to now; -1 once that process has exited."""
    for line in Path(f"/proc/self/fdinfo/{pidfd}").read_text().splitlines():
        key, _, value = line.partition(":")
        if key == "Pid":
            return int(value)
    return -1


def _ns_pids(proc: Path, pid: int) -> list[int]:
    for line in (proc / str(pid) / "status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key == "NSpid":
            return [int(v) for v in value.split()]
    return []


def _in_container(proc: Path, pid: int, container_id: str) -> bool:
    """Whether any cgroup hierarchy puts `pid` under Docker's cgroup of `container_id`
    (``/docker/<id>`` with the cgroupfs driver, ``docker-<id>.scope`` with systemd)."""
    names = {container_id, f"docker-{container_id}.scope"}
    for line in (proc / str(pid) / "cgroup").read_text().splitlines():
        path = line.split(":", 2)[-1]
        if names.intersection(path.split("/")):
            return True
    return False


def check_runner_peer(
    pid: int,
    uid: int,
    pidfd: int | None,
    container_id: str,
    *,
    kernel_uid: int = WORK_UID,
    proc: Path = Path("/proc"),
) -> None:
    """Raise `PeerRefused` unless the peer (`pid`, `uid`, optional `pidfd`, from
    `peer_credentials`/`peer_pidfd`) is the runner of container `container_id`.

    Blocking (reads /proc): call it in a worker thread.
    """
    if len(container_id) < 12 or not all(c in "0123456789abcdef" for c in container_id):
        raise PeerRefused(f"not a container id: {container_id!r}")
    if uid != kernel_uid:
        raise PeerRefused(f"peer uid {uid} is not the kernel user {kernel_uid}")
    if pid <= 0:
        raise PeerRefused("the peer's pid is not visible here (another PID namespace?)")
    try:
        ns_pids = _ns_pids(proc, pid)
        if len(ns_pids) != 2 or ns_pids[-1] != 1:
            raise PeerRefused(
                f"peer pid {pid} is not the first process of a container (NSpid {ns_pids})"
            )
        if not _in_container(proc, pid, container_id):
            raise PeerRefused(f"peer pid {pid} is not in container {container_id[:12]}")
        if pidfd is not None and _pidfd_pid(pidfd) != pid:
            raise PeerRefused(f"peer pid {pid} exited while it was checked")
    except OSError as exc:
        raise PeerRefused(f"peer pid {pid} is gone: {exc}") from None
