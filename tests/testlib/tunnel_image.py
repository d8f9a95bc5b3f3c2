"""A kernel image that declares service ports, for the tunnel tests: the Python image
with an ``ai.backend.service-ports`` label (and aliases of its own, so no ``lang`` of
the real images resolves to it). Made with ``docker commit --change``: a label only,
no layer, no network."""

from __future__ import annotations

import subprocess

#: Its reference, which is also the ``lang`` that names it.
TUNNEL_IMAGE = "crucible-test/tunnel-python:1"
SERVICE_PORTS = "web:http:8080,echo:tcp:9000,flood:tcp:9001,idle:tcp:9002,shell:pty:9003"
BASE_PREFIX = "crucible/kernel-python:"


def _docker(*args: str) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120)
    if done.returncode:
        raise RuntimeError(f"docker {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def ensure_tunnel_image() -> str:
    """The image's reference, built from the Python kernel image if it is missing or
    declares other ports."""
    try:
        label = _docker("image", "inspect", "-f",
                        '{{index .Config.Labels "ai.backend.service-ports"}}', TUNNEL_IMAGE)
    except RuntimeError:
        label = ""
    if label == SERVICE_PORTS:
        return TUNNEL_IMAGE
    refs = _docker("images", "--format", "{{.Repository}}:{{.Tag}}").splitlines()
    base = sorted(ref for ref in refs if ref.startswith(BASE_PREFIX))[-1]
    container = _docker("create", "--label", "crucible.test=tunnel-image", base, "true")
    try:
        _docker(
            "commit",
            "--change", f"LABEL ai.backend.service-ports={SERVICE_PORTS}",
            "--change", f"LABEL crucible.aliases={TUNNEL_IMAGE}",
            container, TUNNEL_IMAGE,
        )
    finally:
        _docker("rm", "-f", container)
    return TUNNEL_IMAGE


#: Query-mode code that starts the test services in the session's persistent
#: interpreter (its threads outlive the run): an HTTP server over /home/work on 8080,
#: a TCP echo on 9000, and on 9001 a server that sends without end.
START_SERVICES = r'''
import socket, socketserver, threading, http.server, functools, os

class _Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while data := self.request.recv(65536):
            self.request.sendall(data)

class _Flood(socketserver.BaseRequestHandler):
    def handle(self):
        chunk = b"y" * 65536
        try:
            while True:
                self.request.sendall(chunk)
        except OSError:
            pass

class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

_web = functools.partial(http.server.SimpleHTTPRequestHandler, directory="/home/work")
for port, handler in ((8080, _web), (9000, _Echo), (9001, _Flood)):
    server = _Server(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
print("services up")
'''
