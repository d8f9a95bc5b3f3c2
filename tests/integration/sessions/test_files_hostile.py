"""Session files against a hostile session: every kind of entry planted where the agent
expects another, and a tree rearranged while the agent walks it (issue 9, finding 1's
class: the agent never trusts what a kernel can write)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import trio

from testlib.files import upload
from testlib.sessions import Cluster, execute, stream_text

from .test_files_api import download, list_dir, work_dir


def _top(home: Path) -> dict[str, bytes | None]:
    """The work directory's top level (not the 1500-level tree: os.walk recurses)."""
    return {
        p.name: p.read_bytes() if p.is_file() and not p.is_symlink() else None
        for p in home.iterdir()
    }


PLANT = r"""
import errno, os, socket
open('orig', 'w').write('mine')
os.link('orig', 'hard')
listener = socket.socket(socket.AF_UNIX)
listener.bind('sock')
os.mkdir('adir')
open('adir/inside', 'w').write('in')
# Hard links to files of other mounts are impossible (EXDEV): the only hard links a
# session has are to its own files.
for source in ('/etc/passwd', '/opt/crucible/runner/main.py'):
    try:
        os.link(source, 'stolen')
        print('linked', source)
    except OSError as exc:
        print('refused', errno.errorcode[exc.errno])
fd = os.open('.', os.O_RDONLY)
os.mkdir('deep', dir_fd=fd)
level = os.open('deep', os.O_RDONLY, dir_fd=fd)
for _ in range(1500):
    os.mkdir('d', dir_fd=level)
    nxt = os.open('d', os.O_RDONLY, dir_fd=level)
    os.close(level)
    level = nxt
"""


async def test_hard_links_sockets_directories_and_deep_trees(
    cluster: Cluster, session: str
) -> None:
    out = stream_text(await execute(cluster.client, session, PLANT))
    assert out == "refused EXDEV\nrefused EXDEV\n", out
    home = await work_dir(cluster, session)

    # A hard link is the session's own file under two names: writing it is writing
    # that file, nothing else.
    assert await upload(cluster, session, [("hard", b"new")]) == 204
    assert (home / "orig").read_bytes() == b"new"
    before = _top(home)
    # A socket or a directory where a file is expected: refused, nothing written.
    for target in ("sock", "adir"):
        assert await upload(cluster, session, [(target, b"x")]) == 400, target
    assert _top(home) == before
    status, _, _ = await download(cluster, session, ["sock"])
    assert status == 404
    status, listing = await list_dir(cluster, session, ".")
    assert status == 200
    modes = {f["filename"]: f["mode"][0] for f in json.loads(listing["files"])}
    assert (modes["sock"], modes["adir"], modes["hard"]) == ("s", "d", "-")

    # A tree deeper than any download may be: a clear refusal, not an agent failure.
    response = await cluster.client.get(f"/kernel/{session}/download", json={"files": ["deep"]})
    assert response.status_code == 400, response.text
    assert "levels" in response.json()["title"] + response.json().get("detail", "")
    status, _, _ = await download(cluster, session, ["adir"])
    assert status == 200
    assert stream_text(await execute(cluster.client, session, "print('alive')")) == "alive\n"


#: Swaps a real directory and a symlink to /etc under one name, as fast as it can, in a
#: thread of the interpreter (threads live on between runs; processes do not).
SWAPPER = r"""
import os, threading, time
stop = False
os.makedirs('real', exist_ok=True)
open('real/inner', 'w').write('inner')
os.symlink('/etc', 'link')
def swap():
    end = time.time() + 30
    while not stop and time.time() < end:
        os.rename('link', 'race.tmp'); os.rename('real', 'link'); os.rename('race.tmp', 'real')
threading.Thread(target=swap, daemon=True).start()
"""


async def test_listing_and_downloads_while_a_directory_and_a_symlink_swap(
    cluster: Cluster, session: str
) -> None:
    await execute(cluster.client, session, SWAPPER)
    statuses: set[int | str] = set()

    async def fetch(files: list[str]) -> None:
        try:
            status, body, _ = await download(cluster, session, files)
        except httpx.RemoteProtocolError:
            # Checked, then gone before its archive was made: the manager had sent
            # 200 already and can only break the body off.
            statuses.add("aborted")
            return
        statuses.add(status)
        assert b"root:x:0:0" not in body

    with trio.fail_after(120):
        for _ in range(30):
            for name in ("link", "real"):
                status, listing = await list_dir(cluster, session, name)
                statuses.add(status)
                if status == 200:
                    assert [f["filename"] for f in json.loads(listing["files"])] == ["inner"]
                await fetch([name])
                await fetch([f"{name}/inner"])
                await fetch([f"{name}/passwd"])
    await execute(cluster.client, session, "stop = True")
    assert statuses <= {200, 404, "aborted"}, statuses
    assert 200 in statuses
