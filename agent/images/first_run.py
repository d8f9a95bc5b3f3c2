"""``crucible up`` on a machine with no kernel image: build the default one first.

A Crucible without any kernel image starts, but cannot run anything. So `crucible up`
(unless ``--no-build``) looks for kernel images first and, finding none, builds the
Python image (and the base image under it), showing each step with the time spent
and an estimate of the time left: the durations this machine's previous builds took
(``<state>/images/build-seconds.json``), or typical ones the first time.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TextIO

import trio

from crucible.agent.images.builder import build_images
from crucible.agent.images.commands import BuildError, BuildResult
from crucible.agent.images.inventory import image_id, list_images
from crucible.agent.images.recipes import BaseRecipe, lang_recipes
from crucible.config import Config
from crucible.kernels.catalog import ImageInfo
from crucible.kernels.contract import KIND_KERNEL

#: The image `crucible up` builds when there is none (the README's first command).
DEFAULT_LANG = "python"
#: Seconds a build typically takes on a small machine (debootstrap and apt for the
#: base; apt and pip for Python), until this machine has timed its own.
TYPICAL_SECONDS = {"base": 240.0, DEFAULT_LANG: 150.0}

Lister = Callable[[], Awaitable[list[ImageInfo]]]
Builder = Callable[..., Awaitable[list[BuildResult]]]


def needs_first_build(images: Sequence[ImageInfo]) -> bool:
    """True when none of `images` is a kernel image (base images do not count)."""
    return not any(image.kind == KIND_KERNEL for image in images)


def timings_path(state_dir: Path) -> Path:
    return state_dir / "images" / "build-seconds.json"


def load_timings(state_dir: Path) -> dict[str, float]:
    """What this machine's builds took before (``base``, lang names), seconds."""
    try:
        data = json.loads(timings_path(state_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): float(v) for k, v in data.items() if isinstance(v, (int, float))}


def save_timings(state_dir: Path, results: Sequence[BuildResult], lang: str) -> None:
    timings = load_timings(state_dir)
    for result in results:
        if result.outcome == "built":
            timings["base" if result.ref.startswith("crucible/base:") else lang] = result.seconds
    path = timings_path(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(timings), encoding="utf-8")


def estimate_seconds(timings: dict[str, float], lang: str, *, base_missing: bool) -> float:
    """Seconds the build of `lang` (and of the base, when it is missing) should take."""
    seconds = timings.get(lang, TYPICAL_SECONDS.get(lang, TYPICAL_SECONDS[DEFAULT_LANG]))
    if base_missing:
        seconds += timings.get("base", TYPICAL_SECONDS["base"])
    return seconds


class BuildProgress:
    """Prints each progress line with the time spent and the estimated time left."""

    def __init__(
        self, estimate: float, out: TextIO, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._estimate = estimate
        self._out = out
        self._clock = clock
        self._started = clock()

    def __call__(self, line: str) -> None:
        spent = self._clock() - self._started
        left = self._estimate - spent
        ahead = f"~{_minutes(left)} left" if left >= 1 else "finishing"
        print(f"[{_minutes(spent)} spent, {ahead}] {line}", file=self._out, flush=True)


def _minutes(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


async def ensure_first_image(
    config: Config,
    *,
    lang: str = DEFAULT_LANG,
    lister: Lister | None = None,
    builder: Builder = build_images,
    out: TextIO = sys.stderr,
) -> bool:
    """Build `lang`'s image when no kernel image exists; True when it built one. A
    Docker that does not answer, or a build that fails, is reported and the start goes
    on (the agent reports an engine it cannot reach)."""
    timeouts = config.images
    try:
        images = await (lister or (lambda: list_images(timeout=timeouts.inspect_timeout)))()
    except BuildError as exc:
        print(f"crucible: cannot list the kernel images: {exc}", file=out)
        return False
    if not needs_first_build(images):
        return False
    suite = config.images.base_suite
    recipe = lang_recipes(suite)[lang]
    base = BaseRecipe(suite=suite, mirror=config.images.debian_mirror)
    try:
        base_missing = await image_id(base.ref, timeout=timeouts.inspect_timeout) is None
    except (BuildError, OSError):
        base_missing = True
    timings = await trio.to_thread.run_sync(load_timings, config.state_path)
    estimate = estimate_seconds(timings, lang, base_missing=base_missing)
    print(
        f"crucible: no kernel image here yet: building {recipe.ref} first "
        f"(about {_minutes(estimate)} min; `crucible up --no-build` skips this)",
        file=out,
        flush=True,
    )
    progress = BuildProgress(estimate, out)
    try:
        results: list[BuildResult] = await builder(
            [recipe], base, config.state_path, progress=progress, timeouts=timeouts
        )
    except BuildError as exc:
        print(f"crucible: building {recipe.ref} failed: {exc}", file=out, flush=True)
        return False
    await trio.to_thread.run_sync(save_timings, config.state_path, results, lang)
    progress(f"{recipe.ref} is ready")
    return True
