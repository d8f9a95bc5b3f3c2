"""How an agent proves to a manager that it belongs to the cluster.

The agent signs its id and the current time with the shared cluster secret; the
manager recomputes and checks the time is fresh, so a captured handshake is useless
after `MAX_SKEW` seconds.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path

HEADER_AGENT_ID = "X-Crucible-Agent-Id"
HEADER_DATE = "X-Crucible-Date"
HEADER_SIGNATURE = "X-Crucible-Signature"
MAX_SKEW = 300.0


def _signature(secret: str, agent_id: str, date: str) -> str:
    return hmac.new(secret.encode(), f"{agent_id}\n{date}".encode(), hashlib.sha256).hexdigest()


def agent_headers(secret: str, agent_id: str) -> list[tuple[str, str]]:
    date = datetime.now(UTC).isoformat()
    return [
        (HEADER_AGENT_ID, agent_id),
        (HEADER_DATE, date),
        (HEADER_SIGNATURE, _signature(secret, agent_id, date)),
    ]


def verify_agent(secret: str, agent_id: str, date: str, signature: str) -> bool:
    try:
        when = datetime.fromisoformat(date)
    except ValueError:
        return False
    if when.tzinfo is None or abs((datetime.now(UTC) - when).total_seconds()) > MAX_SKEW:
        return False
    return hmac.compare_digest(_signature(secret, agent_id, date), signature)


def load_or_create_secret(configured: str, state_dir: Path) -> str:
    """The configured secret, else the one in ``<state_dir>/cluster.secret`` (made once)."""
    if configured:
        return configured
    path = state_dir / "cluster.secret"
    if path.exists():
        return path.read_text().strip()
    state_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    # Created with 0600 from the start: the secret lets anyone run kernels.
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(handle, "w", encoding="utf-8") as fp:
        fp.write(secret + "\n")
    return secret
