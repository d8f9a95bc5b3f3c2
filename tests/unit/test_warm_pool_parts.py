"""The warm pool's small parts: claim records and the host memory gauge."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from crucible.agent.kernel.info import KernelInfo
from crucible.agent.pool.claims import ClaimRecords
from crucible.agent.pool.memory import host_available_bytes

CONTAINER = "0123456789ab" * 5 + "cdef"


def _info(tmp_path: Path) -> KernelInfo:
    return KernelInfo(
        kernel_id="6f2c1c4e-0000-4000-8000-000000000001",
        image="crucible/kernel-python:3.11",
        lang="python",
        exec_timeout=0.0,
        cpu=0.5,
        mem=256 * 1024**2,
        environ={"GREETING": "hi"},
        kernel_dir=tmp_path / "k" / "pool-0123456789ab",
        mounts=(("/srv/folders/a", "/home/work/a", True),),
        access_key="AKIATEST",
    )


def test_a_claim_record_keeps_the_kernel_it_was_claimed_for(tmp_path: Path) -> None:
    claims = ClaimRecords(tmp_path / "claims")
    assert claims.read(CONTAINER) is None
    assert claims.container_ids() == []
    info = _info(tmp_path)
    claims.write(CONTAINER, info)
    assert claims.read(CONTAINER) == info
    assert claims.container_ids() == [CONTAINER]
    # The agent's alone: nobody else can list, read or replace the records.
    assert stat.S_IMODE(os.stat(claims.root).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(claims.root / f"{CONTAINER}.json").st_mode) == 0o600
    claims.write(CONTAINER, info)  # a second claim of the same container replaces it
    assert sorted(os.listdir(claims.root)) == [f"{CONTAINER}.json"]
    claims.remove(CONTAINER)
    claims.remove(CONTAINER)  # idempotent
    assert claims.read(CONTAINER) is None


def test_a_record_that_is_not_ours_is_no_claim(tmp_path: Path) -> None:
    claims = ClaimRecords(tmp_path / "claims")
    claims.write(CONTAINER, _info(tmp_path))
    path = claims.root / f"{CONTAINER}.json"
    path.write_text('{"container_id": "another", "info": "{}"}')
    assert claims.read(CONTAINER) is None
    path.write_text("not json")
    assert claims.read(CONTAINER) is None
    # A symbolic link in its place is never followed.
    path.unlink()
    target = tmp_path / "elsewhere.json"
    target.write_text("{}")
    path.symlink_to(target)
    assert claims.read(CONTAINER) is None


@pytest.mark.parametrize("bad", ["", "../x", "ABCDEF012345", "0123456789ab/.."])
def test_record_names_are_container_ids_only(tmp_path: Path, bad: str) -> None:
    claims = ClaimRecords(tmp_path / "claims")
    with pytest.raises(ValueError):
        claims.write(bad, _info(tmp_path))
    assert claims.read(bad) is None


def test_the_memory_gauge_reads_mem_available(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:   2048 kB\n")
    assert host_available_bytes(str(meminfo)) == 2048 * 1024
    meminfo.write_text("MemTotal: 24000000 kB\nMemFree: 100 kB\n")  # kernels before 3.14
    assert host_available_bytes(str(meminfo)) == 100 * 1024
    assert host_available_bytes() > 0  # this host's
