"""Two managers on one database (spec 5.4): a subscriber to a session's events on one
manager hears of the restart and the end of that session handled by the other."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import trio
from trio_websocket import open_websocket_url

from crucible.db.pool import Database
from testlib.server import make_config, running_manager
from testlib.sessions import Cluster, start_session
from testlib.signing import websocket_headers

TIMEOUT = 30.0


async def test_a_subscriber_on_manager_b_hears_what_manager_a_did(
    cluster: Cluster, pg_dsn: str, db: Database
) -> None:
    token = await start_session(cluster.client)
    state = Path(tempfile.mkdtemp(prefix="crs-b-", dir="/tmp"))
    try:
        config_b = make_config(pg_dsn, state)
        async with running_manager(config_b, db) as (server_b, endpoint_b):
            with trio.fail_after(TIMEOUT):
                await server_b.components.event_relay.listening.wait()
                await cluster.harness.server.components.event_relay.listening.wait()
            url_b = endpoint_b.url
            rel_url = f"/stream/kernel/{token}/events"
            headers = websocket_headers(cluster.harness.user, urlsplit(url_b).netloc, rel_url)
            ws_url = url_b.replace("http://", "ws://") + rel_url
            async with open_websocket_url(ws_url, extra_headers=headers) as ws:
                # Manager A (the cluster's) restarts the session, then destroys it.
                with trio.fail_after(TIMEOUT):
                    restarted = await cluster.client.request("PATCH", f"/kernel/{token}")
                    assert restarted.status_code == 204, restarted.text
                    first = json.loads(await ws.get_message())
                assert first == {"name": "restarted", "reason": "user-requested"}
                with trio.fail_after(TIMEOUT):
                    destroyed = await cluster.client.request("DELETE", f"/kernel/{token}")
                    assert destroyed.status_code == 200, destroyed.text
                    second = json.loads(await ws.get_message())
                assert second == {"name": "terminated", "reason": "user-requested"}
    finally:
        shutil.rmtree(state, ignore_errors=True)
