"""A session's byte streams: its terminal (spec 5.3) and tunnels to its service ports
(spec 5.5), opened on its agent's link (`crucible.cluster.streams`), and what their
failures are to the client.
"""

from __future__ import annotations

import logging

import attrs
import trio

from crucible import errors
from crucible.cluster.links import AgentCallFailed, AgentUnreachable
from crucible.cluster.streams import LinkStream
from crucible.config import StreamsConfig
from crucible.kernels.service_ports import ServicePort
from crucible.protocol.failures import ErrorKind
from crucible.protocol.stream_flow import StreamEnded
from crucible.protocol.streams import StreamKind
from crucible.sessions.agent_calls import AgentCalls, agent_error
from crucible.sessions.model import Session

log = logging.getLogger(__name__)

#: Seconds beyond the kernel's own waits that opening a stream may take on the link.
OPEN_MARGIN = 10.0


class ServiceRefused(StreamEnded):
    """The service did not accept the tunnel's connection (close code 1014)."""


@attrs.frozen
class SessionStreams:
    calls: AgentCalls
    settings: StreamsConfig

    async def open_terminal(self, session: Session, *, rows: int, cols: int) -> LinkStream:
        return await self._open(session, "pty", rows=rows, cols=cols, port=0, wait=0)

    async def open_tunnel(self, session: Session, service: ServicePort) -> LinkStream:
        """A connection to `service`, started on demand (the agent's ``start_service``,
        bounded by ``agent.service_start_timeout``: an app that cannot start is a 500
        ``service-start-failed`` before the upgrade) and then waited for until it accepts
        (``streams.service_wait_timeout``); `ServiceRefused` when it does not."""
        await self.calls.start_service(session, service.name)
        wait = self.settings.service_wait_timeout
        return await self._open(session, "tcp", rows=0, cols=0, port=service.port, wait=wait)

    async def _open(
        self,
        session: Session,
        kind: StreamKind,
        *,
        rows: int,
        cols: int,
        port: int,
        wait: float,
    ) -> LinkStream:
        if session.agent_id is None or session.status != "RUNNING":
            raise errors.KernelNotFound(f"Session {session.token!r} is {session.status.lower()}.")
        settings = self.settings
        try:
            link = self.calls.agents.link(session.agent_id)
            return await link.open_stream(
                window=settings.window_bytes,
                chunk_bytes=settings.chunk_bytes,
                # The agent may take open_timeout to reach the runner, then `wait` to
                # connect to the service.
                timeout=settings.open_timeout + wait + OPEN_MARGIN,
                kernel_id=session.id,
                kind=kind,
                rows=rows,
                cols=cols,
                port=port,
                wait=wait,
            )
        except AgentCallFailed as exc:
            if exc.kind == ErrorKind.SERVICE_REFUSED:
                raise ServiceRefused(exc.title, refused=True) from exc
            if exc.kind == ErrorKind.KERNEL_NOT_FOUND:
                await self.calls.endings.record(session.id, "kernel-lost")
                raise errors.KernelNotFound(f"Session {session.token!r} has ended.") from exc
            if exc.kind == ErrorKind.TOO_MANY_STREAMS:
                raise errors.ServiceUnavailable(exc.title) from exc
            raise agent_error(errors.KernelExecutionFailed, exc) from exc
        except (AgentUnreachable, trio.TooSlowError) as exc:
            raise agent_error(errors.KernelExecutionFailed, exc) from exc
