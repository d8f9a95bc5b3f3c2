"""Service ports (spec 9) end to end: the Python image's Jupyter declared, answered as
``servicePorts`` (spec 4.2, GET /kernel/:id, GraphQL ``service_ports``), started on
demand by the agent's ``start_service`` and really serving HTTP inside the session;
a start that fails (the port taken, too little time) is a bounded, clear error and the
next request starts it again.

Real Docker, real PostgreSQL. `CRUCIBLE_TEST_JUPYTER_LANG` names another image to test
(a development build); by default it is ``python``, whose recipe declares Jupyter.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
import trio

from crucible import errors
from crucible.api.stream_pumps import requested_service
from crucible.kernels.service_ports import ServicePort
from testlib.sessions import Cluster, create, execute, new_token, start_session, stream_text

LANG = os.environ.get("CRUCIBLE_TEST_JUPYTER_LANG", "python")
JUPYTER = {"name": "jupyter", "protocol": "http", "container_port": 8080, "host_port": None}
#: Jupyter's first start in a loaded two-core machine takes seconds, not minutes.
START_TIMEOUT = 120.0

#: Kernel code: fetch `path` from Jupyter inside the container (no network needed).
FETCH = """
import json, urllib.request
with urllib.request.urlopen('http://127.0.0.1:8080{path}', timeout=10) as r:
    body = r.read().decode()
    print(r.status, json.dumps(body[:20000]))
"""

#: Kernel code: start a notebook kernel through Jupyter's REST API, then find its process.
START_KERNEL = """
import http.cookiejar, json, os, time, urllib.request
jar = http.cookiejar.CookieJar()
opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
opener.open('http://127.0.0.1:8080/tree', timeout=10).read()
xsrf = next(c.value for c in jar if c.name == '_xsrf')
request = urllib.request.Request(
    'http://127.0.0.1:8080/api/kernels', data=b'{}', method='POST',
    headers={'X-XSRFToken': xsrf, 'Content-Type': 'application/json'})
with opener.open(request, timeout=30) as r:
    status, kernel = r.status, json.load(r)
deadline = time.time() + 30
found = ''
while not found and time.time() < deadline:
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            argv = open(f'/proc/{pid}/cmdline', 'rb').read().split(b'\\0')
        except OSError:
            continue
        if any(b'ipykernel' in word for word in argv):
            found = os.readlink(f'/proc/{pid}/exe')
    time.sleep(0.1)
