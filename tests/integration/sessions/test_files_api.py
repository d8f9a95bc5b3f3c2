"""Session files over the API (spec 4.9-4.11): upload, list, download, and path safety.

The agent runs as root on the host and writes into the kernel's /home/work from the host
side; every refusal here is also checked on the host file system: nothing may appear
outside the kernel's work directory, and a refused upload writes nothing at all.
"""

from __future__ import annotations

import base64
import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

import pytest
import trio

from crucible.protocol.file_calls import UploadData
from crucible.sessions.files import RELAY_CHUNK_BYTES
from testlib.files import in_pieces, multipart, upload
from testlib.sessions import Cluster, execute, stream_text

MiB = 1024 * 1024


async def work_dir(cluster: Cluster, token: str) -> Path:
    """The kernel's /home/work as the host sees it."""
    session = await cluster.harness.server.components.sessions.get_live(
        cluster.harness.user.access_key, token
    )
    return cluster.agent.kernels[session.id].info.kernel_dir / "work"


def host_tree(root: Path) -> dict[str, bytes | None]:
    found: dict[str, bytes | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            rel = str(path.relative_to(root))
            found[rel] = path.read_bytes() if path.is_file() and not path.is_symlink() else None
    return found


def host_bytes(path: str) -> bytes | None:
    """A host file's content, None when there is none (sync: tests call it directly)."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        return None


def untar_parts(response_body: bytes, boundary: str) -> list[dict[str, bytes]]:
    """Parse multipart/mixed strictly (as a standard reader would) and open each tar."""
    delimiter = f"--{boundary}".encode()
    assert response_body.startswith(delimiter), "no preamble allowed"
    chunks = response_body.split(b"\r\n" + delimiter)
    parts = [chunks[0][len(delimiter) :], *chunks[1:]]
    assert parts[-1].startswith(b"--"), "closing delimiter"
    archives = []
    for raw in parts[:-1]:
        head, _, payload = raw.lstrip(b"\r\n").partition(b"\r\n\r\n")
        headers = head.decode().split("\r\n")
        assert all(line.startswith("Content-") for line in headers), headers
        length = next(int(h.split(":")[1]) for h in headers if h.startswith("Content-Length"))
        assert len(payload) == length
        with tarfile.open(fileobj=io.BytesIO(payload)) as tar:
            archives.append(
                {
                    m.name: (tar.extractfile(m).read() if m.isfile() else b"")  # type: ignore[union-attr]
                    for m in tar.getmembers()
                }
            )
    return archives


async def list_dir(
    cluster: Cluster, token: str, path: str | None
) -> tuple[int, dict[str, Any]]:
    response = await cluster.client.get(
        f"/kernel/{token}/files", json={"path": path} if path is not None else {}
    )
    return response.status_code, response.json()


async def download(cluster: Cluster, token: str, files: list[str]) -> tuple[int, bytes, str]:
    response = await cluster.client.get(f"/kernel/{token}/download", json={"files": files})
    return response.status_code, response.content, response.headers.get("content-type", "")


# -- the happy paths --------------------------------------------------------------------------


async def test_upload_list_download_round_trip(cluster: Cluster, session: str) -> None:
    binary = bytes(range(256)) * 64
    status = await upload(
        cluster,
        session,
        [("hello.txt", b"hello\n"), ("sub/deeper/b.h", b"#define B 1\n"), ("data.bin", binary)],
    )
    assert status == 204
    home = await work_dir(cluster, session)
    assert (home / "sub/deeper/b.h").read_bytes() == b"#define B 1\n"
    for rel in ("hello.txt", "sub", "sub/deeper", "sub/deeper/b.h", "data.bin"):
        st = (home / rel).stat()
        assert (st.st_uid, st.st_gid) == (1000, 1000), rel
    # The kernel sees them, as its own user.
    results = await execute(
        cluster.client,
        session,
        "print(open('sub/deeper/b.h').read(), end='')\nimport os\n"
        "print(os.stat('hello.txt').st_uid)",
    )
    assert stream_text(results) == "#define B 1\n1000\n"

    status, listing = await list_dir(cluster, session, "/home/work")
    assert status == 200
    assert listing["abspath"] == listing["folder_path"] == "/home/work"
    assert listing["errors"] == ""
    entries = {e["filename"]: e for e in json.loads(listing["files"])}
    assert {"hello.txt", "sub", "data.bin"} <= set(entries)
    assert entries["hello.txt"]["size"] == 6
    assert entries["hello.txt"]["mode"] == "-rw-r--r--"
    assert entries["sub"]["mode"].startswith("d")
    assert all(isinstance(entries["sub"][k], float) for k in ("mtime", "ctime", "atime"))
    status, listing = await list_dir(cluster, session, "sub")
    assert status == 200 and listing["abspath"] == "/home/work/sub"
    assert [e["filename"] for e in json.loads(listing["files"])] == ["deeper"]
    status, listing = await list_dir(cluster, session, None)
    assert status == 200 and listing["abspath"] == "/home/work"

    status, body, content_type = await download(
        cluster, session, ["hello.txt", "/home/work/data.bin", "sub"]
    )
    assert status == 200
    assert content_type.startswith("multipart/mixed; boundary=")
    boundary = content_type.split("boundary=")[1]
    first, second, third = untar_parts(body, boundary)
    assert first == {"hello.txt": b"hello\n"}
    assert second == {"data.bin": binary}
    assert third == {"sub": b"", "sub/deeper": b"", "sub/deeper/b.h": b"#define B 1\n"}


async def test_upload_overwrites_and_takes_filename_star(cluster: Cluster, session: str) -> None:
    assert await upload(cluster, session, [("a/x.txt", b"one")]) == 204
    assert await upload(cluster, session, [("a/x.txt", b"two, longer")], extended=True) == 204
    home = await work_dir(cluster, session)
    assert (home / "a/x.txt").read_bytes() == b"two, longer"
    # A name with spaces and non-ASCII letters survives both encodings.
    assert await upload(cluster, session, [("dir é/ä b.txt", b"u")], extended=True) == 204
    assert (home / "dir é/ä b.txt").read_bytes() == b"u"
    # An absolute path under /home/work is that path.
    assert await upload(cluster, session, [("/home/work/abs.txt", b"abs")]) == 204
    assert (home / "abs.txt").read_bytes() == b"abs"


async def test_largest_upload_fits(cluster: Cluster, session: str) -> None:
    files = [(f"f{i:02}.bin", os.urandom(MiB - 1)) for i in range(20)]
    assert await upload(cluster, session, files) == 204
    home = await work_dir(cluster, session)
    assert all((home / name).read_bytes() == data for name, data in files)
    status, body, content_type = await download(cluster, session, ["f00.bin"])
    assert status == 200
    assert untar_parts(body, content_type.split("boundary=")[1]) == [{"f00.bin": files[0][1]}]


async def test_largest_upload_read_as_fast_as_flow_control_allows(
    cluster: Cluster, session: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """20 files of 1 MiB - 1 streamed in pieces larger than the body's high-water mark,
    so that the parser gets the largest reads the manager makes. Folding this route onto
    the folder upload parser once hung right here: that parser handed on each read
    whole, the relay sent it to the agent as one call (1.4 MiB of base64) and the link
    of that time blocked on it for good. No relay call may grow with the reads."""
    registry = cluster.harness.server.components.sessions
    relayed: list[int] = []
    real_file_call = registry.file_call

    async def file_call(session: Any, call: Any, **kw: Any) -> Any:
        if isinstance(call, UploadData):
            relayed.append(len(base64.b64decode(call.data)))
        return await real_file_call(session, call, **kw)

    monkeypatch.setattr(registry, "file_call", file_call)
    files = [(f"g{i:02}.bin", os.urandom(MiB - 1)) for i in range(20)]
    body, content_type = multipart(files)
    cuts = list(range(3 * MiB // 2, len(body), 3 * MiB // 2))
    with trio.fail_after(120):
        response = await cluster.client.post(
            f"/kernel/{session}/upload",
            content=in_pieces(body, cuts, pause=0.05),
            content_type=content_type,
        )
    assert response.status_code == 204, response.text
    home = await work_dir(cluster, session)
    assert all((home / name).read_bytes() == data for name, data in files)
    assert sum(relayed) == 20 * (MiB - 1)
    assert max(relayed) <= RELAY_CHUNK_BYTES


async def test_a_body_read_in_two_inside_its_closing_delimiter(
    cluster: Cluster, session: str
) -> None:
    """The read boundary right between the closing ``--`` once made the delimiter's CR
    the last byte of the last file (werkzeug's decoder, pallets/werkzeug#3285)."""
    body, content_type = multipart([("a.txt", b"first"), ("b.txt", b"last")])
    assert body.endswith(b"--\r\n")
    with trio.fail_after(30):
        response = await cluster.client.post(
            f"/kernel/{session}/upload",
            content=in_pieces(body, [len(body) - 3]),
            content_type=content_type,
        )
    assert response.status_code == 204, response.text
    home = await work_dir(cluster, session)
    assert (home / "a.txt").read_bytes() == b"first"
    assert (home / "b.txt").read_bytes() == b"last"


# -- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "../../etc/passwd",
        "/etc/passwd",
        "a/../../x",
        "/home/workx/y",
        "bad\x00name",
        "bad\nname",
        "x" * 256,
        "/home/work",
    ],
)
async def test_bad_upload_paths_are_400(cluster: Cluster, session: str, name: str) -> None:
    home = await work_dir(cluster, session)
    before = host_tree(home)
    passwd = host_bytes("/etc/passwd")
    status = await upload(cluster, session, [("good.txt", b"fine"), (name, b"evil")])
    assert status == 400
    # Nothing was written: not the good file before the bad one, nothing outside.
    assert host_tree(home) == before
    assert host_bytes("/etc/passwd") == passwd
    assert host_bytes(str(home.parent / "x")) is None


