"""`crucible up` on a machine without kernel images: the decision, the estimate, the
progress display, and the build it starts (with a stand-in builder: the real one
would replace the images every test shares)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from crucible.agent.images.commands import BuildError, BuildResult
from crucible.agent.images.first_run import (
    TYPICAL_SECONDS,
    BuildProgress,
    ensure_first_image,
    estimate_seconds,
    load_timings,
    needs_first_build,
    save_timings,
)
from crucible.cli import build_parser
from crucible.config import Config, load_config
from crucible.kernels.catalog import ImageInfo
from crucible.kernels.contract import KIND_BASE, KIND_KERNEL, LABEL_KIND


def _image(kind: str, tag: str) -> ImageInfo:
    return ImageInfo(id=f"sha256:{tag}", tags=(tag,), labels={LABEL_KIND: kind})


def test_only_a_kernel_image_counts() -> None:
    assert needs_first_build([])
    assert needs_first_build([_image(KIND_BASE, "crucible/base:bookworm")])
    assert not needs_first_build([_image(KIND_KERNEL, "i13-test/kernel-lua:0")])


def test_the_estimate_prefers_this_machines_own_timings(tmp_path: Path) -> None:
    assert estimate_seconds({}, "python", base_missing=False) == TYPICAL_SECONDS["python"]
    both = TYPICAL_SECONDS["python"] + TYPICAL_SECONDS["base"]
    assert estimate_seconds({}, "python", base_missing=True) == both
    results = [
        BuildResult("crucible/base:bookworm", "h1", "built", 100.0),
        BuildResult("crucible/kernel-python:3.11", "h2", "built", 40.0),
    ]
    save_timings(tmp_path, results, "python")
    assert load_timings(tmp_path) == {"base": 100.0, "python": 40.0}
    assert estimate_seconds(load_timings(tmp_path), "python", base_missing=True) == 140.0


def test_progress_shows_time_spent_and_left() -> None:
    now = [0.0]
    out = io.StringIO()
    progress = BuildProgress(150.0, out, clock=lambda: now[0])
    now[0] = 65.0
    progress("Step 3/9 : RUN apt-get install")
    now[0] = 200.0
    progress("Successfully built")
    assert out.getvalue().splitlines() == [
        "[1:05 spent, ~1:25 left] Step 3/9 : RUN apt-get install",
        "[3:20 spent, finishing] Successfully built",
    ]


class _Builds:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.fail = fail

    async def __call__(
        self, recipes: list[Any], base: Any, state: Path, **kw: Any
    ) -> list[BuildResult]:
        self.calls.append([recipe.ref for recipe in recipes])
        kw["progress"]("Step 1/2 : FROM crucible/base:bookworm")
        if self.fail:
            raise BuildError("the mirror did not answer")
        return [BuildResult(recipes[0].ref, "h", "built", 12.0)]


def _config(tmp_path: Path) -> Config:
    return load_config(None, {"state_dir": str(tmp_path)})


async def test_no_kernel_image_builds_python_with_progress(tmp_path: Path) -> None:
    builds, out = _Builds(), io.StringIO()

    async def nothing() -> list[ImageInfo]:
        return [_image(KIND_BASE, "crucible/base:bookworm")]

    assert await ensure_first_image(_config(tmp_path), lister=nothing, builder=builds, out=out)
    (refs,) = builds.calls
    assert len(refs) == 1 and refs[0].startswith("crucible/kernel-python:")
    text = out.getvalue()
    assert "no kernel image here yet" in text and "--no-build" in text
    assert "spent" in text and "Step 1/2" in text and "is ready" in text
    assert load_timings(tmp_path)["python"] == 12.0


async def test_a_kernel_image_means_no_build(tmp_path: Path) -> None:
    builds = _Builds()

    async def one() -> list[ImageInfo]:
        return [_image(KIND_KERNEL, "i13-test/kernel-fake:1")]

    assert not await ensure_first_image(_config(tmp_path), lister=one, builder=builds)
    assert builds.calls == []


async def test_a_failed_build_is_reported_and_the_start_goes_on(tmp_path: Path) -> None:
    builds, out = _Builds(fail=True), io.StringIO()

    async def nothing() -> list[ImageInfo]:
        return []

    assert not await ensure_first_image(_config(tmp_path), lister=nothing, builder=builds, out=out)
    assert "failed: the mirror did not answer" in out.getvalue()


def test_up_keeps_two_python_kernels_warm_unless_the_file_says(tmp_path: Path) -> None:
    args = build_parser().parse_args(["up"])
    assert args.no_build is False
    assert build_parser().parse_args(["up", "--no-build"]).no_build is True
    defaults = args.command_defaults
    assert load_config(None, command_defaults=defaults).pool.sizes == {"python": 2}
    # Other commands (a cluster's agents) keep no pool unless configured.
    assert load_config(None).pool.sizes == {}
    none = tmp_path / "none.toml"
    none.write_text("[pool]\nsizes = {}\n")
    assert load_config(none, command_defaults=defaults).pool.sizes == {}
    other = tmp_path / "other.toml"
    other.write_text("[pool]\nmax_memory_bytes = 1073741824\n")
    assert load_config(other, command_defaults=defaults).pool.sizes == {"python": 2}
