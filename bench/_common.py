"""Pieces every benchmark script shares: a throw-away `crucible up`, keys, signing.

Standard library only, like the scripts that import it (they run from this folder, so
Python finds this module next to them).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import math
import os
import queue
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, urlsplit

REPO_ROOT = Path(__file__).resolve().parents[1]
API_VERSION = "v4.20181215"
EMPTY_BODY_SHA256 = hashlib.sha256(b"").hexdigest()
#: The keypair's and the public per-IP limits: far beyond anything one run can send.
#: (rate_limit is an int4 column, hence not larger.)
HUGE_RATE_LIMIT = 1_000_000_000
STARTUP_TIMEOUT = 120.0
STOP_TIMEOUT = 60.0  # `crucible up` ends every session before it exits
CLI_TIMEOUT = 60.0
#: The script's name, for messages.
PROG = Path(sys.argv[0]).name


@dataclass(frozen=True)
class Server:
    process: subprocess.Popen[str]
    endpoint: str
    host: str  # the endpoint's authority, as a client signs it
    port: int


def signed_headers(
    method: str,
    rel_url: str,
    host: str,
    access_key: str,
    secret_key: str,
    now: datetime,
    content_type: str = "text/plain",  # what the SDK sends (and signs) without a body
) -> dict[str, str]:
    """The headers the official client sends for a request at time `now`."""
    date = now.isoformat()
    string_to_sign = "\n".join(
        [
            method.upper(),
            rel_url,
            date,
            f"host:{host}",
            f"content-type:{content_type}",
            f"x-backendai-version:{API_VERSION}",
            EMPTY_BODY_SHA256,
        ]
    )
    day_key = hmac.new(secret_key.encode(), now.strftime("%Y%m%d").encode(), "sha256").digest()
    signing_key = hmac.new(day_key, host.encode(), "sha256").digest()
    signature = hmac.new(signing_key, string_to_sign.encode(), "sha256").hexdigest()
    return {
        "Date": date,
        "Content-Type": content_type,
        "X-BackendAI-Version": API_VERSION,
        "Authorization": f"BackendAI signMethod=HMAC-SHA256, credential={access_key}:{signature}",
    }


def find_crucible(explicit: str | None) -> str:
    candidates = [explicit] if explicit else []
    candidates += [
        str(Path(sys.executable).with_name("crucible")),
        str(REPO_ROOT / ".venv" / "bin" / "crucible"),
    ]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("crucible")
    if found is None:
        sys.exit(f"{PROG}: no `crucible` command; run scripts/bootstrap first")
    return found


def _pump(stream: IO[str], sink: queue.Queue[str | None]) -> None:
    # Pipe reads have no timeout: a thread reads, the main thread waits on the queue.
    for line in stream:
        sink.put(line)
    sink.put(None)


def _tail(path: Path, lines: int = 30) -> str:
    # The log lives in the temporary directory that is about to vanish: show it now.
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextmanager
def running_server(crucible: str, config: Path, state_dir: Path, log: Path) -> Iterator[Server]:
    argv = [crucible, "up", "--config", str(config), "--bind", "127.0.0.1:0"]
    argv += ["--state-dir", str(state_dir)]
    with log.open("wb") as log_file:
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=log_file, stdin=subprocess.DEVNULL, text=True
        )
    assert proc.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
    try:
        endpoint = ""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not endpoint:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise SystemExit(f"{PROG}: crucible up did not start:\n{_tail(log)}") from None
            if line is None:
                raise SystemExit(f"{PROG}: crucible up exited early:\n{_tail(log)}")
            if line.startswith("BACKEND_ENDPOINT="):
                endpoint = line.strip().partition("=")[2]
        parts = urlsplit(endpoint)
        assert parts.hostname is not None and parts.port is not None, endpoint
        yield Server(proc, endpoint, parts.netloc, parts.port)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # graceful: it also stops its PostgreSQL
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT)


def create_keypair(crucible: str, config: Path, state_dir: Path) -> tuple[str, str]:
    # Same --config and --state-dir as the live server: the CLI attaches to its embedded
    # PostgreSQL instead of starting another one.
    done = subprocess.run(
        [
            crucible,
            "keypair",
            "create",
            "--config",
            str(config),
            "--state-dir",
            str(state_dir),
            "bench@localhost",
            "--json",
            "--rate-limit",
            str(HUGE_RATE_LIMIT),
        ],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{PROG}: keypair create failed:\n{done.stderr}")
    created: dict[str, Any] = json.loads(done.stdout)
    return created["access_key"], created["secret_key"]


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending sequence."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


class Client:
    """One keep-alive connection signing every request as the official client does."""

    def __init__(self, server: Server, keys: tuple[str, str], timeout: float = 120.0) -> None:
        self.server = server
        self.keys = keys
        self.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        payload = json.dumps(body).encode() if body is not None else b""
        content_type = "application/json" if body is not None else "text/plain"
        headers = signed_headers(
            method, path, self.server.host, *self.keys, datetime.now(UTC), content_type
        )
        self.conn.request(method, path, body=payload, headers=headers)
        response = self.conn.getresponse()
        data = response.read()
        return response.status, json.loads(data) if data else None

    def request_raw(
        self, method: str, path: str, body: bytes, content_type: str
    ) -> tuple[int, dict[str, str], bytes]:
        """A request with a ready-made body (e.g. multipart); signed, as the SDK signs,
        with the media type alone (spec 2.3: the boundary is not signed). Header names of
        the answer are lower-cased."""
        headers = signed_headers(
            method,
            path,
            self.server.host,
            *self.keys,
            datetime.now(UTC),
            content_type.split(";", 1)[0].strip(),
        )
        headers["Content-Type"] = content_type
        self.conn.request(method, path, body=body, headers=headers)
        response = self.conn.getresponse()
        headers = {name.lower(): value for name, value in response.getheaders()}
        return response.status, headers, response.read()

    def close(self) -> None:
        self.conn.close()


def multipart_upload(files: Sequence[tuple[str, bytes]]) -> tuple[bytes, str]:
    """A session upload body as the 18.12 client sends it (spec 4.9): parts named ``src``,
    file names percent-encoded with no safe characters."""
    boundary = "bench" + os.urandom(8).hex()
    chunks = []
    for name, data in files:
        chunks += [
            f"--{boundary}\r\n".encode(),
            b'Content-Disposition: form-data; name="src"; filename="'
            + quote(name, safe="").encode()
            + b'"\r\n',
            b"Content-Type: application/octet-stream\r\n\r\n",
            data,
            b"\r\n",
        ]
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def run_to_end(client: Client, token: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """POST an execute request and follow ``continue`` until the run finishes (bounded)."""
    results: list[dict[str, Any]] = []
    for _ in range(1000):
        status, answer = client.request("POST", f"/kernel/{token}", body)
        if status != 200:
            raise RuntimeError(f"execute answered {status}: {answer}")
        result = answer["result"]
        results.append(result)
        if result["status"] in ("finished", "exec-timeout"):
            return results
        body = {"mode": "continue", "code": "", "runId": result["runId"]}
    raise RuntimeError("the run never finished")


# -- shared by the scripts that start many sessions (density, vs_jupyter) ------------------

DOCKER_TIMEOUT = 120.0


def write_config(path: Path, tables: Mapping[str, Mapping[str, str | int | float]]) -> None:
    """A generated crucible config: ``{"keypairs": {"concurrency_limit": 30}, ...}``.
    Values are TOML scalars (JSON's string and number syntax is TOML's for these)."""
    lines = [f"# generated by bench/{PROG}"]
    for table, values in tables.items():
        lines.append(f"[{table}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    path.write_text("\n".join(lines) + "\n")


def bench_agent_id() -> str:
    """An agent id of this run alone: its containers carry it as a label, so the run can
    find (and, after a failure, remove) exactly the containers it made on a shared engine."""
    return f"bench-{PROG}-{os.getpid()}-{secrets.token_hex(3)}"


def docker_cli(*args: str, timeout: float = DOCKER_TIMEOUT) -> str:
    done = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"docker {args[0]} failed: {done.stderr.strip()}")
    return done.stdout


def kernel_image(lang: str) -> str:
    """The newest local ``crucible/kernel-LANG`` image, or exit saying how to build one."""
    refs = docker_cli("images", "--format", "{{.Repository}}:{{.Tag}}", f"crucible/kernel-{lang}")
    found = sorted(ref for ref in refs.split() if not ref.endswith(":<none>"))
    if not found:
        sys.exit(f"{PROG}: no crucible/kernel-{lang} image (crucible images build {lang})")
    return found[-1]


def agent_containers(agent_id: str) -> list[str]:
    """Full ids of every container (running or not) the agent `agent_id` made."""
    out = docker_cli(
        "ps", "--all", "--quiet", "--no-trunc", "--filter", f"label=crucible.agent-id={agent_id}"
    )
    return out.split()


def remove_agent_containers(agent_id: str) -> int:
    """Force-remove what the agent `agent_id` left behind; how many there were."""
    leftovers = agent_containers(agent_id)
    for start in range(0, len(leftovers), 50):
        docker_cli("rm", "--force", "--volumes", *leftovers[start : start + 50])
    return len(leftovers)


def unmount_under(root: Path) -> int:
    """Detach every mount below `root` (deepest first) and say how many there were.

    A `crucible up` that was killed, or that stopped with creates still in flight, can
    leave a kernel's scratch tmpfs mounted in its state directory; the temporary folder
    could not be removed then."""
    prefix = str(root.resolve()) + "/"
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point.startswith(prefix):
            points.append(point)
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "--lazy", point], timeout=CLI_TIMEOUT, check=False)
    return len(points)


def sweep(agent_id: str, workdir: Path) -> tuple[int, int]:
    """After `crucible up` has stopped: remove the containers its agent left and the
    mounts left in `workdir`; (containers, mounts). Either is a leak, so it is shown
    with the end of the server's log (``crucible.log`` in `workdir`)."""
    containers = remove_agent_containers(agent_id)
    mounts = unmount_under(workdir)
    if containers or mounts:
        print(
            f"{PROG}: crucible up left {containers} container(s) and {mounts} mount(s) "
            f"behind (removed); its log ends:\n{_tail(workdir / 'crucible.log')}",
            file=sys.stderr,
        )
    return containers, mounts


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def interrupt_on_sigterm() -> None:
    """SIGTERM ends the run the way Ctrl-C does (KeyboardInterrupt), so every cleanup of
    the script runs."""
    signal.signal(signal.SIGTERM, _raise_interrupt)


