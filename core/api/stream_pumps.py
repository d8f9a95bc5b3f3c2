"""What the terminal and tunnel endpoints share: the session a handshake names and the
service it asks for, the socket's life around one stream, and the pump of a stream's
bytes to the client's WebSocket (spec 5.3, 5.5, 5.6).

Failures before the upgrade are plain problem responses; after it, the socket closes.
A client that takes longer than ``streams.client_send_timeout`` to take one message is
disconnected (`ClientTooSlow`): it must not stall a terminal others share, and what it
did not read never piles up here (the stream's window does not grow).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio
from quart import websocket
from quart.wrappers import Websocket

from crucible import errors
from crucible.api.context import manager_context
from crucible.api.guard import authenticate, count_message
from crucible.cluster.streams import LinkStream
from crucible.config import ACCESS_KEY_RE
from crucible.kernels.service_ports import ServicePort, find_service
from crucible.keypairs import Keypair
from crucible.sessions.model import Session
from crucible.sessions.streams import SessionStreams


class ClientTooSlow(Exception):
    """The client stopped reading."""


async def stream_session(token: str) -> tuple[Session, Keypair]:
    """Authenticate the handshake (signed, rate-limited) and find the session: the
    caller's own, or for an admin the one of ``owner_access_key``; it counts as a
    query of the session (spec 5.6)."""
    keypair = await authenticate()
    owner = websocket.args.get("owner_access_key") or keypair.access_key
    if owner != keypair.access_key and not keypair.is_admin:
        raise errors.KernelNotFound(f"No live session {token!r}.")
    if not ACCESS_KEY_RE.match(owner):
        raise errors.InvalidAPIParameters("'owner_access_key' is not an access key.")
    ctx = manager_context()
    session = await ctx.sessions.get_live(owner, token)
    ctx.sessions.activity.touch(session.id, session.access_key)
    return session, keypair


def requested_service(session: Session, name: str, protocol: str) -> ServicePort:
    """The service `name` of `session`, which must speak `protocol` (404, else 400)."""
    ports = session.service_ports
    service = find_service(ports, name)
    if service is None:
        offered = ", ".join(port.name for port in ports) or "none"
        raise errors.AppNotFound(f"The session offers no service {name!r} (it offers: {offered}).")
    if service.protocol != protocol:
        raise errors.InvalidAPIParameters(
            f"Service {name!r} speaks {service.protocol}, not {protocol}"
            + (
                f": use /stream/kernel/:id/{service.protocol}proxy."
                if service.protocol != "pty"
                else ": open it with /stream/kernel/:id/pty?service=NAME."
            )
        )
    return service


def count_client_message(session: Session, keypair: Keypair) -> None:
    """A client message other than keystrokes: counted and rate-limited (spec 5.6)."""
    count_message(keypair)
    manager_context().sessions.activity.touch(session.id, session.access_key)


def session_streams() -> SessionStreams:
    ctx = manager_context()
    return SessionStreams(ctx.sessions.calls, ctx.config.streams)


def _current_websocket() -> Websocket:
    # The proxy resolves per task; the pumps run in tasks of their own.
    ws: Websocket = websocket._get_current_object()  # type: ignore[attr-defined]
    return ws


async def serve_stream(
    stream: LinkStream, serve: Callable[[Websocket], Awaitable[tuple[int, str]]]
) -> None:
    """Accept the upgrade and relay `stream` with `serve` (it returns the close code and
    reason); the stream is closed whatever happens, then the socket."""
    try:
        await websocket.accept()
        code, reason = await serve(_current_websocket())
    finally:
        await stream.aclose()
    await websocket.close(code, reason[:120])


async def pump_to_client(
    stream: LinkStream, send: Callable[[bytes], Awaitable[None]], *, timeout: float
) -> None:
    """Hand the stream's bytes to the client until the stream ends; `ClientTooSlow`
    when one send took more than `timeout` seconds.

    The server's send to a socket cannot be cancelled (Hypercorn shields it), so a
    watchdog ends the *stream* of a client stuck in a send: the kernel stops feeding
    it (a shared terminal goes on for the others) and nothing more piles up here; the
    stuck send ends when the client reads again or goes away."""
    sending_since: list[float] = []
    too_slow = trio.Event()

    async def watchdog() -> None:
        while True:
            started = sending_since[0] if sending_since else None
            if started is not None and trio.current_time() - started >= timeout:
                too_slow.set()
                await stream.aclose("the client stopped reading")
                return
            await trio.sleep(timeout / 4 if started is not None else timeout / 2)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watchdog)
        while not too_slow.is_set() and (data := await stream.receive()):
            sending_since[:] = [trio.current_time()]
            await send(data)
            sending_since.clear()
            await stream.passed_on(len(data))
        nursery.cancel_scope.cancel()
    if too_slow.is_set():
        raise ClientTooSlow(f"the client took no data for {timeout} s")
