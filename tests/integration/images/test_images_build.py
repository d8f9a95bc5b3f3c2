"""Build the python kernel image for real and run it the way the agent will.

The first run on a machine takes minutes (debootstrap and apt-get); afterwards the images
exist with matching recipe hashes and the whole module takes seconds. The debootstrap
package cache lives in the default state directory (``CRUCIBLE_TEST_IMAGES_STATE_DIR``
overrides it), so even a removed base image is rebuilt without downloading again.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from crucible.agent.images import recipes
from crucible.agent.images.base_image import ensure_base
from crucible.agent.images.builder import build_images
from crucible.agent.images.commands import BuildResult
from crucible.agent.images.inventory import image_labels
from crucible.agent.images.recipes import BaseRecipe, LangRecipe, lang_recipes
from crucible.config import Config
from crucible.kernels.catalog import resolve_lang
from testlib.images import KERNEL_FEATURES

#: A cold build downloads ~150 MB; a warm one is a few label lookups.
COLD_BUILD_TIMEOUT = 40 * 60
WARM_BUILD_SECONDS = 15.0
RUN_TIMEOUT = 120

#: Every container here carries both labels; cleanup removes this run's only, so suites
#: running side by side do not remove each other's containers.
TEST_RUN_ID = uuid.uuid4().hex[:12]
TEST_LABELS = ("--label", "crucible.test-run=1", "--label", f"crucible.test-images={TEST_RUN_ID}")


def _docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        probe = subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False)
    except subprocess.TimeoutExpired:
        return False
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(not _docker_available(), reason="needs a Docker engine")


def _state_dir() -> Path:
    override = os.environ.get("CRUCIBLE_TEST_IMAGES_STATE_DIR")
    return Path(override) if override else Config().state_path


@pytest.fixture(scope="module")
def base_recipe() -> BaseRecipe:
    images = Config().images
    return BaseRecipe(suite=images.base_suite, mirror=images.debian_mirror)


@pytest.fixture(scope="module")
def python_recipe() -> LangRecipe:
    return lang_recipes(Config().images.base_suite)["python"]


@pytest.fixture(scope="module")
def built(base_recipe: BaseRecipe, python_recipe: LangRecipe) -> list[BuildResult]:
    async def build() -> list[BuildResult]:
        with trio.fail_after(COLD_BUILD_TIMEOUT):
            return await build_images([python_recipe], base_recipe, _state_dir(), progress=_show)

    return trio.run(build)


def _show(line: str) -> None:
    # Visible with -s: a cold build is long, and silence looks like a hang.
    print(line, file=sys.stderr, flush=True)


@pytest.fixture(scope="module", autouse=True)
def _remove_test_containers() -> Iterator[None]:
    yield
    listed = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=crucible.test-images={TEST_RUN_ID}"],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    ids = listed.stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, timeout=RUN_TIMEOUT)


def docker_run(image: str, *command: str, extra: tuple[str, ...] = ()) -> str:
    """Run a throw-away container without network as uid 1000; its stdout."""
    result = subprocess.run(
        [
            "docker", "run", "--rm", "--network", "none", "--user", "1000",
            *TEST_LABELS, *extra, image, *command,
        ],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


async def test_python_image_labels(built: list[BuildResult], python_recipe: LangRecipe) -> None:
    assert [result.ref for result in built] == ["crucible/base:bookworm", python_recipe.ref]
    with trio.fail_after(RUN_TIMEOUT):
        labels = await image_labels(python_recipe.ref, timeout=60.0)
    assert labels is not None
    assert labels["crucible.recipe-hash"] == built[1].recipe_hash
    assert labels["crucible.base-hash"] == built[0].recipe_hash
    assert labels["crucible.lang"] == "python"
    assert labels["crucible.aliases"].split(",") == [
        "python",
        "python:latest",
        "python:3",
        "python:3.11",
        "python3",
    ]
    assert labels["ai.backend.mode"] == "query"
    assert labels["ai.backend.maxcores"] == "4"
    assert labels["ai.backend.maxmem"] == "2g"
    assert labels["ai.backend.timeout"] == "30"
    assert set(labels["ai.backend.features"].split()) == KERNEL_FEATURES
    assert resolve_lang("python3", [(python_recipe.ref, labels)]) == python_recipe.ref


async def test_rebuild_with_nothing_changed_takes_seconds(
    built: list[BuildResult], base_recipe: BaseRecipe, python_recipe: LangRecipe
) -> None:
    lines: list[str] = []
    with trio.fail_after(WARM_BUILD_SECONDS * 4):
        again = await build_images(
            [python_recipe], base_recipe, _state_dir(), progress=lines.append
        )
    assert [result.outcome for result in again] == ["up-to-date", "up-to-date"]
    assert [result.recipe_hash for result in again] == [r.recipe_hash for r in built]
    assert sum(result.seconds for result in again) < WARM_BUILD_SECONDS
    assert any("up to date" in line for line in lines)


def test_numpy_and_matplotlib_import_without_network(
    built: list[BuildResult], python_recipe: LangRecipe
) -> None:
    out = docker_run(python_recipe.ref, "python3", "-c", "import numpy, matplotlib; print(42)")
    assert out == "42\n"


def test_runs_as_work_in_home_with_the_spec_environment(
    built: list[BuildResult], python_recipe: LangRecipe
) -> None:
    # Hardened the way the agent runs kernels: read-only root, tmpfs home and /tmp.
    script = (
        "import getpass, os, sys\n"
        "import matplotlib\n"
        "matplotlib.use('Agg')\n"
        "import matplotlib.pyplot as plt\n"
        "plt.plot([1, 2, 3]); plt.savefig('plot.png')\n"
        "print(getpass.getuser(), os.getuid(), os.getgid(), os.getcwd())\n"
        "print(os.path.getsize('plot.png') > 0, '%d.%d' % sys.version_info[:2])\n"
        "print(*(os.environ[k] for k in ('TERM', 'LANG', 'SHELL', 'USER', 'HOME')))\n"
    )
    out = docker_run(
        python_recipe.ref,
        "python3",
        "-c",
        script,
        extra=(
            "--read-only",
            "--tmpfs", "/home/work:uid=1000,gid=1000,size=64m",
            "--tmpfs", "/tmp:size=16m",
            "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges",
        ),
    )  # fmt: skip
    assert out.splitlines() == [
        "work 1000 1000 /home/work",
        "True 3.11",
        "xterm C.UTF-8 /bin/bash work /home/work",
    ]


def test_every_image_has_the_runner_standard_library(built: list[BuildResult]) -> None:
    # The kernel runner is bind-mounted at run time and uses only the standard library.
    modules = "asyncio, json, os, pty, selectors, signal, socket, struct, subprocess, termios"
    for result in built:
        out = docker_run(result.ref, "python3", "-c", f"import {modules}; print('ok')")
        assert out == "ok\n"


def test_images_list_cli_shows_the_python_image(
    built: list[BuildResult], python_recipe: LangRecipe
) -> None:
    listed = subprocess.run(
        [sys.executable, "-m", "crucible", "images", "list", "--json"],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=True,
    )
    images = {image["ref"]: image for image in json.loads(listed.stdout)}
    assert "crucible/base:bookworm" not in images
    python = images[python_recipe.ref]
    assert python["lang"] == "python"
    assert "python3" in python["aliases"]
    assert python["size"] > 0


async def test_base_is_reimported_from_the_cached_rootfs(
    built: list[BuildResult], base_recipe: BaseRecipe, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Same recipe (so the same cached tarball) under a throw-away name: the real base image,
    # which other suites may be using right now, is left alone.
    tarball = _state_dir() / "images" / f"base-{base_recipe.suite}-{built[0].recipe_hash}.tar"
    if not tarball.exists():
        pytest.skip("no cached rootfs here (the base image was built with another state dir)")
    monkeypatch.setattr(recipes, "BASE_REPOSITORY", f"crucible-test/base-{TEST_RUN_ID}")
    ref = base_recipe.ref
    assert ref.startswith("crucible-test/")
    try:
        with trio.fail_after(RUN_TIMEOUT):
            result = await ensure_base(base_recipe, _state_dir())
            assert (result.ref, result.outcome) == (ref, "imported")
            assert result.recipe_hash == built[0].recipe_hash
            labels = await image_labels(ref, timeout=60.0)
            assert labels is not None
            assert labels["crucible.recipe-hash"] == built[0].recipe_hash
            assert labels["crucible.image-kind"] == "base"
            again = await ensure_base(base_recipe, _state_dir())
            assert again.outcome == "up-to-date"
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(RUN_TIMEOUT):
            await trio.run_process(
                ["docker", "image", "rm", ref],
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
