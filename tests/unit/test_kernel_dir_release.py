"""A kernel directory that cannot be released is logged, never raised: one stuck mount
(a host process still inside it) must not stop the agent's recovery of the others."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from crucible.agent import lifecycle, sandbox


async def test_a_failed_release_is_logged_not_raised(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    released: list[Path] = []

    async def stuck(kernel_dir: Path) -> None:
        released.append(kernel_dir)
        raise sandbox.MountError(errno.EBUSY, f"umount {kernel_dir}: still mounted")

    monkeypatch.setattr(sandbox, "release_scratch", stuck)
    await lifecycle._release_kernel_dir(tmp_path / "k1")
    assert released == [tmp_path / "k1"]
    assert "could not release" in caplog.text and "still mounted" in caplog.text