def create_session(
    client: Client, token: str, cores: float | None = None, memory_mib: float | None = None
) -> None:
    """``POST /kernel/create`` for a Python session; raises RuntimeError unless 201."""
    config: dict[str, str] = {}
    if cores is not None:
        config["instanceCores"] = str(cores)
    if memory_mib is not None:
        config["instanceMemory"] = str(memory_mib / 1024)  # the API takes GiB
    status, body = client.request(
        "POST", "/kernel/create", {"lang": "python", "clientSessionToken": token, "config": config}
    )
    if status != 201:
        raise RuntimeError(f"create answered {status}: {body}")


def run_code(client: Client, token: str, code: str) -> str:
    """Run `code` to its end on a session; its stdout (RuntimeError if it wrote anything
    else or did not finish cleanly)."""
    results = run_to_end(client, token, {"mode": "query", "code": code, "runId": None})
    stdout = []
    for result in results:
        for kind, text in result.get("console") or []:
            if kind != "stdout":
                raise RuntimeError(f"the run wrote {kind}: {text!r}")
            stdout.append(text)
    if results[-1]["status"] != "finished":
        raise RuntimeError(f"the run ended {results[-1]['status']}")
    return "".join(stdout)


def ms(seconds: float) -> float:
    return seconds * 1000
