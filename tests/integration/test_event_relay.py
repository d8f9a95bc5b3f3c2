"""Session events between managers on one database (spec 5.4): PostgreSQL LISTEN/NOTIFY.

Two relays on the test database play two managers: what one publishes the other's
subscribers get, once; its own subscribers get it once too (not again from the
database); a notification lost while a listening connection was down is made up for
from the ``kernels`` table when it is back.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from crucible.db.pool import LISTENER_NAME, Database
from crucible.db.queries import notifications
from crucible.sessions.event_relay import CHANNEL, MAX_REASON_CHARS, EventRelay, decode, encode
from crucible.sessions.events import SessionEvents
from crucible.sessions.model import Session
from testlib.server import Harness
from testlib.signing import websocket_headers

TIMEOUT = 10.0


def relay(db: Database, events: SessionEvents) -> EventRelay:
    return EventRelay(db=db, events=events, retry_interval=0.1, check_interval=0.2, queue=100)


@pytest.fixture
async def managers(db: Database) -> AsyncIterator[tuple[EventRelay, EventRelay]]:
    a, b = relay(db, SessionEvents()), relay(db, SessionEvents())
    async with trio.open_nursery() as nursery:
        with trio.fail_after(TIMEOUT):
            await nursery.start(a.run)
            await nursery.start(b.run)
            await a.listening.wait()
            await b.listening.wait()
        yield a, b
        nursery.cancel_scope.cancel()


async def next_event(receive: trio.MemoryReceiveChannel[dict[str, Any]]) -> dict[str, Any]:
    with trio.fail_after(TIMEOUT):
        return await receive.receive()


async def assert_quiet(receive: trio.MemoryReceiveChannel[dict[str, Any]]) -> None:
    with trio.move_on_after(0.5):
        event = await receive.receive()
        raise AssertionError(f"unexpected {event}")


async def test_an_event_reaches_the_other_manager_and_nobody_twice(
    managers: tuple[EventRelay, EventRelay],
) -> None:
    a, b = managers
    session = str(uuid.uuid4())
    with (
        a.events.open_subscription(session) as on_a,
        b.events.open_subscription(session) as on_b,
        b.events.open_subscription(str(uuid.uuid4())) as other_session,
    ):
        a.events.publish(session, "restarted", "user-requested")
        a.events.publish(session, "terminated", "out-of-memory")
        for stream in (on_a, on_b):
            assert await next_event(stream) == {"name": "restarted", "reason": "user-requested"}
            assert await next_event(stream) == {"name": "terminated", "reason": "out-of-memory"}
        # And the other way round.
        b.events.publish(session, "restarted", "again")
        for stream in (on_a, on_b):
            assert await next_event(stream) == {"name": "restarted", "reason": "again"}
        await assert_quiet(on_a)
        await assert_quiet(on_b)
        await assert_quiet(other_session)


async def test_payloads_are_bounded_and_foreign_ones_ignored(
    db: Database, managers: tuple[EventRelay, EventRelay]
) -> None:
    a, b = managers
    session = str(uuid.uuid4())
    payload = encode(a.instance, session, "terminated", "x" * 100_000)
    assert len(payload.encode()) < 8000
    assert decode(payload) == (a.instance, session, "terminated", "x" * MAX_REASON_CHARS)
    with b.events.open_subscription(session) as on_b:
        for junk in ("not json", "[1]", json.dumps({"m": "x", "s": session, "n": "rm -rf"})):
            await notifications.notify(db, CHANNEL, junk)
        with pytest.raises(ValueError, match="too large"):
            await notifications.notify(db, CHANNEL, "x" * 8000)
        a.events.publish(session, "terminated", "y" * 5000)
        assert await next_event(on_b) == {"name": "terminated", "reason": "y" * MAX_REASON_CHARS}
        await assert_quiet(on_b)


async def insert_session(db: Database, access_key: str | None = None) -> str:
    """A RUNNING session row (no container: these tests never call an agent)."""
    if access_key is None:
        access_key = "AKTEST" + uuid.uuid4().hex[:14].upper()
        await db.execute(
            "INSERT INTO keypairs (access_key, secret_key, user_id) VALUES ($1, $2, 'r@test')",
            access_key,
            "s" * 40,
        )
    kernel_id = uuid.uuid4()
    await db.execute(
        """INSERT INTO kernels (id, sess_id, access_key, status, image, lang)
           VALUES ($1, 'relay', $2, 'RUNNING', 'img', 'python')""",
        kernel_id,
        access_key,
    )
    return str(kernel_id)


async def test_an_end_sent_while_the_listener_was_down_is_made_up_for(
    db: Database, managers: tuple[EventRelay, EventRelay]
) -> None:
    a, b = managers
    session = await insert_session(db)
    with b.events.open_subscription(session) as on_b:
        # The listening connections die (a database restart, a network cut)...
        b_listening = b.listening
        killed = await db.fetchval(
            """SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
               WHERE application_name = $1""",
            LISTENER_NAME,
        )
        assert killed == 2
        with trio.fail_after(TIMEOUT):
            while await db.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                LISTENER_NAME,
            ):
                await trio.sleep(0.01)
        # ... and A ends the session meanwhile: its notification reaches nobody.
        await db.execute(
            "UPDATE kernels SET status = 'TERMINATED', status_info = 'idle-timeout'"
            " WHERE id = $1::uuid",
            session,
        )
        a.events.publish(session, "terminated", "as-notified")
        # B notices, listens again, reads the table: its subscriber hears of the end
        # (with the reason the table holds: the notification itself was lost).
        assert await next_event(on_b) == {"name": "terminated", "reason": "idle-timeout"}
        await assert_quiet(on_b)
        assert b.listening.is_set() and b.listening is not b_listening


async def test_an_end_between_lookup_and_subscription_is_still_told(
    db: Database, manager: Harness
) -> None:
    """The session ends elsewhere after the events stream looked it up but before it
    subscribed: nobody here was subscribed to hear it, the row says it all the same."""
    session_id = await insert_session(db, manager.user.access_key)
    sessions = manager.server.components.sessions
    lookup = sessions.get_live

    async def lookup_then_end(access_key: str, token: str) -> Session:
        session = await lookup(access_key, token)
        await db.execute(
            "UPDATE kernels SET status = 'TERMINATED', status_info = 'agent-lost'"
            " WHERE id = $1::uuid",
            session_id,
        )
        return session

    sessions.get_live = lookup_then_end  # type: ignore[method-assign]
    rel_url = "/stream/kernel/relay/events"
    headers = websocket_headers(manager.user, urlsplit(manager.url).netloc, rel_url)
    url = manager.url.replace("http://", "ws://") + rel_url
    with trio.fail_after(TIMEOUT):
        async with open_websocket_url(url, extra_headers=headers) as ws:
            assert json.loads(await ws.get_message()) == {
                "name": "terminated",
                "reason": "agent-lost",
            }
            with pytest.raises(ConnectionClosed):
                await ws.get_message()
