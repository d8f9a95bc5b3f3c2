"""Watching a live `crucible up` while tests throw things at it."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType

from testlib.signing import Credentials, SigningClient

from ._support import RunningCrucible

#: How often the watcher asks `GET /`, and how long one answer may take.
POLL_INTERVAL = 0.25
POLL_TIMEOUT = 10.0


class Liveness:
    """Polls ``GET /`` in a thread; keeps every time it did not answer 200."""

    def __init__(self, server: RunningCrucible) -> None:
        self.server = server
        self.pid = server.process.pid
        self.failures: list[str] = []
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> Liveness:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=POLL_TIMEOUT + 5)

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                with urllib.request.urlopen(
                    self.server.endpoint + "/", timeout=POLL_TIMEOUT
                ) as answer:
                    if answer.status != 200 or "version" not in json.loads(answer.read()):
                        self.failures.append(f"GET / answered {answer.status}")
            except Exception as exc:  # anything but an answer is a failure here
                self.failures.append(f"GET / failed: {exc!r}")
            self.polls += 1
            self._stop.wait(POLL_INTERVAL)

    def assert_alive(self) -> None:
        """The server answered every poll so far, and it is still the same process."""
        process: subprocess.Popen[str] = self.server.process
        assert process.poll() is None, f"crucible up exited with {process.returncode}"
        assert process.pid == self.pid
        assert not self.failures, self.failures[:5]

    def wait_polls(self, count: int = 2) -> None:
        """Let the watcher ask a few more times (answers may lag behind a payload)."""
        target = self.polls + count
        deadline = time.monotonic() + POLL_TIMEOUT * count
        while self.polls < target and time.monotonic() < deadline:
            time.sleep(0.05)


@asynccontextmanager
async def signed_client(server: RunningCrucible) -> AsyncIterator[SigningClient]:
    """A client signing as the admin keypair `crucible up` announced."""
    client = SigningClient(server.endpoint, Credentials(server.access_key, server.secret_key))
    client.http.timeout = 120
    try:
        yield client
    finally:
        await client.aclose()
