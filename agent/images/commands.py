"""What every build step shares: running a command with a deadline, and its outcomes.

Why the ``docker`` CLI and not the Docker SDK: only ``crucible.agent.docker.driver``
imports ``docker`` (project rule), builds are rare, long and chatty, and
``trio.run_process`` on the CLI streams their progress line by line with cancellation
(and so timeouts) for free.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from functools import partial
from typing import TypedDict, Unpack

import attrs
import trio

from crucible.config import ImagesConfig

#: A sink for human-readable progress lines.
Progress = Callable[[str], None]

#: Lines of output kept for the error message of a failed command.
OUTPUT_TAIL_LINES = 40


class BuildError(Exception):
    """A build step failed; the message carries the tail of its output."""


def no_progress(line: str) -> None:
    pass


@attrs.frozen
class BuildOptions:
    """How a build step reports, what it may reuse, and how long it may take."""

    #: Where the human-readable progress lines go.
    progress: Progress = no_progress
    #: Every output line, not only those that show a long step is alive.
    verbose: bool = False
    #: Build even an up-to-date image, without Docker's layer cache (which picks up
    #: Debian's updates).
    force: bool = False
    #: The time limit of each step (``[images]``): generous but finite, so that a
    #: stalled mirror fails the build instead of hanging it.
    timeouts: ImagesConfig = attrs.Factory(ImagesConfig)


DEFAULT_OPTIONS = BuildOptions()


@attrs.frozen
class BuildResult:
    ref: str
    recipe_hash: str
    #: ``built``, ``imported`` (base re-imported from the cached rootfs) or ``up-to-date``.
    outcome: str
    seconds: float


async def run_command(
    argv: Sequence[str | os.PathLike[str]],
    *,
    timeout: float,
    stdin: bytes = b"",
    on_line: Progress = no_progress,
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


class CommandOptions(TypedDict, total=False):
    """`run_command`'s optional arguments."""

    stdin: bytes
    on_line: Progress
    env: Mapping[str, str] | None


async def checked(
    argv: Sequence[str | os.PathLike[str]], *, timeout: float, **options: Unpack[CommandOptions]
) -> list[str]:
    """`run_command`, and `BuildError` unless the command succeeded; returns the tail."""
    returncode, tail = await run_command(argv, timeout=timeout, **options)
    if returncode != 0:
        command = " ".join(os.fspath(arg) for arg in argv[:3])
        raise BuildError(
            f"{command} ... failed with exit status {returncode}; last output:\n" + "\n".join(tail)
        )
    return tail


async def capture(argv: Sequence[str], *, timeout: float) -> subprocess.CompletedProcess[bytes]:
    if shutil.which(argv[0]) is None:
        raise BuildError(f"{argv[0]} is not installed")
    try:
        with trio.fail_after(timeout):
            return await trio.run_process(
                list(argv), capture_stdout=True, capture_stderr=True, check=False
            )
    except trio.TooSlowError:
        raise BuildError(f"{' '.join(argv[:3])} did not finish within {timeout:.0f} s") from None

