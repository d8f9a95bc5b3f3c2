"""``crucible app SESSION APP``: reach a session's service from this machine.

A local listener; for every TCP connection it accepts it opens one signed WebSocket to
``/stream/kernel/SESSION/httpproxy?app=APP`` (``tcpproxy`` with ``--protocol tcp``)
and relays the raw bytes both ways, as the 18.12 client's ``app`` command meant to
(that command cannot start on Python 3.10+). Endpoint and keys come from the same
``BACKEND_ENDPOINT``, ``BACKEND_ACCESS_KEY`` and ``BACKEND_SECRET_KEY`` variables. It
needs only this package (trio, trio-websocket), so it runs on a laptop.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

import attrs
import trio
from trio_websocket import ConnectionClosed, HandshakeError, open_websocket_url

from crucible import auth

API_VERSION = "v4.20181215"
USER_AGENT = "Crucible app tunnel (Backend.AI API v4.20181215)"
#: What a failed tunnel answers an HTTP client (the 18.12 client does the same).
UNAVAILABLE = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s"
)
READ_BYTES = 64 * 1024


@attrs.frozen
class Tunnel:
    endpoint: str
    access_key: str
    secret_key: str = attrs.field(repr=False)
    session: str
    app: str
    protocol: str = "http"

    @property
    def rel_url(self) -> str:
        session = quote(self.session, safe="")
        return f"/stream/kernel/{session}/{self.protocol}proxy?app={quote(self.app)}"

    def headers(self) -> list[tuple[bytes, bytes]]:
        """The handshake's headers, signed as the official client signs them."""
        now = datetime.now(UTC)
        raw_date = now.isoformat()
        host = urlsplit(self.endpoint).netloc.lower()
        data = auth.SigningInput(
            "GET", self.rel_url, raw_date, host, "application/octet-stream", API_VERSION
        )
        signature = auth.sign(self.secret_key, now, data)
        authorization = (
            f"BackendAI signMethod=HMAC-SHA256, credential={self.access_key}:{signature}"
        )
        return [
            (b"Date", raw_date.encode()),
            (b"X-BackendAI-Version", API_VERSION.encode()),
            (b"User-Agent", USER_AGENT.encode()),
            (b"Authorization", authorization.encode()),
        ]

    @property
    def url(self) -> str:
        base = self.endpoint.rstrip("/")
        return base.replace("https://", "wss://", 1).replace("http://", "ws://", 1) + self.rel_url


async def relay(tunnel: Tunnel, local: trio.SocketStream) -> None:
    """One local connection through one WebSocket, until either side closes."""
    answered = False
    try:
        async with open_websocket_url(tunnel.url, extra_headers=tunnel.headers()) as ws:
            async with trio.open_nursery() as nursery:

                async def up() -> None:
                    while data := await local.receive_some(READ_BYTES):
                        await ws.send_message(data)
                    await ws.aclose()

                nursery.start_soon(up)
                try:
                    while True:
                        message = await ws.get_message()
                        if isinstance(message, bytes):
                            answered = True
                            await local.send_all(message)
                except ConnectionClosed as exc:
                    code = exc.reason.code if exc.reason else None
                    if code != 1000 and not answered:
                        why = (exc.reason.reason if exc.reason else None) or f"closed ({code})"
                        await _unavailable(tunnel, local, why)
                nursery.cancel_scope.cancel()
    except HandshakeError as exc:
        await _unavailable(tunnel, local, f"the tunnel was refused: {exc}")
    except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # either side went away
    finally:
        await local.aclose()


async def _unavailable(tunnel: Tunnel, local: trio.SocketStream, reason: str) -> None:
    print(f"crucible app: {tunnel.app}: {reason}", file=sys.stderr, flush=True)
    if tunnel.protocol == "http":
        body = reason.encode()
        try:
            await local.send_all(UNAVAILABLE % (len(body), body))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


async def serve(
    tunnel: Tunnel, host: str, port: int, *, task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = listeners[0].socket.getsockname()
    scheme = "http" if tunnel.protocol == "http" else "tcp"
    print(f"{tunnel.app} of {tunnel.session}: {scheme}://{bound[0]}:{bound[1]}", flush=True)
    task_status.started(bound[1])

    async def handler(stream: trio.SocketStream) -> None:
        await relay(tunnel, stream)

    await trio.serve_listeners(handler, listeners)


def _bind(text: str, port: int | None) -> tuple[str, int]:
    """``HOST`` or ``HOST:PORT`` (`port`, when given, wins); `ValueError` if bad."""
    host, sep, tail = text.rpartition(":")
    if not sep:
        host, tail = text, ""
    return host or "127.0.0.1", port if port is not None else int(tail or 0)


def cmd_app(args: argparse.Namespace, config: object) -> int:
    env = os.environ
    missing = [k for k in ("BACKEND_ACCESS_KEY", "BACKEND_SECRET_KEY") if not env.get(k)]
    if missing:
        print(f"crucible app: set {' and '.join(missing)}", file=sys.stderr)
        return 2
    tunnel = Tunnel(
        env.get("BACKEND_ENDPOINT", "http://127.0.0.1:8081"),
        env["BACKEND_ACCESS_KEY"],
        env["BACKEND_SECRET_KEY"],
        args.session,
        args.app,
        args.protocol,
    )
    try:
        host, port = _bind(args.bind, args.port)
    except ValueError:
        print(f"crucible app: --bind {args.bind!r} is not HOST or HOST:PORT", file=sys.stderr)
        return 2
    try:
        trio.run(serve, tunnel, host, port)
    except KeyboardInterrupt:
        print("crucible app: stopped", file=sys.stderr)
    except OSError as exc:
        print(f"crucible app: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    return 0


def register(sub: Any) -> None:
    app = sub.add_parser("app", help="tunnel a session's service (Jupyter...) to this machine")
    app.add_argument("session", help="the session's name (client token)")
    app.add_argument("app", help="the service's name, as the session's servicePorts list it")
    app.add_argument("--bind", default="127.0.0.1", help="HOST or HOST:PORT to listen on")
    app.add_argument("--port", "-p", type=int, help="local port (default: any free one)")
    app.add_argument(
        "--protocol",
        choices=("http", "tcp"),
        default="http",
        help="the service's protocol: httpproxy or tcpproxy (default http)",
    )
    app.set_defaults(func=cmd_app)
