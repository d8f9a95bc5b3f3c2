"""Hostile code against the kernel container sandbox, on the real Docker engine.

Each test starts python3 in a container hardened exactly as kernel containers are
(`crucible.agent.sandbox` via the driver) and checks that the attack is contained, from
inside (what the code saw) and from the host (cgroup counters, the host still works).
"""

from __future__ import annotations

import json
import os
import platform
import signal
import stat
from pathlib import Path

import pytest
import trio
from kernel_harness import Kernels, MiB

from crucible.agent import sandbox
from crucible.agent.docker.driver import DockerDriver

# -- the profile as data (no engine needed) -------------------------------------------------


def test_seccomp_profile_denies_the_escape_syscalls() -> None:
    profile = json.loads(sandbox.seccomp_profile_json())
    assert profile["defaultAction"] == "SCMP_ACT_ALLOW"
    assert {a["architecture"] for a in profile["archMap"]} == {
        "SCMP_ARCH_X86_64",
        "SCMP_ARCH_AARCH64",
    }
    denied = {
        name
        for rule in profile["syscalls"]
        if rule["action"] == "SCMP_ACT_ERRNO" and "args" not in rule
        for name in rule["names"]
    }
    required = {
        "ptrace", "process_vm_readv", "process_vm_writev", "mount", "umount2", "unshare",
        "setns", "kexec_load", "kexec_file_load", "init_module", "finit_module",
        "delete_module", "bpf", "perf_event_open", "keyctl", "add_key", "request_key",
        "userfaultfd", "reboot", "swapon", "swapoff", "pivot_root", "open_by_handle_at",
        "acct", "quotactl", "lookup_dcookie", "io_uring_setup", "io_uring_enter",
        "io_uring_register",
    }  # fmt: skip
    assert required <= denied
    clone_rules = [r for r in profile["syscalls"] if r["names"] == ["clone"]]
    assert len(clone_rules) == 7  # one per CLONE_NEW* flag


def test_hardening_defaults() -> None:
    h = sandbox.DEFAULT_HARDENING
    assert h.network_mode == "none"
    assert h.cap_drop == ("ALL",)
    assert not h.privileged
    assert not h.init  # the runner is pid 1
    assert h.ipc_mode == "private"
    assert h.swap_bytes == 0
    assert "no-new-privileges:true" in h.security_opt()
    assert sandbox.tmp_mount(8 * MiB).options() == ("rw,exec,nosuid,nodev,size=8388608,mode=1777")


# -- the scratch directory (root, no engine needed) -----------------------------------------


def _describe(path: Path) -> tuple[bool, int, int, int, int]:
    """(is a mount point, uid, gid, mode, filesystem size) of *path*."""
    st = os.stat(path)
    vfs = os.statvfs(path)
    return (
        os.path.ismount(path),
        st.st_uid,
        st.st_gid,
        stat.S_IMODE(st.st_mode),
        vfs.f_blocks * vfs.f_frsize,
    )


