"""The builder's plumbing that needs no Docker: commands, timeouts, rootfs trimming."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from crucible.agent.images.base_image import finish_rootfs
from crucible.agent.images.commands import BuildError, checked, run_command
from crucible.agent.images.recipes import BaseRecipe

BASE = BaseRecipe(suite="bookworm", mirror="http://deb.debian.org/debian")


async def test_run_command_streams_lines_and_keeps_a_tail() -> None:
    seen: list[str] = []
    with trio.fail_after(10):
        code, tail = await run_command(
            ["sh", "-c", "printf 'a\\nb\\r\\nc\\rd\\n\\n'; cat; echo err >&2; exit 3"],
            timeout=10,
            stdin=b"from stdin\n",
            on_line=seen.append,
        )
    assert code == 3
    assert seen == ["a", "b", "c", "d", "from stdin", "err"]
    assert tail == seen


async def test_a_command_past_its_timeout_is_killed() -> None:
    with trio.fail_after(10):
        started = trio.current_time()
        with pytest.raises(BuildError, match="within 0 s"):
            await run_command(["sh", "-c", "echo going; sleep 30"], timeout=0.5)
    assert trio.current_time() - started < 5


async def test_failure_carries_the_output() -> None:
    with trio.fail_after(10), pytest.raises(BuildError, match=r"(?s)exit status 2.*boom"):
        await checked(["sh", "-c", "echo boom; exit 2"], timeout=10)


async def test_missing_program_is_a_build_error() -> None:
    with trio.fail_after(10), pytest.raises(BuildError, match="not installed"):
        await run_command(["crucible-no-such-program"], timeout=10)


def test_finish_rootfs_trims_and_configures(tmp_path: Path) -> None:
    root = tmp_path
    for folder in (
        "etc/apt/apt.conf.d",
        "etc/dpkg",
        "usr/share/doc/bash",
        "usr/share/man/man1",
        "usr/share/locale/de/LC_MESSAGES",
        "var/lib/apt/lists/partial",
        "var/cache/apt/archives/partial",
        "var/log/apt",
    ):
        (root / folder).mkdir(parents=True)
    (root / "usr/share/doc/bash/copyright").write_text("GPL")
    (root / "usr/share/doc/bash/README").write_text("read me")
    (root / "usr/share/man/man1/bash.1.gz").write_text("x")
    (root / "usr/share/locale/locale.alias").write_text("x")
    (root / "var/lib/apt/lists/deb.debian.org_Packages").write_text("x")
    (root / "var/cache/apt/archives/bash.deb").write_text("x")
    (root / "var/cache/apt/pkgcache.bin").write_text("x")
    (root / "etc/hostname").write_text("builder")

    finish_rootfs(root, BASE)

    assert (root / "etc/apt/sources.list").read_text() == BASE.sources_list
    assert (
        "path-exclude=/usr/share/doc/*"
        in (root / "etc/dpkg/dpkg.cfg.d/90crucible-nodoc").read_text()
    )
    assert (root / "etc/apt/apt.conf.d/90crucible-norecommends").exists()
    assert sorted(p.name for p in (root / "usr/share/doc/bash").iterdir()) == ["copyright"]
    assert list((root / "usr/share/man").iterdir()) == []
    assert [p.name for p in (root / "usr/share/locale").iterdir()] == ["locale.alias"]
    assert [p.name for p in (root / "var/lib/apt/lists").iterdir()] == ["partial"]
    assert [p.name for p in (root / "var/cache/apt/archives").iterdir()] == ["partial"]
    assert not (root / "var/cache/apt/pkgcache.bin").exists()
    assert not (root / "etc/hostname").exists()
