"""Every process a run starts ends with the run (and never outlives it as a zombie).

The runner is the reaper of its container. The agent starts it as PID 1 of the
container's PID namespace (no docker-init); run outside a container (the runner tests)
it makes itself a child subreaper with ``prctl``. Either way every orphan of user code
(a daemon that double-forked, called ``setsid()``, ran under ``nohup``) is re-parented to
the runner and stays its descendant, so "every process a run started" is exactly "every
descendant of the runner that is not kept", which `Reaper.sweep` finds in ``/proc`` and
kills, round after round, until none is left. Each round kills every process it saw, so
only what was forked during the round survives into the next; under the pids limit a
fork bomb runs out of room and the rounds converge.

What is kept:

* single processes (`Reaper.keep`): the persistent interpreter. Only the process: what
  it forked during a run goes with the run;
* process trees (`Reaper.keep_tree`): a root and all its descendants, for processes that
  must outlive runs by design (a terminal shell, a service).

Being the reaper also means collecting the exit status of orphans. The runner's own
`subprocess.Popen` children are collected by their ``Popen`` objects, so they are
registered (`Reaper.own`) and never waited for here; any other child that is a zombie
is an adopted orphan and is reaped.

Standard library only (``ctypes`` is optional: without it, outside a container, orphans
escape to the host's init and only descendants are swept).
"""

from __future__ import annotations

import os
import signal
import sys
import time

PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
#: How long one sweep may take before it gives up (it logs what survived).
SWEEP_SECONDS = 5.0
#: Pause between two sweep rounds, so SIGKILLed processes get scheduled and die.
SWEEP_PAUSE = 0.005
_DEAD_STATES = ("Z", "X", "x")


def _prctl(option: int, value: int) -> bool:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(option, value, 0, 0, 0)) == 0
    except (ImportError, OSError, AttributeError):
        return False


def become_reaper() -> bool:
    """Make orphaned descendants this process's children; True if they now are."""
    return os.getpid() == 1 or _prctl(PR_SET_CHILD_SUBREAPER, 1)


def forbid_inspection() -> bool:
    """Clear the dumpable flag: processes of the same uid (user code) can then neither
    read nor write this process's memory through ``/proc/<pid>/mem``, nor open its
    descriptors or environment. Children get the flag back when they exec."""
    return _prctl(PR_SET_DUMPABLE, 0)


def scan_processes(proc: str = "/proc") -> dict[int, tuple[int, str]]:
    """``{pid: (ppid, state)}`` of every process visible in `proc` (its PID namespace)."""
    table: dict[int, tuple[int, str]] = {}
    try:
        names = os.listdir(proc)
    except OSError:
        return table
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"{proc}/{name}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue  # gone meanwhile
        # ``pid (comm) state ppid ...``; comm may hold spaces and parentheses.
        fields = data[data.rfind(b")") + 2 :].split()
        if len(fields) >= 2:
            table[int(name)] = (int(fields[1]), fields[0].decode("ascii", "replace"))
    return table


def descendants(table: dict[int, tuple[int, str]], root: int) -> set[int]:
    """Every process below `root` in `table` (not `root` itself)."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found: set[int] = set()
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in found and child != root:
                found.add(child)
                stack.append(child)
    return found


class Reaper:
    """The kept processes, the runner's own children, and the sweeps."""

    def __init__(self, proc: str = "/proc") -> None:
        self.pid = os.getpid()
        self._proc = proc
        self._owned: set[int] = set()
        self._kept: set[int] = set()
        self._kept_trees: set[int] = set()

    # -- registry -------------------------------------------------------------------------

    def own(self, pid: int) -> None:
        """`pid` is a child whose exit status its ``Popen`` collects: never reap it."""
        self._owned.add(pid)

    def disown(self, pid: int) -> None:
        self._owned.discard(pid)

    def keep(self, pid: int) -> None:
        """Spare the process `pid` (not its descendants) in sweeps."""
        self._kept.add(pid)

    def keep_tree(self, pid: int) -> None:
        """Spare `pid` and every process below it in sweeps (a kept root)."""
        self._kept_trees.add(pid)

    def release(self, pid: int) -> None:
        """`pid` is no longer kept (it ended, or it should go with the next sweep)."""
        self._kept.discard(pid)
        self._kept_trees.discard(pid)

    # -- reaping ----------------------------------------------------------------------------

    def reap_orphans(self, table: dict[int, tuple[int, str]] | None = None) -> int:
        """Collect adopted orphans that have exited; returns how many."""
        if table is None:
            table = scan_processes(self._proc)
        reaped = 0
        for pid, (ppid, state) in table.items():
            if ppid != self.pid or state not in _DEAD_STATES or pid in self._owned:
                continue
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                continue
            reaped += done == pid
        return reaped

    def _spared(self, table: dict[int, tuple[int, str]]) -> set[int]:
        spared = {self.pid, *self._kept}
        for root in self._kept_trees:
            if root in table:
                spared.add(root)
                spared |= descendants(table, root)
        return spared

    def sweep(self, timeout: float = SWEEP_SECONDS) -> int:
        """SIGKILL every descendant that is not kept, until none is left; reap them.

        Returns how many processes were killed. Gives up after `timeout` seconds
        (logging how many survived): the pids limit still holds them, and the next
        sweep tries again.
        """
        deadline = time.monotonic() + timeout
        killed = 0
        while True:
            table = scan_processes(self._proc)
            spared = self._spared(table)
            targets = [
                pid
                for pid in descendants(table, self.pid)
                if pid not in spared and table[pid][1] not in _DEAD_STATES
            ]
            for pid in targets:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            self.reap_orphans(table)
            if not targets:
                return killed
            killed += len(targets)
            if time.monotonic() >= deadline:
                print(
                    f"crucible-runner: {len(targets)} processes survived the sweep",
                    file=sys.stderr,
                    flush=True,
                )
                return killed
            time.sleep(SWEEP_PAUSE)
