"""The one version number of the manager ↔ agent protocol.

Every frame carries it in its header (`crucible.protocol.framing`) and every heartbeat
reports it, so a peer of another version is refused on its first frame rather than
misread later. Bump it whenever a message's shape changes: a call, reply, report or
event gains, loses or retypes a field, or the envelope or the framing changes. A
manager and an agent only ever talk to their own version.
"""

from __future__ import annotations

from typing import Final

#: 2: bounded frames (issue 9). 3: typed messages (`crucible.protocol.calls` and the
#: modules beside it); file calls one per step; error kinds under ``"kind"``.
#: 4: byte streams (`crucible.protocol.streams`: ``open_stream``, ``"type": "stream"``),
#:    service ports (``KernelCreated.service_ports``, ``start_service``),
#:    accelerator slots (``CreateKernel.accelerator_slots``, in the heartbeat's capacity;
#:    the ``agent-insufficient-resources`` error kind).
#: 5: the agent's warm pool in its heartbeat (``AgentInfo.pool``, `reports.PoolReport`).
VERSION: Final = 5
