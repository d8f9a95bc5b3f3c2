"""The base image: a debootstrap rootfs, trimmed, imported with ``docker import``.

No registry is needed. The packed rootfs of each recipe is cached in the state directory,
so a removed base image is re-imported in seconds, and so are the .deb files debootstrap
fetched, for the next debootstrap.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import trio

from crucible.agent.images.commands import (
    DEFAULT_OPTIONS,
    BuildError,
    BuildOptions,
    BuildResult,
    Progress,
    checked,
)
from crucible.agent.images.inventory import image_id, is_current, remove_replaced
from crucible.agent.images.recipes import BaseRecipe
from crucible.agent.images.suites import APT_NO_RECOMMENDS, DPKG_NODOC
from crucible.kernels.contract import BASE_ENVIRONMENT

# Lines worth showing without --verbose: enough to see that a long step is alive.
_DEBOOTSTRAP_QUIET = re.compile(r"^I: Validating ")


def _base_cache_dir(state_dir: Path) -> Path:
    return state_dir / "images"


async def ensure_base(
    recipe: BaseRecipe, state_dir: Path, options: BuildOptions = DEFAULT_OPTIONS
) -> BuildResult:
    """Make sure ``crucible/base:<suite>`` exists with this recipe's hash.

    Cheapest first: the image is already there (seconds); the rootfs tarball of this recipe
    is cached in the state directory (re-import, seconds); else debootstrap (minutes; the
    .deb files are cached in ``<state_dir>/images/debootstrap-cache`` for the next time).
    """
    progress, timeouts = options.progress, options.timeouts
    started = trio.current_time()
    wanted = recipe.recipe_hash()
    current = await is_current(recipe.ref, wanted, timeout=timeouts.inspect_timeout)
    if not options.force and current:
        progress(f"{recipe.ref}: up to date (recipe {wanted})")
        return BuildResult(recipe.ref, wanted, "up-to-date", trio.current_time() - started)

    cache = _base_cache_dir(await trio.to_thread.run_sync(state_dir.resolve))
    tarball = cache / f"base-{recipe.suite}-{wanted}.tar"
    outcome = "imported"
    if options.force or not await trio.to_thread.run_sync(tarball.exists):
        await _debootstrap_tarball(recipe, cache, tarball, options)
        outcome = "built"
    else:
        progress(f"{recipe.ref}: importing the cached rootfs {tarball}")
    old_id = await image_id(recipe.ref, timeout=timeouts.inspect_timeout)
    await _docker_import(recipe, tarball, progress, timeouts.import_timeout)
    await remove_replaced(old_id, recipe.ref, progress, timeout=timeouts.inspect_timeout)
    seconds = trio.current_time() - started
    progress(f"{recipe.ref}: {outcome} in {seconds:.0f} s (recipe {wanted})")
    return BuildResult(recipe.ref, wanted, outcome, seconds)


async def _debootstrap_tarball(
    recipe: BaseRecipe, cache: Path, tarball: Path, options: BuildOptions
) -> None:
    progress = options.progress
    if os.geteuid() != 0:
        raise BuildError("building the base image runs debootstrap, which needs root")
    # A PATH without the sbin folders (su without -, some CI shells) hides debootstrap and
    # the tools it runs (chroot...).
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])
    debootstrap = shutil.which("debootstrap", path=path)
    if debootstrap is None:
        raise BuildError("debootstrap is not installed (apt-get install debootstrap)")
    debs = cache / "debootstrap-cache"
    rootfs = cache / f"rootfs-{recipe.suite}.tmp"
    debs.mkdir(parents=True, exist_ok=True)
    await trio.to_thread.run_sync(_remove_rootfs, rootfs)

    def on_line(line: str) -> None:
        if options.verbose or not _DEBOOTSTRAP_QUIET.match(line):
            progress(f"{recipe.ref}: {line}")

    progress(f"{recipe.ref}: debootstrap {recipe.suite} from {recipe.mirror} (a few minutes)")
    try:
        await checked(
            [
                debootstrap,
                f"--variant={recipe.variant}",
                f"--include={','.join(recipe.include)}",
                f"--cache-dir={debs}",
                recipe.suite,
                rootfs,
                recipe.mirror,
            ],
            timeout=options.timeouts.debootstrap_timeout,
            on_line=on_line,
            env={"PATH": path},
        )
        progress(f"{recipe.ref}: trimming the rootfs")
        await trio.to_thread.run_sync(finish_rootfs, rootfs, recipe)
        progress(f"{recipe.ref}: packing {tarball.name}")
        partial_tarball = tarball.with_suffix(".tar.part")
        # Device nodes, /proc and /sys are provided by the container runtime; leaving them
        # out also keeps a mount left behind by a failed debootstrap out of the image.
        await checked(
            [
                "tar", "--numeric-owner", "--create", "--file", partial_tarball,
                "--directory", rootfs,
                "--exclude=./dev/*", "--exclude=./proc/*", "--exclude=./sys/*",
                ".",
            ],
            timeout=options.timeouts.tar_timeout,
        )  # fmt: skip
        partial_tarball.rename(tarball)
    finally:
        with trio.CancelScope(shield=True):
            try:
                await trio.to_thread.run_sync(_remove_rootfs, rootfs)
            except BuildError as exc:
                # Do not mask the error that got us here; the next build retries the removal.
                progress(f"{recipe.ref}: could not remove {rootfs}: {exc}")
    await trio.to_thread.run_sync(_remove_stale_tarballs, cache, recipe.suite, tarball)


def _remove_stale_tarballs(cache: Path, suite: str, keep: Path) -> None:
    # Older recipes' tarballs are dead weight (~100 MiB each).
    for stale in cache.glob(f"base-{suite}-*.tar"):
        if stale != keep:
            stale.unlink(missing_ok=True)


def _remove_rootfs(rootfs: Path) -> None:
    if not rootfs.exists():
        return
    # debootstrap mounts /proc and /sys inside the target while it works; removing the tree
    # with them still mounted would descend into the host's /sys.
    resolved = str(rootfs.resolve())
    with open("/proc/mounts") as mounts:
        for entry in mounts:
            mount_point = entry.split()[1]
            if mount_point == resolved or mount_point.startswith(resolved + "/"):
                raise BuildError(f"{mount_point} is still mounted; unmount it and retry")
    shutil.rmtree(rootfs)


def finish_rootfs(rootfs: Path, recipe: BaseRecipe) -> None:
    """Configure apt and dpkg for image builds, and drop what debootstrap left behind."""
    (rootfs / "etc/apt/sources.list").write_text(recipe.sources_list)
    (rootfs / "etc/dpkg/dpkg.cfg.d").mkdir(parents=True, exist_ok=True)
    (rootfs / "etc/dpkg/dpkg.cfg.d/90crucible-nodoc").write_text(DPKG_NODOC)
    (rootfs / "etc/apt/apt.conf.d/90crucible-norecommends").write_text(APT_NO_RECOMMENDS)
    # debootstrap installed before the dpkg exclusions existed: apply them by hand.
    doc = rootfs / "usr/share/doc"
    if doc.is_dir():
        for package in doc.iterdir():
            if package.is_dir() and not package.is_symlink():
                for entry in package.iterdir():
                    if entry.name != "copyright":
                        _remove(entry)
    for folder in ("usr/share/man", "usr/share/info", "usr/share/lintian"):
        _empty(rootfs / folder)
    locale = rootfs / "usr/share/locale"
    if locale.is_dir():
        for entry in locale.iterdir():
            if entry.name != "locale.alias":
                _remove(entry)
    for folder in ("var/lib/apt/lists", "var/cache/apt/archives", "var/log", "tmp"):
        _empty(rootfs / folder)
    for pkgcache in (rootfs / "var/cache/apt").glob("*.bin"):
        pkgcache.unlink()
    # The container runtime provides these per container.
    for name in ("etc/hostname", "etc/resolv.conf"):
        (rootfs / name).unlink(missing_ok=True)


def _empty(folder: Path) -> None:
    if folder.is_dir() and not folder.is_symlink():
        for entry in folder.iterdir():
            # apt expects these two to exist.
            if entry.name in ("partial", "lock"):
                continue
            _remove(entry)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


async def _docker_import(
    recipe: BaseRecipe, tarball: Path, progress: Progress, timeout: float
) -> None:
    changes: list[str] = []
    for key, value in sorted(recipe.labels().items()):
        changes += ["--change", f"LABEL {key}={json.dumps(value)}"]
    # Only the locale-neutral part of the spec 9 environment: the user comes with the
    # kernel images.
    changes += ["--change", f"ENV LANG={BASE_ENVIRONMENT['LANG']}"]
    changes += ["--change", 'CMD ["/bin/bash"]']
    progress(f"{recipe.ref}: docker import")
    await checked(
        ["docker", "import", *changes, "--message", "crucible base rootfs", tarball, recipe.ref],
        timeout=timeout,
    )

