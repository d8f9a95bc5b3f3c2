"""Session events across managers (spec 5.4): PostgreSQL ``LISTEN``/``NOTIFY`` on the
database every manager already shares, no broker.

Each event this manager publishes (`SessionEvents.publish`) is also sent as a
notification on `CHANNEL`; every manager listens there and hands the events of others
to its own subscribers (`SessionEvents.deliver`). A notification carries ids and kinds
only (the manager's instance id, the session's row id, the event name, its reason cut to
`MAX_REASON_CHARS`), far below PostgreSQL's 8000-byte payload limit. A manager skips its
own notifications: its subscribers had the event already, so none sees it twice.

What can go wrong, and what is done about it:

* the database does not take a notification: it is retried every
  ``sessions.event_relay_retry_interval`` seconds, in order; at most
  ``sessions.event_relay_queue`` wait (more are dropped, with a warning);
* the listening connection dies (asyncpg says nothing of an idle one): it is checked
  every ``sessions.event_relay_check_interval`` seconds and opened again;
* notifications lost meanwhile (or dropped because too many arrived at once): on
  reconnecting, once listening again, every session someone here subscribes to is read
  from the ``kernels`` table, and those that ended get their ``terminated`` event (its
  reason as recorded). A ``restarted`` event sent in such a gap is not made up for: the
  session it is about is alive, and its stream goes on.
"""

from __future__ import annotations

import json
import logging
import uuid

import attrs
import trio

from crucible.db.pool import Database, Listening, listen
from crucible.db.queries import kernels, notifications
from crucible.sessions.events import SessionEvents

log = logging.getLogger(__name__)

#: The notification channel of session events.
CHANNEL = "crucible_session_events"
#: The most of an event's reason a notification carries (reasons are short kinds).
MAX_REASON_CHARS = 200
NAMES = ("terminated", "restarted")


def encode(instance: str, session_id: str, name: str, reason: str) -> str:
    return json.dumps(
        {"m": instance, "s": session_id, "n": name, "r": reason[:MAX_REASON_CHARS]},
        separators=(",", ":"),
    )


def decode(payload: str) -> tuple[str, str, str, str] | None:
    """``(instance, session id, name, reason)``; None for what no manager sends."""
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    fields = (data.get("m"), data.get("s"), data.get("n"), data.get("r"))
    if not all(isinstance(field, str) for field in fields) or fields[2] not in NAMES:
        return None
    instance, session_id, name, reason = (str(field) for field in fields)
    return instance, session_id, name, reason[:MAX_REASON_CHARS]


@attrs.define(eq=False)
class EventRelay:
    """Carries `events` between the managers of `db`; `run` is a background duty."""

    db: Database
    events: SessionEvents
    retry_interval: float
    check_interval: float
    queue: int
    #: This manager process, as its notifications name it.
    instance: str = attrs.field(factory=lambda: uuid.uuid4().hex)
    #: Set while a listening connection is up (tests wait for it).
    listening: trio.Event = attrs.field(factory=trio.Event, init=False)
    _outbox: trio.MemorySendChannel[str] | None = attrs.field(default=None, init=False)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        send, receive = trio.open_memory_channel[str](self.queue)
        self._outbox = send
        self.events.forward_to(self._forward)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._send_all, receive)
                await nursery.start(self._listen_forever)
                task_status.started()
        finally:
            self.events.forward_to(None)
            self._outbox = None

    # -- out ----------------------------------------------------------------------------

    def _forward(self, session_id: str, name: str, reason: str) -> None:
        if self._outbox is None:
            return
        try:
            self._outbox.send_nowait(encode(self.instance, session_id, name, reason))
        except trio.WouldBlock:
            log.warning("session event %s of %s not relayed: the queue is full", name, session_id)

    async def _send_all(self, receive: trio.MemoryReceiveChannel[str]) -> None:
        async for payload in receive:
            while True:
                try:
                    with trio.fail_after(self.db.command_timeout):
                        await notifications.notify(self.db, CHANNEL, payload)
                    break
                except Exception as exc:  # the database's trouble, whatever its kind: retry
                    log.warning("could not relay a session event (retrying): %r", exc)
                    await trio.sleep(self.retry_interval)

    # -- in -----------------------------------------------------------------------------

    async def _listen_forever(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen, and listen again whenever the connection fails; `task_status` is
        started after the first attempt, whether it worked or not (the manager must
        start without its database's notifications, and catch up when they come)."""
        first = True
        while True:
            try:
                async with listen(self.db, CHANNEL, buffer=self.queue) as listening:
                    if not first:
                        await self._catch_up()
                    self.listening.set()
                    if first:
                        task_status.started()
                        first = False
                    await self._receive_all(listening)
            except* Exception as group:
                log.warning("session events from other managers: listening failed: %r", group)
            if self.listening.is_set():
                self.listening = trio.Event()
            if first:
                task_status.started()
                first = False
            await trio.sleep(self.retry_interval)

    async def _receive_all(self, listening: Listening) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._check_forever, listening)
            while True:
                payload = await listening.receive()
                if payload is None:
                    # Some notifications were dropped: what they said is in the table.
                    await self._catch_up()
                    continue
                event = decode(payload)
                if event is None:
                    log.warning("ignoring a malformed session-event notification")
                    continue
                instance, session_id, name, reason = event
                if instance != self.instance:
                    self.events.deliver(session_id, name, reason)

    async def _check_forever(self, listening: Listening) -> None:
        while True:
            await trio.sleep(self.check_interval)
            await listening.check()

    async def _catch_up(self) -> None:
        """Notifications may have been lost: end the streams of sessions that ended."""
        subscribed = self.events.subscribed()
        if not subscribed:
            return
        with trio.fail_after(self.db.command_timeout):
            ended = await kernels.ended_among(self.db, subscribed)
        for session_id, reason in ended:
            self.events.deliver(session_id, "terminated", reason)
