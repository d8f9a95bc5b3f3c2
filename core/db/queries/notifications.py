"""PostgreSQL notifications (``NOTIFY``): how managers sharing a database tell each other
what happened (`crucible.sessions.event_relay`, the pending queue; the listening side is
`crucible.db.pool.listen`). No table of its own."""

from __future__ import annotations

from crucible.db.pool import Executor

#: PostgreSQL refuses a notification payload of 8000 bytes or more.
MAX_PAYLOAD_BYTES = 7999


async def notify(ex: Executor, channel: str, payload: str) -> None:
    """Send `payload` to every connection listening on `channel` (on commit, when `ex`
    is a transaction's connection). `ValueError` for a payload over the limit."""
    if len(payload.encode()) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"notification payload of {len(payload.encode())} bytes is too large")
    await ex.fetchval("SELECT pg_notify($1, $2)", channel, payload)
