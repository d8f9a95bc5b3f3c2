"""App tunnels (spec 5.5) over the whole path, to services the test starts inside the
session (the container keeps no network: the runner relays its own loopback)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time

import pytest
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, WebSocketConnection
from wsproto import frame_protocol

from crucible.keypairs import KeypairRepository, NewKeypair
from crucible.tunnel_client import Tunnel, serve
from testlib.sessions import Cluster, execute, start_session, stream_text
from testlib.signing import Credentials
from testlib.streams import close_code, open_stream
from testlib.tunnel_image import START_SERVICES, ensure_tunnel_image

FAST = {"streams": {"service_wait_timeout": 1.0, "client_send_timeout": 2.0}}


@pytest.fixture(scope="session")
def tunnel_image(docker_ready: None) -> str:
    return ensure_tunnel_image()


@pytest.fixture
async def served(cluster: Cluster, tunnel_image: str) -> str:
    """A session of the tunnel image with its test services listening."""
    token = await start_session(cluster.client, tunnel_image)
    out = stream_text(await execute(cluster.client, token, START_SERVICES))
    assert "services up" in out
    return token


async def read_all(ws: WebSocketConnection, *, timeout: float = 20) -> tuple[bytes, int | None]:
    """Everything until the server closes, and its close code."""
    data = bytearray()
    with trio.fail_after(timeout):
        try:
            while True:
                message = await ws.get_message()
                assert isinstance(message, bytes)
                data += message
        except ConnectionClosed as exc:
            return bytes(data), exc.reason.code if exc.reason else None


async def rejected(
    cluster: Cluster, path: str, creds: Credentials | None = None
) -> tuple[int, str]:
    with pytest.raises(ConnectionRejected) as caught:
        async with open_stream(cluster, path, creds):
            pass
    body = json.loads(caught.value.body or b"{}")
    return caught.value.status_code, str(body.get("type", "")).rsplit("/", 1)[-1]


async def test_http_through_httpproxy(cluster: Cluster, served: str) -> None:
    await execute(cluster.client, served, "open('/home/work/hello.txt', 'w').write('hi there')")
    async with open_stream(cluster, f"/stream/kernel/{served}/httpproxy?app=web") as ws:
        await ws.send_message(b"GET /hello.txt HTTP/1.0\r\nHost: x\r\n\r\n")
        await ws.send_message("text frames are ignored")
        data, code = await read_all(ws)
    assert data.startswith(b"HTTP/1.0 200") and data.endswith(b"hi there")
    assert code == 1000  # the service closed its side


async def test_tcp_echo_carries_64_mib_intact(cluster: Cluster, served: str) -> None:
    payload = os.urandom(64 << 20)  # the 64 MiB, both ways at once
    received = bytearray()
    async with open_stream(cluster, f"/stream/kernel/{served}/tcpproxy?service=echo") as ws:

        async def reader() -> None:
            while len(received) < len(payload):
                message = await ws.get_message()
                assert isinstance(message, bytes)
                received.extend(message)

        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(reader)
                for offset in range(0, len(payload), 256 * 1024):
                    await ws.send_message(payload[offset : offset + 256 * 1024])
    assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()


@pytest.mark.manager_config(FAST)
async def test_a_service_that_never_listens_is_refused_in_bounded_time(
    cluster: Cluster, served: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # wsproto (this test's client) predates the IANA registration of 1014 (Bad Gateway)
    # and refuses it as "unknown reserved"; the official client's aiohttp knows it.
    monkeypatch.setattr(frame_protocol, "MAX_PROTOCOL_CLOSE_REASON", 999)
    started = time.monotonic()
    async with open_stream(cluster, f"/stream/kernel/{served}/tcpproxy?app=idle") as ws:
        with pytest.raises(ConnectionClosed) as caught, trio.fail_after(20):
            await ws.get_message()
    reason = caught.value.reason
    assert reason is not None and reason.code == 1014
    assert "refused" in (reason.reason or "")
    assert time.monotonic() - started < 10


async def test_bad_tunnel_requests(cluster: Cluster, served: str) -> None:
    base = f"/stream/kernel/{served}"
    assert await rejected(cluster, f"{base}/httpproxy?app=nosuch") == (404, "app-not-found")
    assert (await rejected(cluster, f"{base}/tcpproxy?app=web"))[0] == 400
    assert (await rejected(cluster, f"{base}/httpproxy?app=echo"))[0] == 400
    assert (await rejected(cluster, f"{base}/httpproxy?app=shell"))[0] == 400
    assert (await rejected(cluster, f"{base}/httpproxy"))[0] == 400
    # `app` wins over `service`.
    path = f"{base}/httpproxy?app=nosuch&service=web"
    assert await rejected(cluster, path) == (404, "app-not-found")


async def test_only_the_owner_or_an_admin_opens_a_tunnel(cluster: Cluster, served: str) -> None:
    other_kp = await KeypairRepository(cluster.harness.db).create(NewKeypair("other@test"))
    other = Credentials(other_kp.access_key, other_kp.secret_key)
    path = f"/stream/kernel/{served}/httpproxy?app=web"
    assert await rejected(cluster, path, other) == (404, "kernel-not-found")
    owner = cluster.harness.user.access_key
    sneaky = f"{path}&owner_access_key={owner}"
    assert await rejected(cluster, sneaky, other) == (404, "kernel-not-found")
    async with open_stream(cluster, sneaky, cluster.harness.admin) as ws:
        await ws.send_message(b"GET / HTTP/1.0\r\n\r\n")
        data, _ = await read_all(ws)
    assert data.startswith(b"HTTP/1.0 200")
    # An admin's owner is checked before the database sees it.
    bad_owner = f"{path}&owner_access_key=%00not-a-key"
    assert (await rejected(cluster, bad_owner, cluster.harness.admin))[0] == 400


async def test_a_gone_session_is_not_found(cluster: Cluster, served: str) -> None:
    assert (await cluster.client.request("DELETE", f"/kernel/{served}")).status_code == 200
    path = f"/stream/kernel/{served}/httpproxy?app=web"
    assert await rejected(cluster, path) == (404, "kernel-not-found")


async def test_destroying_the_session_closes_its_tunnels(cluster: Cluster, served: str) -> None:
    async with open_stream(cluster, f"/stream/kernel/{served}/tcpproxy?app=echo") as ws:
        await ws.send_message(b"ping")
        assert await ws.get_message() == b"ping"
        assert (await cluster.client.request("DELETE", f"/kernel/{served}")).status_code == 200
        _, code = await read_all(ws)
    assert code == 1000


@pytest.mark.manager_config(FAST)
async def test_a_client_that_stops_reading_holds_one_window(
    cluster: Cluster, served: str
) -> None:
    """A flood to a client that reads nothing: the manager and the agent hold at most a
    window of it, other calls go on, and the client is dropped after
    client_send_timeout (2 s here)."""
    window = cluster.config.streams.window_bytes
    link = cluster.harness.server.components.agents.link(cluster.agent.id)
    supervisor = next(iter(cluster.agent.kernels.values()))
    async with open_stream(cluster, f"/stream/kernel/{served}/tcpproxy?app=flood") as ws:
        with trio.fail_after(30):
            await ws.get_message()  # it flows; now stop reading
            await trio.sleep(1)
            out = stream_text(await execute(cluster.client, served, "print(6 * 7)"))
            assert out == "42\n"
            for stream in list(link.streams._streams.values()):
                assert stream.flow.buffered <= window
            for end in list(supervisor.streams._streams.values()):
                assert end.flow.buffered <= window
            await trio.sleep(4)
        # Dropped: what was under way comes, then the close (not a 1000).
        assert await close_code(ws, timeout=60) == 1008
    assert not link.streams._streams


async def test_crucible_app_tunnels_local_connections(cluster: Cluster, served: str) -> None:
    """`crucible app`: one signed tunnel per local connection, several at once."""
    await execute(cluster.client, served, "open('/home/work/app.txt', 'w').write('via app')")
    user = cluster.harness.user
    tunnel = Tunnel(cluster.harness.url, user.access_key, user.secret_key, served, "web")

    async def fetch(port: int) -> bytes:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(b"GET /app.txt HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
        return data

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve, tunnel, "127.0.0.1", 0)
            answers: list[bytes] = []

            async def one() -> None:
                answers.append(await fetch(port))

            async with trio.open_nursery() as clients:
                for _ in range(3):
                    clients.start_soon(one)
            nursery.cancel_scope.cancel()
    assert len(answers) == 3
    assert all(a.startswith(b"HTTP/1.0 200") and a.endswith(b"via app") for a in answers)


async def test_pty_service_selects_a_declared_terminal(cluster: Cluster, served: str) -> None:
    base = f"/stream/kernel/{served}/pty"
    assert await rejected(cluster, f"{base}?service=nosuch") == (404, "app-not-found")
    assert (await rejected(cluster, f"{base}?service=web"))[0] == 400
    async with open_stream(cluster, f"{base}?service=shell") as ws:
        chars = base64.b64encode(b"echo pty-$((3*3))\n").decode()
        await ws.send_message(json.dumps({"type": "stdin", "chars": chars}))
        seen = b""
        with trio.fail_after(20):
            while b"pty-9" not in seen:
                seen += base64.b64decode(json.loads(await ws.get_message())["data"])
