"""Bind-mount sources the agent hands to Docker: only paths no kernel can redirect."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import attrs
import pytest

from crucible.agent.hostpaths import UntrustedPath, check_trusted_dir

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="ownership checks need root")


@pytest.fixture
def base(tmp_path: Path) -> Path:
    # pytest's tmp_path is root's own, mode 0700, below /tmp (sticky, root-owned dirs).
    (tmp_path / "store" / "folder").mkdir(parents=True)
    return tmp_path / "store"


def _refused(path: Path | str, code: int) -> None:
    with pytest.raises(UntrustedPath) as info:
        check_trusted_dir(str(path))
    assert info.value.errno == code, info.value


def test_a_root_controlled_path_is_trusted(base: Path) -> None:
    check_trusted_dir(str(base / "folder"))
    # The last component may be anyone's (a vfolder's data belongs to the kernel user).
    os.chown(base / "folder", 1000, 1000)
    check_trusted_dir(str(base / "folder"))


def test_a_directory_the_kernel_user_owns_cannot_be_an_ancestor(base: Path) -> None:
    (base / "folder" / "sub").mkdir()
    os.chown(base / "folder", 1000, 1000)
    _refused(base / "folder" / "sub", errno.EPERM)


def test_writable_ancestors_and_sticky_directories(base: Path) -> None:
    os.chmod(base, 0o777)
    _refused(base / "folder", errno.EPERM)
    # Sticky (like /tmp): fine while the entry is root's, since others cannot rename it.
    os.chmod(base, 0o1777)
    check_trusted_dir(str(base / "folder"))
    os.chown(base / "folder", 1000, 1000)
    _refused(base / "folder", errno.EPERM)


def test_links_files_and_odd_spellings_are_refused(base: Path) -> None:
    (base / "link").symlink_to(base / "folder")
    _refused(base / "link", errno.ELOOP)
    (base / "folder" / "inner").mkdir()
    _refused(base / "link" / "inner", errno.ELOOP)
    (base / "file").write_text("x")
    _refused(base / "file", errno.ENOTDIR)
    _refused(f"{base}/folder/../folder", errno.EINVAL)
    _refused("relative/path", errno.EINVAL)
    _refused(f"{base}/folder/", errno.EINVAL)
    with pytest.raises(FileNotFoundError):
        check_trusted_dir(str(base / "missing"))


def test_the_agent_refuses_a_mount_source_below_a_folder_a_session_writes(base: Path) -> None:
    from crucible.agent.calls import AgentCallError
    from crucible.agent.containers import vfolder_mounts as _vfolder_mounts
    from crucible.protocol.calls import Mount

    (base / "folder" / "sub").mkdir()
    os.chown(base / "folder", 1000, 1000)
    ok = Mount(source=str(base / "folder"), target="/home/work/f", read_only=False)
    assert _vfolder_mounts((ok,)) == ((str(base / "folder"), "/home/work/f", False),)
    # A session could swap `sub` for a symlink between this check and Docker's mount.
    bad = attrs.evolve(ok, source=str(base / "folder" / "sub"))
    with pytest.raises(AgentCallError, match="refused"):
        _vfolder_mounts((bad,))