async def test_limits_are_400_and_write_nothing(cluster: Cluster, session: str) -> None:
    home = await work_dir(cluster, session)
    before = host_tree(home)
    many = [(f"n{i}.txt", b"x") for i in range(21)]
    assert await upload(cluster, session, many) == 400
    assert await upload(cluster, session, [("ok.txt", b"x"), ("big.bin", b"\0" * 2 * MiB)]) == 400
    assert await upload(cluster, session, [("edge.bin", b"\0" * MiB)]) == 400
    assert await upload(cluster, session, []) == 400
    assert host_tree(home) == before
    # Not multipart at all.
    response = await cluster.client.post(f"/kernel/{session}/upload", json={"files": []})
    assert response.status_code == 400


async def test_planted_symlinks_are_never_followed(cluster: Cluster, session: str) -> None:
    home = await work_dir(cluster, session)
    await execute(
        cluster.client,
        session,
        "import os\nos.symlink('/', 'root')\nos.symlink('/etc/passwd', 'pw')\n"
        "os.mkdir('real')\nos.symlink('/etc', 'real/etc')\nos.mkfifo('fifo')",
    )
    passwd = host_bytes("/etc/passwd")
    before = host_tree(home)
    for target in ("root/tmp/pwned", "pw", "real/etc/pwned", "root", "fifo", "real/etc"):
        assert await upload(cluster, session, [(target, b"pwned")]) == 400, target
    assert host_bytes("/etc/passwd") == passwd
    assert host_bytes("/tmp/pwned") is None and host_bytes("/etc/pwned") is None
    assert host_tree(home) == before
    # Listing and downloading through a link: 404, never the link's target.
    for path in ("root", "root/etc", "real/etc", "/etc", "../.."):
        status, problem = await list_dir(cluster, session, path)
        assert status == 404, (path, problem)
        assert problem["type"].endswith("/generic-not-found")
    for files in (["pw"], ["root/etc/passwd"], ["real/etc/passwd"], ["/etc/passwd"], ["fifo"]):
        status, body, _ = await download(cluster, session, files)
        assert status == 404, files
        assert b"root:" not in body
    # A link inside a downloaded tree is left out; its target is not read.
    status, body, content_type = await download(cluster, session, ["real"])
    assert status == 200
    assert untar_parts(body, content_type.split("boundary=")[1]) == [{"real": b""}]
    assert b"root:x:0:0" not in body


