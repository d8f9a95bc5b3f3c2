"""The Node.js kernel's persistent context (nodechild.js): state, promises, errors,
interrupts and completion through the API."""

from __future__ import annotations

import pytest
import trio

from testlib.sessions import Cluster, execute, start_session, stream_text


@pytest.fixture
async def node(cluster: Cluster) -> str:
    return await start_session(cluster.client, "nodejs", skip_without_image=True)


async def test_state_promises_and_later_errors(cluster: Cluster, node: str) -> None:
    client = cluster.client
    await execute(client, node, "const base = 40\nclass Adder { add(x) { return x + base } }")
    results = await execute(client, node, "console.log(new Adder().add(2))")
    assert stream_text(results) == "42\n"
    # A promise the snippet evaluates to is awaited before the run finishes.
    code = "(async () => { await new Promise(r => setTimeout(r, 300)); console.log('late') })()"
    assert stream_text(await execute(client, node, code)) == "late\n"
    # require() resolves from /home/work and the standard library alike.
    code = "const os = require('os'); console.log(typeof os.cpus)"
    assert stream_text(await execute(client, node, code)) == "function\n"
    failing = await execute(client, node, "undefinedFunction()")
    assert "ReferenceError" in stream_text(failing, "stderr")
    assert failing[-1]["exitCode"] == 0
    assert stream_text(await execute(client, node, "console.log(base)")) == "40\n"


async def test_interrupt_and_exit(cluster: Cluster, node: str) -> None:
    client = cluster.client
    await execute(client, node, "var kept = 'yes'")
    first = await client.post(
        f"/kernel/{node}", json={"mode": "query", "code": "while (true) {}", "runId": None}
    )
    run_id = first.json()["result"]["runId"]
    assert (await client.post(f"/kernel/{node}/interrupt")).status_code == 204
    with trio.fail_after(20):
        while True:
            body = {"mode": "continue", "code": "", "runId": run_id}
            result = (await client.post(f"/kernel/{node}", json=body)).json()["result"]
            if result["status"] == "finished":
                break
    # Interrupted, not killed: the context is still there.
    assert stream_text(await execute(client, node, "console.log(kept)")) == "yes\n"
    # process.exit() ends the interpreter; the next run gets a fresh one.
    ended = await execute(client, node, "process.exit(3)")
    assert ended[-1]["exitCode"] == 3
    assert stream_text(await execute(client, node, "console.log(typeof kept)")) == "undefined\n"


async def test_completion(cluster: Cluster, node: str) -> None:
    await execute(cluster.client, node, "const greeting = 'hi'")
    options = {"post": "", "line": "", "row": 0, "col": 0}
    response = await cluster.client.post(
        f"/kernel/{node}/complete", json={"code": "Math.fl", "options": options}
    )
    assert response.json()["result"] == ["Math.floor"]
    response = await cluster.client.post(
        f"/kernel/{node}/complete", json={"code": "gree", "options": options}
    )
    assert "greeting" in response.json()["result"]
