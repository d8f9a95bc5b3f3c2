"""The runner's command line: ``--lang LANG --socket PATH [--workdir DIR]``, then serve.

Standard library only (Python 3.9+).
"""

from __future__ import annotations

import argparse
import os
import signal

from .languages import get_recipe
from .server import WORK_DIR, Runner, log


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="crucible-runner", description=__doc__)
    parser.add_argument("--lang", required=True, help="recipe name (image label crucible.lang)")
    parser.add_argument("--socket", required=True, help="the agent's unix socket to dial")
    parser.add_argument(
        "--workdir", default=WORK_DIR, help=f"where user code runs (default {WORK_DIR})"
    )
    return parser.parse_args(argv)


def serve(argv: list[str]) -> int:
    """Run the runner until it is told to stop."""
    args = parse_args(argv)
    workdir = os.path.abspath(args.workdir)
    os.makedirs(workdir, exist_ok=True)
    os.chdir(workdir)
    recipe = get_recipe(args.lang)
    if recipe.query == "none":
        log(f"language {args.lang!r}: batch mode only (no query recipe)")

    def _stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    runner = Runner(recipe, os.path.abspath(args.socket), workdir)
    try:
        runner.run()
    except (SystemExit, KeyboardInterrupt):
        pass
    return 0
