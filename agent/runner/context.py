"""What the runner's parts share: its event loop, the reaper of the processes it starts,
the kernel's work directory and the way to the agent.

Standard library only (Python 3.9+).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from .loop import Loop
from .reaper import Reaper

#: Hands a message to the agent (held while the connection is down).
Send = Callable[[dict[str, Any]], None]


class RunnerContext(NamedTuple):
    loop: Loop
    #: Owns every process the runner starts for the user (runs, the terminal, apps).
    reaper: Reaper
    #: ``/home/work``: where what the user starts runs.
    workdir: str
    send: Send
