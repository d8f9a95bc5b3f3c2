"""A kernel's resource statistics: the one shape every side uses.

The agent measures them (``crucible.agent.docker.answers.stats_from_docker`` from
Docker's sample, plus the scratch usage it measures itself), sends them in heartbeats and
in the reply to ``destroy_kernel``; the manager stores them on the kernel row
(``kernels.last_stat``) and hands them to clients as the stats object of spec 4.4.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class KernelStats:
    """The container stats object of spec 4.4; every value an int, 0 when unknown."""

    cpu_used: int = 0  # CPU time, ms
    mem_max_bytes: int = 0  # the peak working set (cgroup v2: the current one)
    mem_cur_bytes: int = 0  # the working set, without page cache that could be dropped
    net_rx_bytes: int = 0  # 0 on --network none, where kernels run
    net_tx_bytes: int = 0
    io_read_bytes: int = 0  # block I/O
    io_write_bytes: int = 0
    #: Scratch usage is measured on the host tmpfs (`crucible.agent.sandbox`), not by
    #: Docker; the agent fills these in with `attrs.evolve`.
    io_max_scratch_size: int = 0
    io_cur_scratch_size: int = 0

    def as_dict(self) -> dict[str, int]:
        """The JSON object stored and sent to clients (spec 4.4), every key present."""
        return attrs.asdict(self)

    @classmethod
    def from_stored(cls, raw: object) -> KernelStats | None:
        """Read back what was stored (a row written by any version, or by hand): None
        for no object, and every key that is missing or not a number is 0, since the
        CLI crashes on nulls. The link itself is strict (`crucible.protocol.codec`)."""
        if not isinstance(raw, dict):
            return None
        values = {}
        for field in attrs.fields(cls):
            value = raw.get(field.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                values[field.name] = int(value)
            else:
                values[field.name] = 0
        return cls(**values)
