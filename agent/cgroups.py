"""Reading a container's cgroup counters that the Docker API does not expose.

The OOM killer may kill one process inside a kernel (the user's interpreter) while the
container lives on; Docker's ``OOMKilled`` flag only reports it once the container has
exited. The memory cgroup's own counter says it at once.
"""

from __future__ import annotations

import re
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
#: Docker's full container ids: the only thing this module puts into a path.
_CONTAINER_ID_RE = re.compile(r"[0-9a-f]{64}")


def _candidates(container_id: str) -> list[tuple[Path, str]]:
    """(file, key) pairs holding the OOM-kill count, for cgroup v1 and v2 layouts and both
    of Docker's cgroup drivers (cgroupfs and systemd)."""
    return [
        (CGROUP_ROOT / "memory" / "docker" / container_id / "memory.oom_control", "oom_kill"),
        (
            CGROUP_ROOT
            / "memory"
            / "system.slice"
            / f"docker-{container_id}.scope"
            / "memory.oom_control",
            "oom_kill",
        ),
        (CGROUP_ROOT / "docker" / container_id / "memory.events", "oom_kill"),
        (
            CGROUP_ROOT / "system.slice" / f"docker-{container_id}.scope" / "memory.events",
            "oom_kill",
        ),
    ]


def oom_kill_count(container_id: str) -> int | None:
    """How many processes of the container the OOM killer has killed; None if unknown."""
    if not _CONTAINER_ID_RE.fullmatch(container_id):
        return None  # never a path component we did not expect
    for path, key in _candidates(container_id):
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name == key and value.strip().isdigit():
                return int(value)
    return None
