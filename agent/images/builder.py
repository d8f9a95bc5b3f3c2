"""Build kernel images from their recipes: the base images, then ``docker build`` each.

The base image comes from `crucible.agent.images.base_image`; each language image is a
``docker build`` of its recipe's Dockerfile on top of it, checked against the recipe's
tool-chain version. Every image records its recipe hash in a label; a build whose hash
matches the existing image is skipped, so re-running a build with nothing changed takes
seconds. One build at a time per state directory (`build_lock`).
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import trio

from crucible.agent.images.base_image import ensure_base
from crucible.agent.images.commands import (
    DEFAULT_OPTIONS,
    BuildError,
    BuildOptions,
    BuildResult,
    Progress,
    capture,
    checked,
    no_progress,
)
from crucible.agent.images.inventory import image_id, is_current, remove_replaced
from crucible.agent.images.recipes import PIP_CA_FILE, BaseRecipe, LangRecipe
from crucible.config import ImagesConfig
from crucible.kernels.contract import LABEL_BASE_HASH, LABEL_RECIPE_HASH

# Lines worth showing without --verbose: enough to see that a long step is alive.
_BUILD_SHOWN = re.compile(r"^(Step \d+/\d+ :|Setting up |Successfully |E: |ERROR|error)")


@asynccontextmanager
async def build_lock(
    state_dir: Path, progress: Progress, *, timeout: float
) -> AsyncIterator[None]:
    """Serialise builds that share a state directory (the debootstrap cache, the rootfs);
    waiting for another build ends after `timeout` seconds (``images.lock_timeout``).

    Polls a non-blocking flock: a blocking one would sit in a thread that trio cannot
    cancel, and so could not honour the timeout.
    """
    path = state_dir / "images" / "build.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        announced = False
        with trio.fail_after(timeout):
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                if not announced:
                    progress(f"waiting for another build using {path.parent}")
                    announced = True
                await trio.sleep(1.0)
        yield
    finally:
        os.close(fd)  # also releases the lock



# -- language images ------------------------------------------------------------------


async def build_lang(
    recipe: LangRecipe, base: BuildResult, options: BuildOptions = DEFAULT_OPTIONS
) -> BuildResult:
    """Build one kernel image on top of ``base`` unless an image of this recipe exists.

    `BuildOptions.force` rebuilds without Docker's layer cache.
    """
    progress, timeouts = options.progress, options.timeouts
    started = trio.current_time()
    wanted = recipe.recipe_hash(base.ref, base.recipe_hash)
    current = await is_current(recipe.ref, wanted, timeout=timeouts.inspect_timeout)
    if not options.force and current:
        progress(f"{recipe.ref}: up to date (recipe {wanted})")
        return BuildResult(recipe.ref, wanted, "up-to-date", trio.current_time() - started)

    def on_line(line: str) -> None:
        if options.verbose or _BUILD_SHOWN.match(line):
            progress(f"{recipe.ref}: {line}")

    old_id = await image_id(recipe.ref, timeout=timeouts.inspect_timeout)
    progress(f"{recipe.ref}: docker build (recipe {wanted})")
    argv = [
        "docker", "build",
        # apt-get needs the Debian mirror; kernels themselves run with --network none.
        "--network", "host",
        "--rm", "--force-rm",
        "--tag", recipe.ref,
        "--label", f"{LABEL_RECIPE_HASH}={wanted}",
        "--label", f"{LABEL_BASE_HASH}={base.recipe_hash}",
    ]  # fmt: skip
    if options.force:
        argv.append("--no-cache")
    with tempfile.TemporaryDirectory(prefix="crucible-build-") as context:
        if recipe.pip_packages:
            # The only file a recipe needs: the CA bundle pip trusts (see LangRecipe).
            await trio.to_thread.run_sync(
                shutil.copyfile, host_ca_bundle(), Path(context) / PIP_CA_FILE
            )
            argv += ["--file", "-", context]
        else:
            # An empty build context ("-"): the recipe needs no files, none are sent.
            argv.append("-")
        await checked(
            argv,
            timeout=timeouts.build_timeout,
            stdin=recipe.dockerfile(base.ref).encode(),
            on_line=on_line,
            # The classic builder prints "Step N/M" lines; BuildKit (buildx) may be missing.
            env={"DOCKER_BUILDKIT": "0"},
        )
    await verify_version(recipe, timeout=timeouts.verify_timeout)
    await remove_replaced(old_id, recipe.ref, progress, timeout=timeouts.inspect_timeout)
    seconds = trio.current_time() - started
    progress(f"{recipe.ref}: built in {seconds:.0f} s")
    return BuildResult(recipe.ref, wanted, "built", seconds)


def host_ca_bundle() -> str:
    """The CA bundle this host trusts, for pip inside builds (CRUCIBLE_BUILD_CA_BUNDLE,
    then pip's and OpenSSL's variables, then Debian's bundle)."""
    for variable in ("CRUCIBLE_BUILD_CA_BUNDLE", "PIP_CERT", "SSL_CERT_FILE"):
        candidate = os.environ.get(variable)
        if candidate and os.path.isfile(candidate):
            return candidate
    default = "/etc/ssl/certs/ca-certificates.crt"
    if os.path.isfile(default):
        return default
    raise BuildError("no CA bundle for pip found; set CRUCIBLE_BUILD_CA_BUNDLE")


async def verify_version(recipe: LangRecipe, *, timeout: float) -> None:
    """Check the image's tool chain version against its tag and aliases."""
    if not recipe.version_command:
        return
    result = await capture(
        [
            "docker", "run", "--rm", "--network", "none",
            "--label", "crucible.builder-check=1",
            recipe.ref, *recipe.version_command,
        ],
        timeout=timeout,
    )  # fmt: skip
    found = result.stdout.decode(errors="replace").strip()
    if result.returncode != 0 or found != recipe.tag:
        raise BuildError(
            f"{recipe.ref}: {' '.join(recipe.version_command)} printed {found!r} "
            f"(exit status {result.returncode}), expected {recipe.tag!r}; "
            "fix SUITE_VERSIONS in crucible.agent.images.suites"
        )


async def build_images(
    recipes: Iterable[LangRecipe],
    base: BaseRecipe,
    state_dir: Path,
    *,
    progress: Progress = no_progress,
    verbose: bool = False,
    force: bool = False,
    timeouts: ImagesConfig = DEFAULT_OPTIONS.timeouts,
) -> list[BuildResult]:
    """Ensure the base images, then each language image, in order. Returns every result.

    `base` is the configured suite's base; a recipe that names another suite
    (`LangRecipe.suite`, e.g. bullseye for Python 2) gets a base of that suite from the
    same mirror, built the first time a recipe needs it.
    """
    options = BuildOptions(progress, verbose, force, timeouts)
    async with build_lock(state_dir, progress, timeout=timeouts.lock_timeout):
        bases: dict[str, BuildResult] = {}
        results: list[BuildResult] = []

        async def base_for(suite: str) -> BuildResult:
            if suite not in bases:
                recipe = base if suite == base.suite else attrs.evolve(base, suite=suite)
                bases[suite] = await ensure_base(recipe, state_dir, options)
                results.append(bases[suite])
            return bases[suite]

        await base_for(base.suite)
        for recipe in recipes:
            base_result = await base_for(recipe.suite or base.suite)
            results.append(await build_lang(recipe, base_result, options))
    return results
