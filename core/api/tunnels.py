"""``/stream/kernel/:id/httpproxy`` and ``/tcpproxy``: app tunnels (spec 5.5).

``?app=NAME`` (``service=`` too; ``app`` wins) names one of the session's service
ports: an undeclared name is ``404 app-not-found`` and a port of the other protocol a
``400``, both before the upgrade. The kernel starts the service if it must and the
connection is made (waiting up to ``streams.service_wait_timeout`` for the service
to accept) before the upgrade, so no byte is lost; then BINARY frames carry the raw
bytes both ways (TEXT frames from the client are ignored), one WebSocket per TCP
connection. A service that never accepted: close code 1014; the service closed its
side: 1000; a client that stops reading: 1008.
"""

from __future__ import annotations

import trio
from quart import Blueprint, websocket
from quart.wrappers import Websocket

from crucible import errors
from crucible.api.context import manager_context
from crucible.api.stream_pumps import (
    ClientTooSlow,
    pump_to_client,
    requested_service,
    serve_stream,
    session_streams,
    stream_session,
)
from crucible.cluster.streams import LinkStream
from crucible.kernels.service_ports import ServicePort
from crucible.protocol.stream_flow import StreamEnded
from crucible.sessions.model import Session
from crucible.sessions.streams import ServiceRefused

blueprint = Blueprint("tunnels", __name__)

#: Close codes (spec 5.5; RFC 6455 7.4.1).
NORMAL = 1000
POLICY = 1008
BAD_GATEWAY = 1014


@blueprint.websocket("/stream/kernel/<token>/httpproxy")
async def http_proxy(token: str) -> None:
    await _tunnel(token, "http")


@blueprint.websocket("/stream/kernel/<token>/tcpproxy")
async def tcp_proxy(token: str) -> None:
    await _tunnel(token, "tcp")


async def _requested_service(token: str, protocol: str) -> tuple[Session, ServicePort]:
    session, _ = await stream_session(token)
    args = websocket.args
    name = args.get("app") or args.get("service")
    if not name:
        raise errors.InvalidAPIParameters("Name the service with ?app=NAME.")
    return session, requested_service(session, name, protocol)


async def _tunnel(token: str, protocol: str) -> None:
    session, service = await _requested_service(token, protocol)
    try:
        stream = await session_streams().open_tunnel(session, service)
    except ServiceRefused as exc:
        await websocket.accept()
        await websocket.close(BAD_GATEWAY, exc.reason[:120])
        return
    await serve_stream(stream, lambda ws: _relay(ws, stream))


async def _relay(ws: Websocket, stream: LinkStream) -> tuple[int, str]:
    timeout = manager_context().config.streams.client_send_timeout
    outcome: list[tuple[int, str]] = []

    async def down() -> None:
        try:
            await pump_to_client(stream, ws.send, timeout=timeout)
        except ClientTooSlow as exc:
            outcome.append((POLICY, str(exc)))
        else:
            ending = stream.flow.ending
            outcome.append((NORMAL, ending.reason if ending else "the service closed"))

    async def up() -> None:
        try:
            while True:
                data = await ws.receive()
                if isinstance(data, bytes) and data:
                    await stream.send(data)
        except StreamEnded:
            return  # the service side ended: `down` delivers what is left, then closes

    async with trio.open_nursery() as nursery:

        async def first(side: object) -> None:
            await side()  # type: ignore[operator]
            if outcome:
                nursery.cancel_scope.cancel()

        nursery.start_soon(first, down)
        nursery.start_soon(first, up)
    return outcome[0] if outcome else (NORMAL, "")