print(status, kernel['name'], found)
"""


async def new_session(cluster: Cluster) -> tuple[str, Any]:
    token = new_token()
    response = await create(cluster.client, token, LANG)
    assert response.status_code == 201, response.text
    body = response.json()
    sessions = cluster.harness.server.components.sessions
    return token, (body, await sessions.get_live(cluster.harness.user.access_key, token))


async def fetch(cluster: Cluster, token: str, path: str) -> tuple[int, str]:
    results = await execute(cluster.client, token, FETCH.format(path=path))
    out = stream_text(results)
    assert out, results
    status, body = out.split(" ", 1)
    return int(status), str(json.loads(body))


async def test_service_ports_are_answered_everywhere(cluster: Cluster) -> None:
    token, (body, _) = await new_session(cluster)
    assert body == {"kernelId": token, "created": True, "servicePorts": [JUPYTER]}
    again = await create(cluster.client, token, LANG)
    assert again.json()["servicePorts"] == [JUPYTER] and again.json()["created"] is False
    info = await cluster.client.get(f"/kernel/{token}")
    assert info.status_code == 200 and info.json()["servicePorts"] == [JUPYTER]
    listing = await cluster.client.post(
        "/admin/graphql",
        json={"query": f'{{ compute_session(sess_id: "{token}") {{ sess_id service_ports }} }}'},
    )
    assert listing.status_code == 200, listing.text
    assert json.loads(listing.json()["compute_session"]["service_ports"]) == [JUPYTER]


async def test_jupyter_starts_on_demand_and_serves_the_session(cluster: Cluster) -> None:
    token, (_, session) = await new_session(cluster)
    sessions = cluster.harness.server.components.sessions
    calls = sessions.calls
    with trio.fail_after(START_TIMEOUT):
        first = await calls.start_service(session, "jupyter")
    assert first.service == ServicePort("jupyter", "http", 8080) and first.started is True
    with trio.fail_after(30):
        second = await calls.start_service(session, "jupyter")
    assert second.started is False  # already running: not started twice
    # Jupyter answers inside the session, bound to loopback, token-less.
    status, page = await fetch(cluster, token, "/tree")
    assert status == 200 and "Jupyter" in page
    status, specs = await fetch(cluster, token, "/api/kernelspecs")
    assert status == 200 and json.loads(specs)["default"] == "python3"
    # Its root is /home/work: a file the session writes is in its listing.
    await execute(cluster.client, token, "open('from-query.txt', 'w').write('x')")
    status, listing = await fetch(cluster, token, "/api/contents")
    assert status == 200
    assert "from-query.txt" in {entry["name"] for entry in json.loads(listing)["content"]}
    # A notebook kernel starts through Jupyter's REST API (with the XSRF cookie, as a
    # browser would send it), and it is the session's own Python.
    results = await execute(cluster.client, token, START_KERNEL)
    out = stream_text(results)
    assert out.startswith("201 ") and "/usr/bin/python3" in out, results
    # It binds loopback only (nothing else exists in a --network none container anyway).
    results = await execute(
        cluster.client,
        token,
        "print([l.split()[1] for l in open('/proc/net/tcp').readlines()[1:] "
        "if l.split()[3] == '0A'])",
    )
    assert "0100007F:1F90" in stream_text(results)  # 127.0.0.1:8080, listening


async def test_a_crashed_service_starts_again_on_the_next_request(cluster: Cluster) -> None:
    token, (_, session) = await new_session(cluster)
    sessions = cluster.harness.server.components.sessions
    # The session's interpreter holds the port: Jupyter cannot bind it and exits.
    await execute(
        cluster.client,
        token,
        "import socket\nheld = socket.socket()\nheld.bind(('127.0.0.1', 8080))",
    )
    with trio.fail_after(START_TIMEOUT), pytest.raises(errors.ServiceStartFailed) as failed:
        await sessions.calls.start_service(session, "jupyter")
    assert "exited" in str(failed.value) and failed.value.status == 500
    # Freed, the next request starts it.
    await execute(cluster.client, token, "held.close()")
    with trio.fail_after(START_TIMEOUT):
        assert (await sessions.calls.start_service(session, "jupyter")).service.port == 8080
    # Killed from inside the session (user code may), it is started again when asked.
    # (Waiting until it has exited: a dying process still holds its listening socket.)
    kill = (
        "import os, signal, time\n"
        "def state(pid):\n"
        "    try:\n"
        "        return open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()[0]\n"
        "    except OSError:\n"
        "        return 'X'\n"
        "found = []\n"
        "for pid in map(int, filter(str.isdigit, os.listdir('/proc'))):\n"
        "    try:\n"
        "        if b'notebook' in open(f'/proc/{pid}/cmdline', 'rb').read():\n"
        "            os.kill(pid, signal.SIGKILL)\n"
        "            found.append(pid)\n"
        "    except OSError:\n"
        "        pass\n"
        "deadline = time.time() + 20\n"
        "while any(state(p) not in 'ZX' for p in found) and time.time() < deadline:\n"
        "    time.sleep(0.05)\n"
        "print(len(found), [state(p) for p in found])\n"
    )
    out = stream_text(await execute(cluster.client, token, kill))
    assert out.startswith("1 ") and "R" not in out and "S" not in out, out
    with trio.fail_after(START_TIMEOUT):
        again = await sessions.calls.start_service(session, "jupyter")
    assert again.started is True
    status, _ = await fetch(cluster, token, "/api/status")
    assert status == 200


async def test_an_undeclared_app_is_app_not_found(cluster: Cluster) -> None:
    _, (_, session) = await new_session(cluster)
    sessions = cluster.harness.server.components.sessions
    with pytest.raises(errors.AppNotFound, match="jupyter"):
        requested_service(session, "tensorboard", "http")
    # The agent says so too, for a name the manager's row would not stop.
    with pytest.raises(errors.AppNotFound):
        await sessions.calls.start_service(session, "nope")


@pytest.mark.manager_config({"agent": {"service_start_timeout": 0.3}})
async def test_a_service_too_slow_to_start_is_a_bounded_clear_error(cluster: Cluster) -> None:
    _, (_, session) = await new_session(cluster)
    sessions = cluster.harness.server.components.sessions
    started = trio.current_time()
    with trio.fail_after(30), pytest.raises(errors.ServiceStartFailed) as failed:
        await sessions.calls.start_service(session, "jupyter")
    assert "did not accept connections on port 8080 in time" in str(failed.value)
    assert trio.current_time() - started < 10


async def test_tensorboard_serves_in_the_ml_image(cluster: Cluster) -> None:
    """Only where the (large, optional) ML image is built: crucible images build python-ml."""
    token = await start_session(cluster.client, "python-ml", skip_without_image=True)
    info = await cluster.client.get(f"/kernel/{token}")
    assert info.json()["servicePorts"] == [
        JUPYTER,
        {"name": "tensorboard", "protocol": "http", "container_port": 6006, "host_port": None},
    ]
    sessions = cluster.harness.server.components.sessions
    session = await sessions.get_live(cluster.harness.user.access_key, token)
    with trio.fail_after(START_TIMEOUT):
        assert (await sessions.calls.start_service(session, "tensorboard")).service.port == 6006
    results = await execute(
        cluster.client,
        token,
        "import urllib.request\n"
        "print(urllib.request.urlopen('http://127.0.0.1:6006/', timeout=10).status)",
    )
    assert stream_text(results).strip() == "200"
