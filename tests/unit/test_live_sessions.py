"""`LiveSessionCache`'s policy: what it holds, for how long, how many, what it forgets.

Across managers and against a real agent: tests/integration/sessions/test_live_cache.py.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import pytest

from crucible.db.pool import Database
from crucible.db.queries import kernels
from crucible.sessions.live import LiveSessionCache

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def row(token: str, status: str = "RUNNING", ident: str | None = None) -> kernels.Kernel:
    return kernels.Kernel(
        id=ident or f"id-{token}", token=token, role="master", access_key="AK", agent_id="a1",
        container_id="c", status=status, status_info=None, image="python", lang="python",
        tag=None, environ={}, occupied_slots={}, num_queries=0, last_stat=None,
        created_at=NOW, last_active=NOW, terminated_at=None, service_ports=(),
    )  # fmt: skip


class Rows:
    """The ``kernels`` table as `live_session` reads it, and how often it was read."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.rows: dict[str, kernels.Kernel] = {}
        self.reads = 0
        monkeypatch.setattr(kernels, "live_session", self.live_session)

    async def live_session(self, ex: Any, access_key: str, token: str) -> kernels.Kernel | None:
        self.reads += 1
        return self.rows.get(token)


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch) -> Rows:
    return Rows(monkeypatch)


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def cache(ttl: float = 2.0, entries: int = 100) -> tuple[LiveSessionCache, Clock]:
    clock = Clock()
    db = cast(Database, None)  # never reached: `live_session` is the table above
    return LiveSessionCache(db, ttl=ttl, max_entries=entries, clock=clock), clock


async def test_a_running_session_is_read_once_within_the_ttl(table: Rows) -> None:
    table.rows["s1"] = row("s1")
    live, clock = cache(ttl=2.0)
    assert await live.get("AK", "s1") == (table.rows["s1"], False)
    clock.now = 1.9
    assert await live.get("AK", "s1") == (table.rows["s1"], True)
    assert table.reads == 1
    clock.now = 2.0  # expired: read again
    assert (await live.get("AK", "s1"))[1] is False
    assert table.reads == 2


@pytest.mark.parametrize("status", ["PREPARING", "RESTARTING", "TERMINATING"])
async def test_a_session_that_cannot_take_calls_is_never_held(table: Rows, status: str) -> None:
    table.rows["s1"] = row("s1", status)
    live, _ = cache()
    for _ in range(3):
        assert (await live.get("AK", "s1"))[1] is False
    assert table.reads == 3 and len(live) == 0


async def test_a_missing_session_is_not_held(table: Rows) -> None:
    live, _ = cache()
    assert await live.get("AK", "nope") == (None, False)
    assert await live.get("AK", "nope") == (None, False)
    assert table.reads == 2


async def test_forget_drops_by_session_id(table: Rows) -> None:
    table.rows["s1"] = row("s1")
    live, _ = cache()
    await live.get("AK", "s1")
    live.forget("id-s1")
    live.forget("id-unknown")  # nothing held: nothing happens
    assert len(live) == 0
    assert (await live.get("AK", "s1"))[1] is False


async def test_a_ttl_of_zero_holds_nothing(table: Rows) -> None:
    table.rows["s1"] = row("s1")
    live, _ = cache(ttl=0)
    await live.get("AK", "s1")
    assert len(live) == 0


async def test_the_oldest_entries_go_first_beyond_the_cap(table: Rows) -> None:
    for token in ("s1", "s2", "s3"):
        table.rows[token] = row(token)
    live, _ = cache(entries=2)
    for token in ("s1", "s2", "s3"):
        await live.get("AK", token)
    assert len(live) == 2
    assert (await live.get("AK", "s1"))[1] is False  # evicted, read again (s2 goes)
    assert (await live.get("AK", "s3"))[1] is True
    assert (await live.get("AK", "s2"))[1] is False
    assert (table.reads, len(live)) == (5, 2)


async def test_a_token_used_again_replaces_its_entry(table: Rows) -> None:
    table.rows["s1"] = row("s1", ident="old")
    live, _ = cache()
    await live.get("AK", "s1")
    table.rows["s1"] = row("s1", ident="new")
    live.forget("old")
    assert (await live.get("AK", "s1"))[0] == table.rows["s1"]
    live.forget("old")  # the old id no longer names the entry
    assert (await live.get("AK", "s1"))[1] is True
