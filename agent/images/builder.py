"""Build kernel images from their recipes with the ``docker`` CLI and debootstrap.

Why the CLI rather than the Docker SDK: only ``crucible.agent.docker_driver`` imports
``docker`` (project rule), builds are rare, long and chatty, and ``trio.run_process`` on the
CLI streams their progress line by line with cancellation (and so timeouts) for free.

The base image is a debootstrap rootfs imported with ``docker import`` (no registry is
needed). Every image records its recipe hash in a label; a build whose hash matches the
existing image is skipped, so re-running a build with nothing changed takes seconds.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import trio

from crucible.agent.images.recipes import (
    APT_NO_RECOMMENDS,
    BASE_ENVIRONMENT,
    DPKG_NODOC,
    LABEL_BASE_HASH,
    LABEL_KIND,
    LABEL_RECIPE_HASH,
    PIP_CA_FILE,
    BaseRecipe,
    LangRecipe,
)

log = logging.getLogger(__name__)

#: A sink for human-readable progress lines.
Progress = Callable[[str], None]

# Time limits. Cold builds download a few hundred MiB from the Debian mirror; the limits
# are generous but finite so a stalled mirror fails the build instead of hanging it.
DEBOOTSTRAP_TIMEOUT = 30 * 60.0
TAR_TIMEOUT = 10 * 60.0
IMPORT_TIMEOUT = 10 * 60.0
BUILD_TIMEOUT = 60 * 60.0
INSPECT_TIMEOUT = 60.0
VERIFY_TIMEOUT = 120.0
LOCK_TIMEOUT = 2 * 60 * 60.0

#: Lines of output kept for the error message of a failed command.
OUTPUT_TAIL_LINES = 40

# Lines worth showing without --verbose: enough to see that a long step is alive.
_DEBOOTSTRAP_QUIET = re.compile(r"^I: Validating ")
_BUILD_SHOWN = re.compile(r"^(Step \d+/\d+ :|Setting up |Successfully |E: |ERROR|error)")


class BuildError(Exception):
    """A build step failed; the message carries the tail of its output."""


def _no_progress(line: str) -> None:
    pass


@attrs.frozen
class BuildResult:
    ref: str
    recipe_hash: str
    #: ``built``, ``imported`` (base re-imported from the cached rootfs) or ``up-to-date``.
    outcome: str
    seconds: float


@attrs.frozen
class ImageInfo:
    """One Crucible image as `crucible images list` shows it."""

    ref: str
    image_id: str
    size: int
    created: str
    labels: Mapping[str, str]

    @property
    def kind(self) -> str:
        return self.labels.get(LABEL_KIND, "")


# -- running commands -----------------------------------------------------------------


async def run_command(
    argv: Sequence[str | os.PathLike[str]],
    *,
    timeout: float,
    stdin: bytes = b"",
    on_line: Progress = _no_progress,
    env: Mapping[str, str] | None = None,
) -> tuple[int, list[str]]:
    """Run a command, feeding each output line (stdout and stderr merged) to ``on_line``.

    Returns the exit status and the last `OUTPUT_TAIL_LINES` lines. On timeout the process
    is killed (trio.run_process does that on cancellation) and `BuildError` raised.
    """
    tail: deque[str] = deque(maxlen=OUTPUT_TAIL_LINES)
    full_env = None if env is None else {**os.environ, **env}
    name = os.fspath(argv[0])
    # Checked up front: a failed spawn would surface wrapped in the nursery's exception group.
    if shutil.which(name) is None:
        raise BuildError(f"{name} is not installed")
    try:
        with trio.fail_after(timeout):
            async with trio.open_nursery() as nursery:
                process: trio.Process = await nursery.start(
                    partial(
                        trio.run_process,
                        [os.fspath(arg) for arg in argv],
                        stdin=stdin,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT,
                        check=False,
                        env=full_env,
                    )
                )
                assert process.stdout is not None
                async for line in _lines(process.stdout):
                    tail.append(line)
                    on_line(line)
    except trio.TooSlowError:
        raise BuildError(
            f"{name} did not finish within {timeout:.0f} s; last output:\n" + "\n".join(tail)
        ) from None
    returncode = process.returncode
    assert returncode is not None
    return returncode, list(tail)


async def _lines(stream: trio.abc.ReceiveStream) -> AsyncIterator[str]:
    # Docker's progress uses \r for in-place updates; treat it as a line end too.
    buffer = b""
    async for chunk in stream:
        buffer += chunk
        *complete, buffer = re.split(rb"\r\n|\r|\n", buffer)
        for raw in complete:
            if raw.strip():
                yield raw.decode(errors="replace").rstrip()
    if buffer.strip():
        yield buffer.decode(errors="replace").rstrip()


async def _checked(
    argv: Sequence[str | os.PathLike[str]],
    *,
    timeout: float,
    stdin: bytes = b"",
    on_line: Progress = _no_progress,
    env: Mapping[str, str] | None = None,
) -> list[str]:
    returncode, tail = await run_command(
        argv, timeout=timeout, stdin=stdin, on_line=on_line, env=env
    )
    if returncode != 0:
        command = " ".join(os.fspath(arg) for arg in argv[:3])
        raise BuildError(
            f"{command} ... failed with exit status {returncode}; last output:\n" + "\n".join(tail)
        )
    return tail


async def _capture(argv: Sequence[str], *, timeout: float) -> subprocess.CompletedProcess[bytes]:
    if shutil.which(argv[0]) is None:
        raise BuildError(f"{argv[0]} is not installed")
    try:
        with trio.fail_after(timeout):
            return await trio.run_process(
                list(argv), capture_stdout=True, capture_stderr=True, check=False
            )
    except trio.TooSlowError:
        raise BuildError(f"{' '.join(argv[:3])} did not finish within {timeout:.0f} s") from None


# -- inspecting images ----------------------------------------------------------------


async def image_labels(ref: str) -> dict[str, str] | None:
    """The labels of a local image, or None when there is no such image."""
    info = await _inspect([ref])
    if not info:
        return None
    return dict((info[0].get("Config") or {}).get("Labels") or {})


async def _image_id(ref: str) -> str | None:
    info = await _inspect([ref])
    return str(info[0]["Id"]) if info else None


async def _inspect(refs: Sequence[str]) -> list[dict[str, Any]]:
    if not refs:
        return []
    result = await _capture(["docker", "image", "inspect", *refs], timeout=INSPECT_TIMEOUT)
    if result.returncode != 0:
        stderr = result.stderr.decode(errors="replace")
        # One missing ref makes the whole call fail, but it still prints the others.
        if "No such image" not in stderr:
            raise BuildError(f"docker image inspect failed: {stderr.strip()}")
    try:
        data = json.loads(result.stdout or b"[]")
    except ValueError as exc:
        raise BuildError(f"docker image inspect printed no JSON: {exc}") from exc
    return list(data)


async def list_images(*, include_base: bool = False) -> list[ImageInfo]:
    """The local Crucible images: kernel images, and the base images when asked."""
    result = await _capture(
        [
            "docker", "image", "ls",
            "--filter", f"label={LABEL_KIND}",
            "--format", "{{.ID}}",
        ],
        timeout=INSPECT_TIMEOUT,
    )  # fmt: skip
    if result.returncode != 0:
        raise BuildError(f"docker image ls failed: {result.stderr.decode(errors='replace')}")
    ids = list(dict.fromkeys(result.stdout.decode().split()))
    images: list[ImageInfo] = []
    for item in await _inspect(ids):
        labels = dict((item.get("Config") or {}).get("Labels") or {})
        if labels.get(LABEL_KIND) != "kernel" and not include_base:
            continue
        for ref in item.get("RepoTags") or ["<none>"]:
            images.append(
                ImageInfo(
                    ref=ref,
                    image_id=str(item["Id"]),
                    size=int(item.get("Size", 0)),
                    created=str(item.get("Created", "")),
                    labels=labels,
                )
            )
    images.sort(key=lambda image: image.ref)
    return images


# -- the build lock -------------------------------------------------------------------


@asynccontextmanager
async def build_lock(state_dir: Path, progress: Progress) -> AsyncIterator[None]:
    """Serialise builds that share a state directory (the debootstrap cache, the rootfs).

    Polls a non-blocking flock: a blocking one would sit in a thread that trio cannot
    cancel, and so could not honour the timeout.
    """
    path = state_dir / "images" / "build.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        announced = False
        with trio.fail_after(LOCK_TIMEOUT):
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


# -- the base image -------------------------------------------------------------------


def _base_cache_dir(state_dir: Path) -> Path:
    return state_dir / "images"


async def ensure_base(
    recipe: BaseRecipe,
    state_dir: Path,
    *,
    progress: Progress = _no_progress,
    verbose: bool = False,
    force: bool = False,
) -> BuildResult:
    """Make sure ``crucible/base:<suite>`` exists with this recipe's hash.

    Cheapest first: the image is already there (seconds); the rootfs tarball of this recipe
    is cached in the state directory (re-import, seconds); else debootstrap (minutes; the
    .deb files are cached in ``<state_dir>/images/debootstrap-cache`` for the next time).
    """
    started = trio.current_time()
    wanted = recipe.recipe_hash()
    labels = await image_labels(recipe.ref)
    if not force and labels is not None and labels.get(LABEL_RECIPE_HASH) == wanted:
        progress(f"{recipe.ref}: up to date (recipe {wanted})")
        return BuildResult(recipe.ref, wanted, "up-to-date", trio.current_time() - started)

    cache = _base_cache_dir(await trio.to_thread.run_sync(state_dir.resolve))
    tarball = cache / f"base-{recipe.suite}-{wanted}.tar"
    outcome = "imported"
    if force or not await trio.to_thread.run_sync(tarball.exists):
        await _debootstrap_tarball(recipe, cache, tarball, progress=progress, verbose=verbose)
        outcome = "built"
    else:
        progress(f"{recipe.ref}: importing the cached rootfs {tarball}")
    old_id = await _image_id(recipe.ref)
    await _docker_import(recipe, tarball, progress)
    await _remove_replaced(old_id, recipe.ref, progress)
    seconds = trio.current_time() - started
    progress(f"{recipe.ref}: {outcome} in {seconds:.0f} s (recipe {wanted})")
    return BuildResult(recipe.ref, wanted, outcome, seconds)


async def _debootstrap_tarball(
    recipe: BaseRecipe, cache: Path, tarball: Path, *, progress: Progress, verbose: bool
) -> None:
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
        if verbose or not _DEBOOTSTRAP_QUIET.match(line):
            progress(f"{recipe.ref}: {line}")

    progress(f"{recipe.ref}: debootstrap {recipe.suite} from {recipe.mirror} (a few minutes)")
    try:
        await _checked(
            [
                debootstrap,
                f"--variant={recipe.variant}",
                f"--include={','.join(recipe.include)}",
                f"--cache-dir={debs}",
                recipe.suite,
                rootfs,
                recipe.mirror,
            ],
            timeout=DEBOOTSTRAP_TIMEOUT,
            on_line=on_line,
            env={"PATH": path},
        )
        progress(f"{recipe.ref}: trimming the rootfs")
        await trio.to_thread.run_sync(_finish_rootfs, rootfs, recipe)
        progress(f"{recipe.ref}: packing {tarball.name}")
        partial_tarball = tarball.with_suffix(".tar.part")
        # Device nodes, /proc and /sys are provided by the container runtime; leaving them
        # out also keeps a mount left behind by a failed debootstrap out of the image.
        await _checked(
            [
                "tar", "--numeric-owner", "--create", "--file", partial_tarball,
                "--directory", rootfs,
                "--exclude=./dev/*", "--exclude=./proc/*", "--exclude=./sys/*",
                ".",
            ],
            timeout=TAR_TIMEOUT,
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


def _finish_rootfs(rootfs: Path, recipe: BaseRecipe) -> None:
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


async def _docker_import(recipe: BaseRecipe, tarball: Path, progress: Progress) -> None:
    changes: list[str] = []
    for key, value in sorted(recipe.labels().items()):
        changes += ["--change", f"LABEL {key}={json.dumps(value)}"]
    # Only the locale-neutral part of the spec 9 environment: the user comes with the
    # kernel images.
    changes += ["--change", f"ENV LANG={BASE_ENVIRONMENT['LANG']}"]
    changes += ["--change", 'CMD ["/bin/bash"]']
    progress(f"{recipe.ref}: docker import")
    await _checked(
        ["docker", "import", *changes, "--message", "crucible base rootfs", tarball, recipe.ref],
        timeout=IMPORT_TIMEOUT,
    )


async def _remove_replaced(old_id: str | None, ref: str, progress: Progress) -> None:
    """Drop the image a rebuild untagged, unless something (a container) still uses it."""
    if old_id is None or old_id == await _image_id(ref):
        return
    result = await _capture(["docker", "image", "rm", old_id], timeout=INSPECT_TIMEOUT)
    if result.returncode == 0:
        progress(f"{ref}: removed the replaced image {old_id[:19]}")
    else:
        log.info("kept the replaced image %s: %s", old_id, result.stderr.decode().strip())


# -- language images ------------------------------------------------------------------


async def build_lang(
    recipe: LangRecipe,
    base: BuildResult,
    *,
    progress: Progress = _no_progress,
    verbose: bool = False,
    force: bool = False,
) -> BuildResult:
    """Build one kernel image on top of ``base`` unless an image of this recipe exists.

    ``force`` rebuilds without Docker's layer cache, which also picks up Debian updates.
    """
    started = trio.current_time()
    wanted = recipe.recipe_hash(base.ref, base.recipe_hash)
    labels = await image_labels(recipe.ref)
    if not force and labels is not None and labels.get(LABEL_RECIPE_HASH) == wanted:
        progress(f"{recipe.ref}: up to date (recipe {wanted})")
        return BuildResult(recipe.ref, wanted, "up-to-date", trio.current_time() - started)

    def on_line(line: str) -> None:
        if verbose or _BUILD_SHOWN.match(line):
            progress(f"{recipe.ref}: {line}")

    old_id = await _image_id(recipe.ref)
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
    if force:
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
        await _checked(
            argv,
            timeout=BUILD_TIMEOUT,
            stdin=recipe.dockerfile(base.ref).encode(),
            on_line=on_line,
            # The classic builder prints "Step N/M" lines; BuildKit (buildx) may be missing.
            env={"DOCKER_BUILDKIT": "0"},
        )
    await verify_version(recipe)
    await _remove_replaced(old_id, recipe.ref, progress)
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


async def verify_version(recipe: LangRecipe) -> None:
    """Check the image's tool chain version against its tag and aliases."""
    if not recipe.version_command:
        return
    result = await _capture(
        [
            "docker", "run", "--rm", "--network", "none",
            "--label", "crucible.builder-check=1",
            recipe.ref, *recipe.version_command,
        ],
        timeout=VERIFY_TIMEOUT,
    )  # fmt: skip
    found = result.stdout.decode(errors="replace").strip()
    if result.returncode != 0 or found != recipe.tag:
        raise BuildError(
            f"{recipe.ref}: {' '.join(recipe.version_command)} printed {found!r} "
            f"(exit status {result.returncode}), expected {recipe.tag!r}; "
            "fix SUITE_VERSIONS in crucible.agent.images.recipes"
        )


async def build_images(
    recipes: Iterable[LangRecipe],
    base: BaseRecipe,
    state_dir: Path,
    *,
    progress: Progress = _no_progress,
    verbose: bool = False,
    force: bool = False,
) -> list[BuildResult]:
    """Ensure the base images, then each language image, in order. Returns every result.

    `base` is the configured suite's base; a recipe that names another suite
    (`LangRecipe.suite`, e.g. bullseye for Python 2) gets a base of that suite from the
    same mirror, built the first time a recipe needs it.
    """
    async with build_lock(state_dir, progress):
        bases: dict[str, BuildResult] = {}
        results: list[BuildResult] = []

        async def base_for(suite: str) -> BuildResult:
            if suite not in bases:
                recipe = base if suite == base.suite else attrs.evolve(base, suite=suite)
                bases[suite] = await ensure_base(
                    recipe, state_dir, progress=progress, verbose=verbose, force=force
                )
                results.append(bases[suite])
            return bases[suite]

        await base_for(base.suite)
        for recipe in recipes:
            base_result = await base_for(recipe.suite or base.suite)
            results.append(
                await build_lang(
                    recipe, base_result, progress=progress, verbose=verbose, force=force
                )
            )
    return results
