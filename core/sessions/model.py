"""A session as stored in the ``kernels`` table (its master kernel)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import attrs

#: Keys of the container stats object (spec 4.4); every value is a number.
STATS_KEYS = (
    "cpu_used",
    "mem_max_bytes",
    "mem_cur_bytes",
    "net_rx_bytes",
    "net_tx_bytes",
    "io_read_bytes",
    "io_write_bytes",
    "io_max_scratch_size",
    "io_cur_scratch_size",
)

LIVE_STATUSES = (
    "PREPARING",
    "BUILDING",
    "RUNNING",
    "RESTARTING",
    "RESIZING",
    "SUSPENDED",
    "TERMINATING",
)

SESSION_COLUMNS = (
    "id, sess_id, access_key, agent_id, container_id, status, status_info, image, lang, tag, "
    "environ, occupied_slots, num_queries, last_stat, created_at, last_active, terminated_at"
)


def normalize_stats(raw: Any) -> dict[str, int] | None:
    """The stats object with every spec key as an int (the CLI crashes on nulls)."""
    if not isinstance(raw, dict):
        return None
    stats = {}
    for key in STATS_KEYS:
        value = raw.get(key)
        stats[key] = (
            int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0
        )
    return stats


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


@attrs.frozen
class Session:
    id: str  # the kernel row's UUID; internal, never in URLs
    token: str  # the clientSessionToken: `kernelId` in the API
    access_key: str
    agent_id: str | None
    container_id: str | None
    status: str
    status_info: str | None
    image: str
    lang: str
    tag: str | None
    environ: dict[str, str]
    occupied_slots: dict[str, float]
    num_queries: int
    last_stat: dict[str, int] | None
    created_at: datetime
    last_active: datetime
    terminated_at: datetime | None

    @classmethod
    def from_row(cls, row: Any) -> Session:
        return cls(
            id=str(row["id"]),
            token=row["sess_id"],
            access_key=row["access_key"],
            agent_id=row["agent_id"],
            container_id=row["container_id"],
            status=row["status"],
            status_info=row["status_info"],
            image=row["image"],
            lang=row["lang"],
            tag=row["tag"],
            environ=_json(row["environ"]) or {},
            occupied_slots=_json(row["occupied_slots"]) or {},
            num_queries=row["num_queries"],
            last_stat=normalize_stats(_json(row["last_stat"])),
            created_at=row["created_at"],
            last_active=row["last_active"],
            terminated_at=row["terminated_at"],
        )

    @property
    def is_live(self) -> bool:
        return self.status in LIVE_STATUSES
