"""The boundary between a kernel and everything else (issue 9, "Hostile tenants").

Finding 1: a session replaced the runner socket in its ipc directory with a symlink to
another tenant's and restarted itself; the agent followed the link and wired the
restarted session to the other tenant's kernel. Finding 8: processes a run left behind
(a fork bomb, daemons) kept the session at its pids limit after the run.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import trio

from crucible.keypairs import KeypairRepository, NewKeypair
from testlib.sessions import Cluster, execute, start_session, stream_text, try_each
from testlib.signing import Credentials

from .conftest import cold_and_pooled

#: Every test runs on a cold kernel and on one claimed from the warm pool: the
#: protections must hold the same for both (docs/security.md).
kernel_start, pooled_kernels_claimed = cold_and_pooled()

#: Replaces every socket name the ipc directory ever held with a symlink to TARGET
#: (``{name}`` filled in per socket), and reports what happened.
HIJACK = """
import os
results = []
for name in ("runner.sock", "agent.sock"):
    path = "/opt/crucible/ipc/" + name
    try:
        os.symlink({target!r}.format(name=name), path + ".evil")
        os.rename(path + ".evil", path)
        results.append("replaced " + name)
    except OSError as exc:
        results.append("refused %s %d" % (name, exc.errno))
print(";".join(results))
"""


async def _kernel_of(cluster: Cluster, token: str) -> tuple[str, str]:
    """(kernel directory name on the host, host pid of the container's first process)."""
    kernel_id = str(
        await cluster.harness.db.fetchval(
            "SELECT id FROM kernels WHERE sess_id = $1 ORDER BY created_at DESC LIMIT 1",
            token,
        )
    )
    supervisor = cluster.agent.kernels[kernel_id]
    with trio.fail_after(30):
        done = await trio.run_process(
            ["docker", "inspect", "-f", "{{.State.Pid}}", supervisor.container_id],
            capture_stdout=True,
        )
    return supervisor.info.kernel_dir.name, done.stdout.decode().strip()


@pytest.mark.parametrize("form", ["relative", "proc-root"])
async def test_a_planted_socket_symlink_cannot_wire_a_restart_to_another_tenant(
    cluster: Cluster, form: str
) -> None:
    repo = KeypairRepository(cluster.harness.db)
    victim_kp = await repo.create(NewKeypair("victim@test"))
    victim = cluster.client.with_credentials(
        Credentials(victim_kp.access_key, victim_kp.secret_key)
    )
    attacker = cluster.client

    b = await start_session(victim)
    await execute(victim, b, "x = 'B state'\nopen('/home/work/owner', 'w').write('B')")
    a = await start_session(attacker)
    await execute(attacker, a, "open('/home/work/owner', 'w').write('A')")

    b_dir, b_pid = await _kernel_of(cluster, b)
    target = (
        f"../../{b_dir}/ipc/{{name}}"
        if form == "relative"
        else f"/proc/{b_pid}/root/opt/crucible/ipc/{{name}}"
    )
    planted = stream_text(await execute(attacker, a, HIJACK.format(target=target)))

    response = await attacker.request("PATCH", f"/kernel/{a}")
    # A truthful answer: the restart happened, and A is A's own kernel again.
    assert response.status_code == 204, response.text
    after = stream_text(await execute(attacker, a, "print(open('/home/work/owner').read())"))
    assert after == "A\n"
    assert "B" not in stream_text(
        await execute(attacker, a, "print(globals().get('x', 'no state'))")
    )
    # B's session lives on, state and all.
    assert (await victim.get(f"/kernel/{b}")).status_code == 200
    assert stream_text(await execute(victim, b, "print(x)")) == "B state\n"
    # And the socket was never A's to replace (read-only, the agent's directory).
    assert "replaced" not in planted, planted


# -- finding 8: nothing a run started outlives it --------------------------------------------

BOUNDED = {"agent": {"max_exec_seconds": 30, "pids_limit": 64}}

#: Leaves a fork bomb running in the background and ends the run.
QUERY_BOMB = """
import os, time
if os.fork() == 0:
    os.setsid()
    while True:
        try:
            os.fork()
        except OSError:
            time.sleep(0.01)
time.sleep(2)
print("bombed")
"""

#: Fills the pids limit from a session of its own, out of reach of the step's process
#: group, and keeps every slot (a classic shell bomb dies out at the limit by itself).
BATCH_BOMB = (
    "setsid sh -c 'sleep 0.5; while :; do sleep 1000 & done' >/dev/null 2>&1 & sleep 2; echo bombed"
)

#: How many processes in the container are not this run's interpreter or its
#: ancestors (the runner, and docker-init where there is one).
LEFTOVERS = """
import os
def parent(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])
ancestors, pid = set(), os.getpid()
while pid:
    ancestors.add(pid)
    pid = parent(pid)
others = [p for p in os.listdir("/proc") if p.isdigit() and int(p) not in ancestors]
print("leftovers:", len(others))
"""


async def _prompt(cluster: Cluster, token: str) -> None:
    """The session is usable at once: a query, a process listing and a batch run that
    needs to fork (it cannot while a bomb holds the pids limit)."""
    started = time.monotonic()
    assert stream_text(await execute(cluster.client, token, "print(1)")) == "1\n"
    assert time.monotonic() - started < 5
    # Only the runner (pid 1) and the interpreter are left.
    assert stream_text(await execute(cluster.client, token, LEFTOVERS)) == "leftovers: 0\n"
    batch = await execute(
        cluster.client,
        token,
        "",
        mode="batch",
        options={"clean": None, "build": None, "exec": "echo forked"},
    )
    assert stream_text(batch) == "forked\n"


@pytest.mark.manager_config(BOUNDED)
async def test_a_fork_bomb_in_query_mode_ends_with_its_run(cluster: Cluster) -> None:
    token = await start_session(cluster.client)
    assert stream_text(await execute(cluster.client, token, QUERY_BOMB)) == "bombed\n"
    await _prompt(cluster, token)


@pytest.mark.manager_config(BOUNDED)
async def test_a_fork_bomb_in_batch_mode_ends_with_its_run(cluster: Cluster) -> None:
    token = await start_session(cluster.client)
    results = await execute(
        cluster.client,
        token,
        "",
        mode="batch",
        options={"clean": None, "build": None, "exec": BATCH_BOMB},
    )
    assert results[-1]["status"] == "finished"
    assert stream_text(results) == "bombed\n"
    await _prompt(cluster, token)


#: Leaves daemons behind (setsid, nohup, a subshell, a double fork) and ends the run;
#: prints whether they were running when it ended.
DAEMONS = """
import os, subprocess
subprocess.run('setsid sleep 1000 >/dev/null 2>&1 & '
               'nohup sleep 1001 >/dev/null 2>&1 & (sleep 1002 &)', shell=True)
if os.fork() == 0:
    if os.fork() == 0:
        os.setsid()
        import time; time.sleep(1000)
    os._exit(0)
print(len([p for p in os.listdir('/proc') if p.isdigit()]) > 2)
"""


@pytest.mark.manager_config(BOUNDED)
async def test_daemons_end_with_their_run(cluster: Cluster) -> None:
    token = await start_session(cluster.client)
    assert stream_text(await execute(cluster.client, token, DAEMONS)) == "True\n"
    assert stream_text(await execute(cluster.client, token, LEFTOVERS)) == "leftovers: 0\n"


async def test_user_code_cannot_reach_into_the_runner(cluster: Cluster) -> None:
    # The runner is not dumpable: same uid, yet its memory, descriptors (its stderr is
    # the container log) and environment are closed to user code; and pid 1 ignores
    # signals it has no handler for.
    token = await start_session(cluster.client)
    code = try_each(
        ["/proc/1/mem", "/proc/1/fd/2", "/proc/1/environ"],
        "open(target, 'rb').close()",
        setup="import os, signal",
    )
    code += "os.kill(1, signal.SIGKILL)\nprint('runner alive')\n"
    out = stream_text(await execute(cluster.client, token, code))
    assert "allowed" not in out, out
    assert out.endswith("runner alive\n")
    assert stream_text(await execute(cluster.client, token, "print(2)")) == "2\n"


async def test_destroying_a_session_never_reaches_through_its_scratch(
    cluster: Cluster, tmp_path: Path
) -> None:
    """The agent unmounts and removes a destroyed session's scratch: links planted in
    it (to host paths, to the kernel directory around it) and a tree far deeper than
    any recursion limit leave the host untouched and nothing mounted."""
    marker = tmp_path / "host-file"
    marker.write_text("host")
    token = await start_session(cluster.client)
    kernel_dir_name, _ = await _kernel_of(cluster, token)
    kernel_dir = cluster.agent.kernels_root / kernel_dir_name
    code = (
        "import os\n"
        f"os.symlink({str(tmp_path)!r}, 'host-dir')\n"
        f"os.symlink({str(marker)!r}, 'host-file')\n"
        "os.symlink('..', 'up')\n"
        "fd = os.open('.', os.O_RDONLY)\n"
        "for _ in range(3000):\n"
        "    os.mkdir('d', dir_fd=fd)\n"
        "    nxt = os.open('d', os.O_RDONLY, dir_fd=fd)\n"
        "    os.close(fd)\n"
        "    fd = nxt\n"
        "print('planted')\n"
    )
    assert stream_text(await execute(cluster.client, token, code)) == "planted\n"
    assert (await cluster.client.request("DELETE", f"/kernel/{token}")).status_code in (200, 204)
    with trio.fail_after(30):
        while kernel_dir.exists():
            await trio.sleep(0.2)
    names, mounts = await trio.to_thread.run_sync(_host_view, tmp_path)
    assert marker.read_text() == "host"
    assert names == ["host-file"]
    assert str(kernel_dir) not in mounts


def _host_view(folder: Path) -> tuple[list[str], str]:
    return sorted(p.name for p in folder.iterdir()), Path("/proc/self/mounts").read_text()
