"""The manager ↔ agent protocol: what both ends import, and nothing else of each other.

* `framing`: messages cut into bounded WebSocket frames (the frame header carries
  `VERSION`);
* `auth`: how an agent proves it belongs to the cluster when it dials a manager;
* `calls`, `file_calls`: one frozen attrs class per call and per reply;
* `streams`: byte streams on the link (terminals, app tunnels) and their credit;
  `stream_flow` and `stream_end` the flow control and one stream's end, both sides';
* `reports`: heartbeats (agent info, images, per-kernel stats) and kernel events;
* `stats`: `KernelStats`, the one stats shape of agent, wire, database and API;
* `failures`: the error reply and its kinds;
* `codec`: the strict cattrs converter and the envelopes;
* `version`: the one version number.

Where to look: "add a field to the execute call" is `calls.Execute`; "change how a
heartbeat is parsed" is `reports.Heartbeat` and `codec.read_from_agent`. Import the
names from these modules (``from crucible.protocol.calls import CreateKernel``).
"""

from __future__ import annotations

# The file calls register themselves on import; any use of the protocol comes through
# here first, so every call is known to the codec whichever module was imported.
from crucible.protocol import file_calls as file_calls
from crucible.protocol import streams as streams
from crucible.protocol.version import VERSION as VERSION
