"""Live sessions held in memory for the calls made on them (execute above all).

Looking a session up in the database on every execute was a tenth of a manager's work
under load. What is held here is a hint, never the state of record: the session's agent
is the authority on whether its kernel exists, so a session ended through another
manager (its agent has removed the kernel) answers ``kernel-not-found`` from the agent;
the caller then forgets the entry and looks the session up afresh
(`SessionLifecycle.execute_live`), which also finds a session created since under the
same token. Everything this manager ends or restarts forgets its entry at once
(`forget`), and no entry lives longer than ``sessions.live_cache_ttl`` seconds whatever
happens, which bounds how long any other change of the row (an agent lost elsewhere)
goes unseen.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from crucible.db.pool import Database
from crucible.db.queries import kernels
from crucible.sessions.model import Session

Key = tuple[str, str]  # (access key, client session token)


class LiveSessionCache:
    def __init__(
        self,
        db: Database,
        *,
        ttl: float,
        max_entries: int,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.db = db
        #: Seconds an entry is used before the row is read again; 0 turns caching off.
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        # Insertion order is age order: the oldest entry is the first one.
        self._entries: dict[Key, tuple[float, Session]] = {}
        self._keys: dict[str, Key] = {}  # session id -> its entry

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, access_key: str, token: str) -> tuple[Session | None, bool]:
        """The live session `token` of `access_key` and whether it came from memory."""
        key = (access_key, token)
        held = self._entries.get(key)
        if held is not None:
            expires, session = held
            if self._clock() < expires:
                return session, True
            self._drop(key)
        found = await kernels.live_session(self.db, access_key, token)
        # Only a RUNNING session can take calls: the others are read each time, so the
        # moment one starts running (or ends) is seen at once.
        if found is not None and found.status == "RUNNING" and self.ttl > 0:
            self._put(key, found)
        return found, False

    def forget(self, session_id: str) -> None:
        """Drop session `session_id`'s entry (it ends, restarts, or its agent lost it)."""
        key = self._keys.get(session_id)
        if key is not None:
            self._drop(key)

    def _put(self, key: Key, session: Session) -> None:
        self._drop(key)
        while len(self._entries) >= self.max_entries:
            self._drop(next(iter(self._entries)))
        self._entries[key] = (self._clock() + self.ttl, session)
        self._keys[session.id] = key

    def _drop(self, key: Key) -> None:
        held = self._entries.pop(key, None)
        if held is not None and self._keys.get(held[1].id) == key:
            del self._keys[held[1].id]
