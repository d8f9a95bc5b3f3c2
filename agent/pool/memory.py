"""How much memory the host has left (``MemAvailable``): the pool's pressure gauge."""

from __future__ import annotations

from collections.abc import Callable

MEMINFO = "/proc/meminfo"

#: Returns the host's available memory in bytes (blocking; tests pass their own).
AvailableMemory = Callable[[], int]


def host_available_bytes(path: str = MEMINFO) -> int:
    """``MemAvailable`` of `path` in bytes; ``MemFree`` on kernels too old to say."""
    fields: dict[str, int] = {}
    with open(path, encoding="ascii") as file:
        for line in file:
            name, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                fields[name] = int(parts[0]) * 1024  # kB
    return fields.get("MemAvailable", fields.get("MemFree", 0))
