"""The ``crucible`` command."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import trio
import trio_asyncio

from crucible import __version__
from crucible.config import (
    UP_POOL_SIZES,
    Config,
    ConfigError,
    load_config,
    standalone_agent_problems,
)
from crucible.db import open_database
from crucible.keypairs import Keypair, KeypairNotFound, KeypairRepository, NewKeypair

EXIT_USAGE = 2


def _add_common(
    parser: argparse.ArgumentParser, *, bind: bool = False, top_level: bool = False
) -> None:
    # Accepted before and after the subcommand; on subcommands a missing option must not
    # overwrite a value given before it, hence SUPPRESS there.
    default = None if top_level else argparse.SUPPRESS
    parser.add_argument(
        "--config", "-f", type=Path, default=default, help="TOML configuration file"
    )
    parser.add_argument(
        "--state-dir", default=default, help="directory for local state (embedded database, ...)"
    )
    if bind:
        parser.add_argument("--bind", help="HOST:PORT to listen on (default 127.0.0.1:8081)")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    if getattr(args, "state_dir", None):
        overrides["state_dir"] = args.state_dir
    if getattr(args, "bind", None):
        overrides["manager"] = {"bind": args.bind}
    return overrides


def _setup_logging(config: Config) -> None:
    logging.basicConfig(
        level=config.logging.level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _run_with_database(config: Config, job: Callable[[KeypairRepository], Awaitable[int]]) -> int:
    async def main() -> int:
        async with trio_asyncio.open_loop(), open_database(config) as db:
            return await job(KeypairRepository(db))

    return trio.run(main)


def cmd_up(args: argparse.Namespace, config: Config) -> int:
    from crucible.agent.accelerators import open_accelerators
    from crucible.agent.images.first_run import ensure_first_image
    from crucible.daemon import serve_manager
    from crucible.local_agent import agent_argv

    # The agent's own process would refuse these (a plugin not installed, a table it
    # rejects): say so here, before anything starts, as a problem of the file (exit 2).
    open_accelerators(config)

    # The agent's process reads the same configuration this one did.
    options = [f"--config={args.config}"] if getattr(args, "config", None) else []
    if getattr(args, "state_dir", None):
        options.append(f"--state-dir={args.state_dir}")

    def agent_command(urls: list[str]) -> list[str]:
        return agent_argv(sys.argv[0], options, urls)

    if not args.no_build:
        # A fresh machine: build the default image first, so that the server that
        # comes up can run code (progress on stderr: stdout carries the keys).
        trio.run(ensure_first_image, config)

    trio.run(
        lambda: serve_manager(
            config,
            with_agent=True,
            print_keys=True,
            keep_sessions=args.keep_sessions,
            agent_command=agent_command,
        )
    )
    return 0


def cmd_up_agent(args: argparse.Namespace, config: Config) -> int:
    from crucible.daemon import serve_local_agent

    trio.run(serve_local_agent, config, list(args.manager_url))
    return 0


def cmd_manager(args: argparse.Namespace, config: Config) -> int:
    from crucible.daemon import serve_manager

    trio.run(lambda: serve_manager(config, with_agent=False, print_keys=False))
    return 0


def cmd_agent(args: argparse.Namespace, config: Config) -> int:
    from crucible.daemon import serve_agent

    trio.run(serve_agent, config)
    return 0


def _keypair_json(kp: Keypair, *, secret: bool) -> dict[str, Any]:
    data = {
        "access_key": kp.access_key,
        "user_id": kp.user_id,
        "is_active": kp.is_active,
        "is_admin": kp.is_admin,
        "resource_policy": kp.resource_policy,
        "concurrency_limit": kp.concurrency_limit,
        "rate_limit": kp.rate_limit,
        "num_queries": kp.num_queries,
        "last_used": kp.last_used.isoformat() if kp.last_used else None,
        "created_at": kp.created_at.isoformat(),
    }
    if secret:
        data["secret_key"] = kp.secret_key
    return data


def cmd_keypair_create(args: argparse.Namespace, config: Config) -> int:
    async def job(repo: KeypairRepository) -> int:
        new = NewKeypair(
            args.user_id,
            is_admin=args.admin,
            is_active=not args.inactive,
            concurrency_limit=args.concurrency_limit or config.keypairs.concurrency_limit,
            rate_limit=args.rate_limit or config.ratelimit.default_keypair_limit,
        )
        kp = await repo.create(new)
        if args.json:
            print(json.dumps(_keypair_json(kp, secret=True)))
        else:
            print(f"BACKEND_ACCESS_KEY={kp.access_key}")
            print(f"BACKEND_SECRET_KEY={kp.secret_key}")
        return 0

    return _run_with_database(config, job)


def cmd_keypair_list(args: argparse.Namespace, config: Config) -> int:
    async def job(repo: KeypairRepository) -> int:
        keypairs = await repo.list(user_id=args.user_id)
        if args.json:
            print(json.dumps([_keypair_json(kp, secret=False) for kp in keypairs]))
            return 0
        print(
            f"{'ACCESS KEY':<20}  {'USER':<24} {'ACTIVE':<6} {'ADMIN':<5} "
            f"{'CONC':>4} {'RATE':>6} {'QUERIES':>8}"
        )
        for kp in keypairs:
            print(
                f"{kp.access_key:<20}  {kp.user_id:<24} {'yes' if kp.is_active else 'no':<6} "
                f"{'yes' if kp.is_admin else 'no':<5} {kp.concurrency_limit:>4} "
                f"{kp.rate_limit:>6} {kp.num_queries:>8}"
            )
        return 0

    return _run_with_database(config, job)


def _cmd_set_active(active: bool) -> Callable[[argparse.Namespace, Config], int]:
    def command(args: argparse.Namespace, config: Config) -> int:
        async def job(repo: KeypairRepository) -> int:
            try:
                kp = await repo.set_active(args.access_key, active)
            except KeypairNotFound:
                print(f"crucible: no keypair {args.access_key}", file=sys.stderr)
                return 1
            state = "active" if kp.is_active else "inactive"
            print(f"{kp.access_key} is now {state}")
            return 0

        return _run_with_database(config, job)

    return command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crucible", description="Run untrusted code behind the Backend.AI API v4."
    )
    parser.add_argument("--version", action="version", version=f"crucible {__version__}")
    _add_common(parser, top_level=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="start everything one machine needs, in the foreground")
    _add_common(up, bind=True)
    up.add_argument(
        "--keep-sessions",
        action="store_true",
        help="leave sessions running on stop (the next start recovers them)",
    )
    up.add_argument(
        "--no-build",
        action="store_true",
        help="do not build the python kernel image when no kernel image exists",
    )
    # Unless the file says otherwise, `crucible up` keeps two Python kernels warm.
    up.set_defaults(func=cmd_up, command_defaults={"pool": {"sizes": dict(UP_POOL_SIZES)}})

    # Not listed: the agent process `crucible up` starts (crucible.local_agent).
    up_agent = sub.add_parser("up-agent")
    _add_common(up_agent)
    up_agent.add_argument("--manager-url", action="append", required=True)
    up_agent.set_defaults(func=cmd_up_agent)

    manager = sub.add_parser("manager", help="run the manager alone (for a cluster)")
    _add_common(manager, bind=True)
    manager.set_defaults(func=cmd_manager)

    agent = sub.add_parser("agent", help="run an agent that registers with the managers")
    _add_common(agent)
    agent.set_defaults(func=cmd_agent, requires=standalone_agent_problems)

    keypair = sub.add_parser("keypair", help="manage keypairs in the configured database")
    ksub = keypair.add_subparsers(dest="keypair_command", required=True, metavar="ACTION")
    create = ksub.add_parser("create", help="create a keypair and print its keys")
    _add_common(create)
    create.add_argument("user_id")
    create.add_argument("--admin", action="store_true", help="make it an administrator")
    create.add_argument("--inactive", action="store_true", help="create it deactivated")
    create.add_argument("--concurrency-limit", type=int, help="maximum live sessions")
    create.add_argument("--rate-limit", type=int, help="requests per 15 minutes")
    create.add_argument("--json", action="store_true", help="print JSON")
    create.set_defaults(func=cmd_keypair_create)
    listing = ksub.add_parser("list", help="list keypairs (secret keys are never shown)")
    _add_common(listing)
    listing.add_argument("--user-id", help="only this user's keypairs")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=cmd_keypair_list)
    for name, active in (("activate", True), ("deactivate", False)):
        action = ksub.add_parser(name, help=f"{name} a keypair")
        _add_common(action)
        action.add_argument("access_key")
        action.set_defaults(func=_cmd_set_active(active))
    from crucible.agent.images.cli import register as register_images  # lazy: keeps startup light

    register_images(sub)
    from crucible.tunnel_client import register as register_app

    register_app(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    source = str(args.config) if args.config else "<defaults>"
    try:
        config = load_config(
            args.config, _overrides(args), command_defaults=getattr(args, "command_defaults", None)
        )
        requires: Callable[[Config], list[str]] | None = getattr(args, "requires", None)
        if requires is not None and (problems := requires(config)):
            # What this command needs beyond a valid file, said the same way.
            raise ConfigError(source, problems)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    _setup_logging(config)
    try:
        return _run_command(args, config, source)
    except KeyboardInterrupt:
        return 130


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _run_command(args: argparse.Namespace, config: Config, source: str) -> int:
    from crucible.errors import StartupError

    result = 1
    try:
        result = args.func(args, config)
    except* StartupError as group:
        # Nurseries wrap it in an exception group; the operator needs only the message.
        for exc in _leaves(group):
            print(f"crucible: {exc}", file=sys.stderr)
    except* ConfigError as group:
        # Found while starting (a storage plugin refusing its host): a configuration
        # problem all the same, reported as one line per problem against the file.
        for exc in _leaves(group):
            assert isinstance(exc, ConfigError)
            for problem in exc.problems:
                print(f"{source}: {problem}", file=sys.stderr)
        result = EXIT_USAGE
    return result
