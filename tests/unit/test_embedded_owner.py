"""Who owns the embedded PostgreSQL: process identities that survive pid reuse."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from crucible.db.embedded import OWNER_FILE, ProcessIdentity, read_owner


def test_the_current_process_is_alive() -> None:
    me = ProcessIdentity.current()
    assert me.pid == os.getpid()
    assert me.is_alive()


def test_a_recycled_pid_is_not_the_owner() -> None:
    me = ProcessIdentity.current()
    impostor = ProcessIdentity(me.pid, me.start_ticks + 1)
    assert not impostor.is_alive()


def test_an_exited_process_is_not_alive() -> None:
    child = subprocess.Popen(["true"])
    identity = ProcessIdentity.of(child.pid)
    child.wait()
    assert identity is None or not identity.is_alive()


def test_an_unreadable_owner_file_means_no_owner(tmp_path: Path) -> None:
    assert read_owner(tmp_path) is None
    (tmp_path / OWNER_FILE).write_text("{not json")
    assert read_owner(tmp_path) is None
    (tmp_path / OWNER_FILE).write_text('{"pid": 1, "start_ticks": 5}')
    assert read_owner(tmp_path) == ProcessIdentity(1, 5)