async def test_scratch_is_a_tmpfs_owned_by_the_kernel_user(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting needs root")
    root = tmp_path / "k1"
    scratch = await sandbox.prepare_scratch(root, size_bytes=4 * MiB)
    try:
        assert _describe(scratch.work) == (True, 1000, 1000, 0o755, 4 * MiB)
        # The ipc directory is the agent's: a plain root-owned directory (the kernel gets
        # it read-only and can only connect to the agent's socket in it).
        assert _describe(scratch.ipc)[:4] == (False, 0, 0, 0o755)
        assert _describe(scratch.root)[:4] == (False, 0, 0, 0o755)
        (scratch.work / "kept.txt").write_text("state")
        # Preparing again (agent or session restart) keeps the contents.
        again = await sandbox.prepare_scratch(root, size_bytes=4 * MiB)
        assert (again.work / "kept.txt").read_text() == "state"
        assert await sandbox.scratch_usage_bytes(scratch) > 0
    finally:
        await sandbox.release_scratch(root)
    assert not root.exists()
    # Idempotent: releasing again, or a directory that never existed, is fine.
    await sandbox.release_scratch(root)
    await sandbox.release_scratch(tmp_path / "never-prepared")
    with pytest.raises(ValueError):
        await sandbox.release_scratch(Path("/"))


# -- hostile code ---------------------------------------------------------------------------

PRIVILEGES_PROBE = r"""
import errno, os, time
status = {}
for line in open("/proc/self/status"):
    key, _, value = line.partition(":")
    status[key] = value.split()
for key in ("Uid", "Gid", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb",
            "NoNewPrivs", "Seccomp"):
    print(f"{key}={','.join(status[key])}")
try:
    os.setuid(0)
    print("setuid=ok")
except OSError as exc:
    print(f"setuid={errno.errorcode[exc.errno]}")
print("pid1=" + open("/proc/1/cmdline").read().split("\0")[0])
for line in open("/proc/self/limits"):
    if line.startswith(("Max open files", "Max core file size")):
        name = "nofile" if "open files" in line else "core"
        print(f"{name}=" + ",".join(line[26:].split()[:2]))
"""


async def test_runs_as_uid_1000_without_capabilities(kernels: Kernels) -> None:
    out = await kernels.run(PRIVILEGES_PROBE)
    v = out.values()
    assert out.state.exit_code == 0, out.logs
    assert v["Uid"] == "1000,1000,1000,1000"
    assert v["Gid"] == "1000,1000,1000,1000"
    for caps in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(v[caps], 16) == 0, caps
    assert v["NoNewPrivs"] == "1"
    assert v["Seccomp"] == "2"  # filter mode
    assert v["setuid"] == "EPERM"
    # No docker-init: the container's first process is pid 1 (for kernels, the runner,
    # which reaps orphans itself: tests/runner/test_run_cleanup.py).
    assert v["pid1"] == "python3"
    assert v["nofile"] == "4096,4096"
    assert v["core"] == "0,0"


def _host_pids_cgroup(container_id: str) -> Path | None:
    """The container's pids cgroup directory on the host (cgroup v1 or v2, cgroupfs or
    systemd driver), or None if this host lays cgroups out some other way."""
    for candidate in (
        Path("/sys/fs/cgroup/pids/docker") / container_id,
        Path("/sys/fs/cgroup/pids/system.slice") / f"docker-{container_id}.scope",
        Path("/sys/fs/cgroup/docker") / container_id,
        Path("/sys/fs/cgroup/system.slice") / f"docker-{container_id}.scope",
    ):
        if (candidate / "pids.current").exists():
            return candidate
    return None


def _host_process_count() -> int:
    return sum(1 for name in os.listdir("/proc") if name.isdigit())


FORK_BOMBS = {
    # The classic: dies on the first EAGAIN in the main process, unless the limit holds.
    "plain": "import os\nwhile True: os.fork()",
    # One that survives EAGAIN and keeps every slot it can get.
    "persistent": (
        "import os, time\n"
        "while True:\n"
        "    try:\n"
        "        os.fork()\n"
        "    except OSError:\n"
        "        time.sleep(0.01)\n"
    ),
}


@pytest.mark.parametrize("bomb", sorted(FORK_BOMBS))
async def test_fork_bomb_is_held_by_the_pids_limit(
    kernels: Kernels, driver: DockerDriver, bomb: str
) -> None:
    limit = 48
    before = _host_process_count()
    container_id = await kernels.start(FORK_BOMBS[bomb], pids_limit=limit, cpu_cores=0.5)
    cgroup = _host_pids_cgroup(container_id)
    peak = 0
    pids_max = None
    with trio.move_on_after(3.0):
        while True:
            if cgroup is not None:
                try:
                    pids_max = pids_max or (cgroup / "pids.max").read_text().strip()
                    peak = max(peak, int((cgroup / "pids.current").read_text()))
                except OSError:
                    break  # the container ended and its cgroup went away
            # The host keeps working meanwhile: it can still start a process quickly.
            with trio.fail_after(5):
                await trio.run_process(["true"])
            # Generous slack: other work on the host may start processes meanwhile; an
            # uncontained bomb would be thousands above this within the 3 seconds.
            assert _host_process_count() <= before + limit + 256
            await trio.sleep(0.1)
    if cgroup is not None:
        assert 0 < peak <= limit
        assert pids_max == str(limit)
    print(f"fork bomb {bomb}: peak {peak} pids of {pids_max}")
    # And it can be stopped: SIGKILL to the container ends every process in it.
    await driver.kill(container_id)
    with trio.fail_after(15):
        await driver.wait_for_exit(container_id)
    state = await driver.inspect(container_id)
    assert not state.running
    # No process of it is left anywhere: its cgroup goes away (asynchronously).
    with trio.fail_after(5):
        while _host_pids_cgroup(container_id) is not None:
            await trio.sleep(0.05)


MEMORY_BOMB = r"""
chunks = []
total = 0
while True:
    chunks.append(b"\x01" * (8 << 20))  # filled, so every page is really touched
    total += 8
    print(f"allocated_mib={total}", flush=True)
"""


async def test_memory_bomb_is_oom_killed(kernels: Kernels) -> None:
    out = await kernels.run(MEMORY_BOMB, memory_bytes=64 * MiB, seconds=30)
    assert out.state.oom_killed, out.state
    assert out.state.exit_code == 137
    assert int(out.values()["allocated_mib"]) <= 64


NETWORK_PROBE = r"""
import errno, socket
def attempt(host, port):
    try:
        socket.create_connection((host, port), timeout=2).close()
        return "connected"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, type(exc).__name__) if exc.errno else "timeout"
print("public=" + attempt("1.1.1.1", 53))
print("loopback=" + attempt("127.0.0.1", 53))
lines = open("/proc/net/dev").read().splitlines()[2:]
print("interfaces=" + ",".join(sorted(line.split(":")[0].strip() for line in lines)))
"""


async def test_no_network(kernels: Kernels) -> None:
    out = await kernels.run(NETWORK_PROBE)
    v = out.values()
    assert out.state.exit_code == 0, out.logs
    assert v["public"] == "ENETUNREACH"
    assert v["loopback"] == "ECONNREFUSED"  # loopback exists, nothing listens
    assert v["interfaces"] == "lo"


SYSCALL_PROBE = r"""
import ctypes, errno, os, platform, subprocess, threading
libc = ctypes.CDLL(None, use_errno=True)
NR = {
    "x86_64": dict(clone=56, unshare=272, setns=308, io_uring_setup=425, keyctl=250,
                   bpf=321, perf_event_open=298, userfaultfd=323, process_vm_readv=310,
                   mount=165, kexec_load=246, init_module=175, open_by_handle_at=304,
                   pivot_root=155),
    "aarch64": dict(clone=220, unshare=97, setns=268, io_uring_setup=425, keyctl=219,
                    bpf=280, perf_event_open=241, userfaultfd=282, process_vm_readv=270,
                    mount=40, kexec_load=104, init_module=105, open_by_handle_at=265,
                    pivot_root=41),
}[platform.machine()]
def outcome(rc):
    return "ok" if rc != -1 else errno.errorcode.get(ctypes.get_errno(), "?")
def call(name, *args):
    ctypes.set_errno(0)
    rc = libc.syscall(ctypes.c_long(NR[name]), *[ctypes.c_long(a) for a in args])
    if name == "clone" and rc == 0:
        os._exit(0)  # the child, had the namespace clone been allowed
    if name == "clone" and rc > 0:
        os.waitpid(rc, 0)
    return outcome(rc)
ctypes.set_errno(0)
print("ptrace=" + outcome(libc.ptrace(0, 0, 0, 0)))  # PTRACE_TRACEME
CLONE_NEWUSER, SIGCHLD = 0x10000000, 17
print("unshare_user=" + call("unshare", CLONE_NEWUSER))
print("clone_newuser=" + call("clone", CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0))
print("setns=" + call("setns", 0, 0))
print("io_uring_setup=" + call("io_uring_setup", 1, 0))
print("keyctl=" + call("keyctl", 0, -3, 0))  # KEYCTL_GET_KEYRING_ID, session keyring
print("bpf=" + call("bpf", 5, 0, 0))
print("perf_event_open=" + call("perf_event_open", 0, 0, -1, -1, 0))
print("userfaultfd=" + call("userfaultfd", 0))
print("process_vm_readv=" + call("process_vm_readv", 1, 0, 0, 0, 0, 0))
print("mount=" + call("mount", 0, 0, 0, 0, 0))
print("kexec_load=" + call("kexec_load", 0, 0, 0, 0))
print("init_module=" + call("init_module", 0, 0, 0))
print("open_by_handle_at=" + call("open_by_handle_at", 0, 0, 0))
print("pivot_root=" + call("pivot_root", 0, 0))
# What ordinary programs need still works: fork, threads (glibc tries clone3 first and
# must fall back to clone), subprocesses.
pid = os.fork()
if pid == 0:
    os._exit(7)
print("fork=" + str(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])))
box = []
t = threading.Thread(target=lambda: box.append("ran"))
t.start(); t.join()
print("thread=" + (box[0] if box else "no"))
print("subprocess=" + str(subprocess.run(["/bin/true"]).returncode))
"""

DENIED_BY_SECCOMP = (
    "ptrace",
    "unshare_user",
    "clone_newuser",
    "setns",
    "io_uring_setup",
    "keyctl",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "process_vm_readv",
    "mount",
    "kexec_load",
    "init_module",
    "open_by_handle_at",
    "pivot_root",
)


async def test_ptrace_and_escape_syscalls_fail_with_eperm(kernels: Kernels) -> None:
    out = await kernels.run(SYSCALL_PROBE)
    v = out.values()
    assert out.state.exit_code == 0, out.logs
    for name in DENIED_BY_SECCOMP:
        assert v[name] == "EPERM", (name, v[name])
    assert v["fork"] == "7"
    assert v["thread"] == "ran"
    assert v["subprocess"] == "0"


READ_ONLY_PROBE = r"""
import errno
for key, path in (("root", "/probe"), ("usr", "/usr/probe"), ("etc", "/etc/probe"),
                  ("var_tmp", "/var/tmp/probe"), ("work", "/home/work/probe"),
                  ("tmp", "/tmp/probe")):
    try:
        open(path, "w").close()
        print(f"{key}=written")
    except OSError as exc:
        print(f"{key}={errno.errorcode[exc.errno]}")
"""


async def test_root_filesystem_is_read_only(kernels: Kernels) -> None:
    out = await kernels.run(READ_ONLY_PROBE)
    v = out.values()
    assert out.state.exit_code == 0, out.logs
    # /var/tmp is world-writable in the image: EROFS there is the read-only mount
    # speaking, not file permissions.
    for key in ("root", "usr", "etc", "var_tmp"):
        assert v[key] == "EROFS", (key, v[key])
    assert v["work"] == "written"
    assert v["tmp"] == "written"


FILL_PROBE = r"""
import errno, os, shutil, subprocess, sys
def fill(path, cap):
    written, error = 0, "none"
    chunk = b"x" * (1 << 20)
    try:
        with open(path, "wb", buffering=0) as f:
            while written < cap:
                written += f.write(chunk)
    except OSError as exc:
        error = errno.errorcode[exc.errno]
    return written, error
for key, path in (("tmp", "/tmp/fill"), ("work", "/home/work/fill"),
                  ("ipc", "/opt/crucible/ipc/fill")):
    written, error = fill(path, 256 << 20)
    print(f"{key}_written={written}")
    print(f"{key}_error={error}")
# /tmp allows exec (see sandbox.tmp_mount): a tool that runs a file it put there works.
os.unlink("/tmp/fill")
shutil.copy("/bin/true", "/tmp/true")
os.chmod("/tmp/true", 0o755)
print("tmp_exec=" + str(subprocess.run(["/tmp/true"]).returncode))
"""


async def test_tmp_scratch_and_ipc_are_size_limited(kernels: Kernels) -> None:
    tmp_size = 8 * MiB
    out = await kernels.run(FILL_PROBE, tmp_size_bytes=tmp_size, memory_bytes=256 * MiB)
    v = out.values()
    assert out.state.exit_code == 0, out.logs
    assert v["tmp_error"] == "ENOSPC"
    assert int(v["tmp_written"]) <= tmp_size
    assert v["work_error"] == "ENOSPC"
    assert int(v["work_written"]) <= 16 * MiB  # the scratch fixture's size
    # The ipc directory is mounted read-only: nothing can be written there at all.
    assert v["ipc_error"] == "EROFS"
    assert v["ipc_written"] == "0"
    assert v["tmp_exec"] == "0"
    # From the host: the file landed in the tmpfs (not on the host's disk), full.
    fill = kernels.scratch.work / "fill"
    assert fill.stat().st_uid == 1000
    assert await sandbox.scratch_usage_bytes(kernels.scratch) >= 15 * MiB


COMPAT_SYSCALL_PROBE = r"""
import ctypes, mmap
def run(code):
    buf = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    buf.write(code)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    return ctypes.CFUNCTYPE(ctypes.c_long)(addr)()
print("before=1", flush=True)
# i386 unshare(CLONE_NEWUSER) through int 0x80: push rbx; mov eax, 310;
# mov ebx, 0x10000000; int 0x80; pop rbx; ret
print("compat_unshare=" + str(run(bytes.fromhex("53b836010000bb00000010cd805bc3"))), flush=True)
"""


@pytest.mark.skipif(platform.machine() != "x86_64", reason="i386 compat ABI is x86 only")
async def test_compat_abi_syscalls_kill_the_process(kernels: Kernels) -> None:
    # The profile lists only the native architecture, so a 32-bit syscall made from a
    # 64-bit process cannot slip past the deny list: seccomp kills it (SIGSYS).
    out = await kernels.run(COMPAT_SYSCALL_PROBE)
    assert out.values().get("before") == "1", out.logs
    assert "compat_unshare" not in out.values()
    assert out.state.exit_code == 128 + signal.SIGSYS
