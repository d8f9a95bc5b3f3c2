"""``crucible images build|list``: build kernel images and show the installed ones."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import trio

from crucible.agent.images.builder import build_images
from crucible.agent.images.commands import BuildError
from crucible.agent.images.inventory import list_images
from crucible.agent.images.recipes import BaseRecipe, lang_recipes
from crucible.agent.images.suites import UnsupportedSuite
from crucible.config import Config
from crucible.kernels.catalog import ImageInfo, aliases_of
from crucible.kernels.contract import LABEL_LANG

EXIT_FAILURE = 1
EXIT_USAGE = 2


def register(subparsers: Any) -> None:
    """Add the ``images`` command to the ``crucible`` parser's subcommands."""
    images = subparsers.add_parser("images", help="build and list kernel images")
    isub = images.add_subparsers(dest="images_command", required=True, metavar="ACTION")

    build = isub.add_parser(
        "build",
        help="build kernel images (and the base image they need)",
        description="Build kernel images; one whose recipe is unchanged is skipped in "
        "seconds. The first build runs debootstrap and apt-get (minutes).",
    )
    _add_common(build)
    build.add_argument(
        "langs",
        nargs="+",
        metavar="LANG",
        help="recipe names (python, c, cpp, nodejs, ...) or 'all'",
    )
    build.add_argument(
        "--rebuild",
        action="store_true",
        help="rebuild even unchanged images, without Docker's layer cache (picks up "
        "Debian updates)",
    )
    build.add_argument("--verbose", "-v", action="store_true", help="show every output line")
    build.set_defaults(func=cmd_images_build)

    listing = isub.add_parser("list", help="list the installed kernel images")
    _add_common(listing)
    listing.add_argument("--all", action="store_true", help="include the base image")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=cmd_images_list)


def _add_common(parser: argparse.ArgumentParser) -> None:
    # The same options as every other command (crucible.cli applies them to the config).
    parser.add_argument("--config", "-f", type=Path, help="TOML configuration file")
    parser.add_argument("--state-dir", help="directory for local state (debootstrap cache, ...)")


def _progress(line: str) -> None:
    print(line, flush=True)


def cmd_images_build(args: argparse.Namespace, config: Config) -> int:
    suite = config.images.base_suite
    try:
        recipes = lang_recipes(suite)
    except UnsupportedSuite as exc:
        print(f"crucible: {exc}", file=sys.stderr)
        return EXIT_USAGE
    names: list[str] = list(recipes) if "all" in args.langs else list(dict.fromkeys(args.langs))
    unknown = [name for name in names if name not in recipes]
    if unknown:
        print(
            f"crucible: no image recipe for {', '.join(unknown)} "
            f"(known: {', '.join(recipes)}, or 'all')",
            file=sys.stderr,
        )
        return EXIT_USAGE
    base = BaseRecipe(suite=suite, mirror=config.images.debian_mirror)

    async def main() -> int:
        results = await build_images(
            [recipes[name] for name in names],
            base,
            config.state_path,
            progress=_progress,
            verbose=args.verbose,
            force=args.rebuild,
            timeouts=config.images,
        )
        print()
        for result in results:
            print(f"{result.ref:<32} {result.outcome:<11} {result.seconds:7.1f} s")
        return 0

    try:
        return trio.run(main)
    except BuildError as exc:
        print(f"crucible: build failed: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def cmd_images_list(args: argparse.Namespace, config: Config) -> int:
    try:
        images = trio.run(
            lambda: list_images(include_base=args.all, timeout=config.images.inspect_timeout)
        )
    except BuildError as exc:
        print(f"crucible: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    rows = _rows(images)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "ref": ref,
                        "id": image.id,
                        "lang": image.labels.get(LABEL_LANG),
                        "aliases": list(aliases_of(image.labels)),
                        "size": image.size,
                        "created": image.created,
                        "labels": dict(image.labels),
                    }
                    for ref, image in rows
                ]
            )
        )
        return 0
    print(f"{'IMAGE':<32} {'LANG':<8} {'SIZE':>8}  {'CREATED':<16}  ALIASES")
    for ref, image in rows:
        lang = image.labels.get(LABEL_LANG, "-")
        aliases = ",".join(aliases_of(image.labels)) or "-"
        print(
            f"{ref:<32} {lang:<8} {format_size(image.size):>8}  "
            f"{format_created(image.created):<16}  {aliases}"
        )
    return 0


def _rows(images: list[ImageInfo]) -> list[tuple[str, ImageInfo]]:
    """One row per reference (an untagged image as ``<none>``), sorted by reference."""
    rows = [(ref, image) for image in images for ref in image.tags or ("<none>",)]
    return sorted(rows, key=lambda row: row[0])


def format_size(size: int) -> str:
    """Decimal units, as ``docker images`` prints them, so the two agree."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def format_created(created: str) -> str:
    """Docker's RFC 3339 timestamp (nanoseconds, ``Z``) as local ``YYYY-MM-DD HH:MM``."""
    try:
        # Python < 3.11 rejects 9 fractional digits; drop the fraction, it is not shown.
        moment = datetime.fromisoformat(created.split(".")[0].rstrip("Z") + "+00:00")
    except ValueError:
        return created
    return moment.astimezone().strftime("%Y-%m-%d %H:%M")
