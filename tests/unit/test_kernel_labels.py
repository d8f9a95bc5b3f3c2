"""Kernel facts survive an agent restart through the container label alone."""

from __future__ import annotations

import json
from pathlib import Path

from crucible.agent.kernel.info import KernelInfo
from crucible.agent.kernel.info import info_from_label as _info_from_label
from crucible.agent.kernel.info import info_to_label as _info_to_label

INFO = KernelInfo(
    kernel_id="k1",
    image="crucible/kernel-python:3.11",
    lang="python",
    exec_timeout=30.0,
    cpu=0.5,
    mem=256 * 1024 * 1024,
    environ={"A": "b"},
    kernel_dir=Path("/state/agent/k/k1"),
    mounts=(("/vf/data", "/home/work/data", True),),
    access_key="AKIAIOSFODNN7EXAMPLE",
)


def test_kernel_info_round_trips_through_its_label() -> None:
    assert _info_from_label(_info_to_label(INFO)) == INFO


def test_a_label_from_before_access_keys_reads_as_no_key() -> None:
    # Kernels started by an older agent are recovered; they share the anonymous key.
    data = json.loads(_info_to_label(INFO))
    del data["access_key"]
    assert _info_from_label(json.dumps(data)).access_key == ""
