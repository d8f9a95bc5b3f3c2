"""Is a batch program blocked reading its terminal? (the ``waiting-input`` heuristic)

A batch program reads stdin like any Unix program, so nothing tells the runner that it
wants input. The runner gives the program a pseudo-terminal as stdin/stdout and, when
the program has been quiet for a moment, looks at every thread of every process in the
program's session through ``/proc/<pid>/task/<tid>/syscall``:

* a thread sleeping in ``read``/``readv``/``pread64`` whose fd is the terminal, or
* a thread sleeping in ``select``/``poll`` (and their p-variants) for readability of the
  terminal: the fd sets live in the process's memory, read through ``/proc/<pid>/mem``
  (runtimes keep threads polling their own descriptors: GHC's timer thread polls two
  pipes while fd 0 is the terminal); when that memory cannot be read, a non-empty set
  while fd 0 is the terminal counts,

and the terminal's input queue is empty (``TIOCINQ``), then the program waits for input.
A process may only read the ``syscall`` and ``mem`` files of processes it could ptrace (same uid, no
privilege change), which holds for the runner's own descendants. When the file cannot be
read (unknown architecture, hardened kernel) the probe falls back to ``wchan`` naming a
tty read.
"""

from __future__ import annotations

import fcntl
import os
import platform
import struct
import termios

# Syscall numbers per architecture: (reads taking the fd first, polls with nfds check).
# For select/pselect6 the first argument is nfds; for poll/ppoll the second is.
_SYSCALLS: dict[str, tuple[frozenset[int], frozenset[int], frozenset[int]]] = {
    # machine: (read-like, select-like, poll-like)
    "x86_64": (frozenset({0, 17, 19}), frozenset({23, 270}), frozenset({7, 271})),
    "aarch64": (frozenset({63, 65, 67}), frozenset({72}), frozenset({73})),
}


def _session_of(pid: str) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: parse after the last ')'.
    fields = stat[stat.rfind(b")") + 2 :].split()
    try:
        return int(fields[3])
    except (IndexError, ValueError):
        return None


def session_pids(sid: int) -> list[str]:
    """Pids of the live processes in session `sid`."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _session_of(entry) == sid:
            pids.append(entry)
    return pids


def _fd_target(pid: str, fd: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        return None


def _read_text(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


#: The most descriptors of one poll or select call looked at.
_MAX_FDS = 1024
_POLLFD = struct.Struct("=ihh")  # struct pollfd: fd, events, revents
_POLLIN = 0x1


def _read_memory(pid: str, address: int, size: int) -> bytes | None:
    try:
        with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
            mem.seek(address)
            data = mem.read(size)
    except (OSError, OverflowError, ValueError):
        return None
    return data if len(data) == size else None


def _polled_fds(pid: str, fds_address: int, nfds: int) -> list[int] | None:
    """The descriptors a poll(2) waits to read, from its ``struct pollfd`` array."""
    data = _read_memory(pid, fds_address, min(nfds, _MAX_FDS) * _POLLFD.size)
    if data is None:
        return None
    return [fd for fd, events, _ in _POLLFD.iter_unpack(data) if events & _POLLIN]


def _selected_fds(pid: str, nfds: int, readfds_address: int) -> list[int] | None:
    """The descriptors a select(2) waits to read, from its read ``fd_set``."""
    if readfds_address == 0:
        return []
    nfds = min(nfds, _MAX_FDS)
    data = _read_memory(pid, readfds_address, (nfds + 7) // 8)
    if data is None:
        return None
    return [fd for fd in range(nfds) if data[fd // 8] >> (fd % 8) & 1]


def _waits_on(pid: str, fds: list[int] | None, tty: str) -> bool:
    if fds is None:  # memory not readable: fd 0 being the terminal decides
        return _fd_target(pid, 0) == tty
    return any(_fd_target(pid, fd) == tty for fd in fds)


def tty_input_pending(slave_fd: int) -> int:
    """Bytes the program has not read yet from its terminal."""
    try:
        raw = fcntl.ioctl(slave_fd, termios.TIOCINQ, b"\0\0\0\0")
    except OSError:
        return 0
    return int(struct.unpack("i", raw)[0])


def _thread_waits(pid: str, tid: str, tty: str, syscalls: tuple[frozenset[int], ...]) -> bool:
    text = _read_text(f"/proc/{pid}/task/{tid}/syscall")
    if text is None or not syscalls:
        wchan = _read_text(f"/proc/{pid}/task/{tid}/wchan") or ""
        return "tty_read" in wchan and _fd_target(pid, 0) == tty
    parts = text.split()
    # "running", or "-1 ..." (blocked outside a syscall): not a read.
    if len(parts) < 3 or not parts[0].lstrip("-").isdigit():
        return False
    number = int(parts[0])
    reads, selects, polls = syscalls
    try:
        arg0, arg1 = int(parts[1], 16), int(parts[2], 16)
    except ValueError:
        return False
    if number in reads:
        return _fd_target(pid, arg0) == tty
    if number in selects:
        return arg0 > 0 and _waits_on(pid, _selected_fds(pid, arg0, arg1), tty)
    if number in polls:
        return arg1 > 0 and _waits_on(pid, _polled_fds(pid, arg0, arg1), tty)
    return False


def waits_for_terminal(sid: int, tty: str) -> bool:
    """Whether some thread in session `sid` sleeps reading the terminal named `tty`."""
    syscalls = _SYSCALLS.get(platform.machine(), ())
    for pid in session_pids(sid):
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            if _thread_waits(pid, tid, tty, syscalls):
                # The thread must still be asleep: "S" (interruptible sleep).
                stat = _read_text(f"/proc/{pid}/task/{tid}/stat") or ""
                state = stat[stat.rfind(")") + 2 : stat.rfind(")") + 3]
                if state == "S":
                    return True
    return False