async def test_download_refusals(cluster: Cluster, session: str) -> None:
    assert await upload(cluster, session, [("a.txt", b"a")]) == 204
    status, _, _ = await download(cluster, session, ["a.txt"] * 6)
    assert status == 400
    status, _, _ = await download(cluster, session, [])
    assert status == 400
    status, _, _ = await download(cluster, session, ["a.txt", "missing.txt"])
    assert status == 404
    response = await cluster.client.get(f"/kernel/{session}/download", json={})
    assert response.status_code == 400
    status, _ = await list_dir(cluster, session, "a.txt")
    assert status == 404
    status, _ = await list_dir(cluster, session, "nope")
    assert status == 404


async def test_unknown_session_is_404(cluster: Cluster) -> None:
    body, content_type = multipart([("a.txt", b"a")])
    response = await cluster.client.post(
        "/kernel/nosuchsession/upload", content=body, content_type=content_type
    )
    assert response.status_code == 404
    assert response.json()["type"].endswith("/kernel-not-found")


async def test_a_racing_symlink_swap_never_redirects_writes(
    cluster: Cluster, session: str, tmp_path: Path
) -> None:
    """User code swaps a directory and a symlink to a host folder as fast as it can while
    uploads go into that directory: the agent must never write through the link."""
    outside = tmp_path / "outside"
    outside.mkdir()
    swapper = (
        "import os, threading, time\n"
        "stop = False\n"
        "def swap():\n"
        "    os.makedirs('real', exist_ok=True)\n"
        f"    os.symlink({str(outside)!r}, 'link')\n"
        "    end = time.time() + 20\n"
        "    while not stop and time.time() < end:\n"
        "        os.rename('link', 'race.tmp'); os.rename('real', 'link')\n"
        "        os.rename('race.tmp', 'real')\n"
        "        os.rename('link', 'race.tmp'); os.rename('real', 'link')\n"
        "        os.rename('race.tmp', 'real')\n"
        "threading.Thread(target=swap, daemon=True).start()\n"
    )
    await execute(cluster.client, session, swapper)
    statuses = set()
    for _ in range(40):
        statuses.add(await upload(cluster, session, [("link/x.txt", b"x"), ("real/y.txt", b"y")]))
    await execute(cluster.client, session, "stop = True")
    assert statuses <= {204, 400}
    assert list(outside.iterdir()) == []
