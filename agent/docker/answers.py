"""Reading the engine's JSON answers: stats samples, numbers, timestamps.

The engine's answers differ between API versions and cgroup layouts and may lack any
field; these functions read what is there and never raise on what is not.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from crucible.protocol.stats import KernelStats


def stats_from_docker(raw: Mapping[str, Any]) -> KernelStats:
    """The spec 4.4 stats of one sample of Docker's stats API (cgroup v1 or v2 layout);
    the scratch sizes stay 0 (the agent measures them itself)."""
    cpu_ns = count(dig(raw, "cpu_stats", "cpu_usage", "total_usage"))

    mem = raw.get("memory_stats") or {}
    usage = count(mem.get("usage"))
    inner = mem.get("stats") or {}
    # The working set as `docker stats` shows it: page cache that could be dropped
    # right away is not memory pressure. v1 calls it total_inactive_file, v2
    # inactive_file.
    inactive = count(inner.get("total_inactive_file", inner.get("inactive_file")))
    mem_cur = max(0, usage - inactive) if inactive <= usage else usage
    # v1 reports the peak (max_usage); v2's stats API has none, so the best lower
    # bound we know is the current usage.
    mem_max = max(count(mem.get("max_usage")), mem_cur)

    rx = tx = 0
    for net in (raw.get("networks") or {}).values():
        rx += count(net.get("rx_bytes"))
        tx += count(net.get("tx_bytes"))

    rd = wr = 0
    # v1 lists per device "Read"/"Write"/"Sync"/"Async"/"Total"; v2 lowercase
    # "read"/"write". Summing only read and write avoids double counting the totals.
    for entry in dig(raw, "blkio_stats", "io_service_bytes_recursive") or ():
        op = str(entry.get("op", "")).lower()
        if op == "read":
            rd += count(entry.get("value"))
        elif op == "write":
            wr += count(entry.get("value"))

    cpu_ms = cpu_ns // 1_000_000
    return KernelStats(
        cpu_used=cpu_ms, mem_max_bytes=mem_max, mem_cur_bytes=mem_cur,
        net_rx_bytes=rx, net_tx_bytes=tx, io_read_bytes=rd, io_write_bytes=wr,
    )


def dig(obj: Any, *keys: str) -> Any:
    """``obj[k1][k2]...``, or None where a level is missing or not a mapping."""
    for key in keys:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def count(value: Any) -> int:
    """A number of the engine's as a non-negative int; 0 for anything else."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0
    return max(0, int(value))


_FRACTION_RE: Final = re.compile(r"\.(\d+)")


def parse_time(value: Any) -> datetime | None:
    """Docker's RFC 3339 nanosecond timestamps; the zero time means "never"."""
    if not isinstance(value, str) or not value or value.startswith("0001-01-01"):
        return None
    # datetime takes at most microseconds.
    text = _FRACTION_RE.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), value, count=1)
    text = text.replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
