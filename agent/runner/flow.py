"""Back-pressure between output producers and the agent connection.

Output sources (pipes, terminals, the Python child's channel) stop reading while the
agent connection has too much unsent data, and resume when it drains. The producers
then block on their own full pipes, so a print flood never piles up in the runner.
"""

from __future__ import annotations

from collections.abc import Callable


class Flow:
    """Whether output may be read now, and who to wake up when it may again."""

    def __init__(self) -> None:
        self.paused = False
        self._waiting: list[Callable[[], None]] = []

    def wait(self, resume: Callable[[], None]) -> None:
        """Call `resume` once output may flow again."""
        self._waiting.append(resume)

    def set_paused(self, paused: bool) -> None:
        self.paused = paused
        while not self.paused and self._waiting:
            self._waiting.pop(0)()
