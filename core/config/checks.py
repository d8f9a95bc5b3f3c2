"""Checks that span keys (or need more than a type), run once the file is structured.

Each returns ``a.b.c: message`` lines; `crucible.config.loader` reports them all at once.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from crucible.config.agent import AgentConfig
from crucible.config.sections import Config
from crucible.config.types import ACCESS_KEY_RE, SECRET_KEY_RE, STORAGE_HOST_NAME_RE, MiB

#: JSON may escape one byte of stream text into six (``\u0001``); other items are
#: counted as JSON already. A result has some structure (and notes) around its output.
JSON_EXPANSION = 6
RESULT_OVERHEAD_BYTES = 64 * 1024

_POLICY_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def worst_case_result_bytes(agent: AgentConfig) -> int:
    """The largest one execute result can be on the link, given the output caps."""
    streams = JSON_EXPANSION * 2 * agent.stream_output_bytes
    return streams + agent.rich_output_bytes + RESULT_OVERHEAD_BYTES


def config_problems(config: Config) -> list[str]:
    """Every problem of `config` that its types alone do not rule out."""
    return [
        *_bootstrap_checks(config),
        *_database_checks(config),
        *_policy_checks(config),
        *_link_checks(config),
        *_storage_checks(config),
        *_manager_url_checks(config.agent),
        *_accelerator_checks(config),
    ]


def _accelerator_checks(config: Config) -> list[str]:
    names = config.agent.accelerators
    problems = [
        f"agent.accelerators: {name!r} is listed twice"
        for name in sorted({n for n in names if names.count(n) > 1})
    ]
    # A table nobody loads is most likely a typo of a name that is loaded.
    problems += [
        f"accelerators.{name}: no such plugin in agent.accelerators ({', '.join(names) or 'empty'})"
        for name in config.accelerators
        if name not in names
    ]
    return problems


def standalone_agent_problems(config: Config) -> list[str]:
    """What ``crucible agent`` needs beyond a valid file: managers to join, and the secret."""
    problems = []
    if not config.agent.manager_urls:
        problems.append("agent.manager_urls: crucible agent needs the managers' ws:// URLs")
    if not config.cluster.secret:
        problems.append("cluster.secret: crucible agent needs the managers' shared secret")
    return problems


def _bootstrap_checks(config: Config) -> list[str]:
    problems = []
    boot = config.bootstrap
    if boot.access_key and not ACCESS_KEY_RE.match(boot.access_key):
        problems.append("bootstrap.access_key: must be 20 upper-case letters or digits")
    if boot.secret_key and not SECRET_KEY_RE.match(boot.secret_key):
        problems.append("bootstrap.secret_key: must be 40 URL-safe base64 characters")
    if bool(boot.access_key) != bool(boot.secret_key):
        problems.append("bootstrap: access_key and secret_key must be given together")
    return problems


def _database_checks(config: Config) -> list[str]:
    problems = []
    db = config.database
    if db.dsn and not db.dsn.startswith(("postgresql://", "postgres://")):
        problems.append("database.dsn: must be a postgresql:// URL")
    if db.pool_min_size > db.pool_max_size:
        problems.append("database.pool_min_size: must not exceed pool_max_size")
    return problems


def _policy_checks(config: Config) -> list[str]:
    return [
        f"resource_policies.{name}: the name must be 1-64 letters, digits, '_', '.', '-'"
        for name in config.resource_policies
        if not _POLICY_NAME_RE.fullmatch(name)
    ]


def _link_checks(config: Config) -> list[str]:
    problems = []
    cluster = config.cluster
    if not 1024 <= cluster.link_frame_bytes <= MiB:
        problems.append("cluster.link_frame_bytes: must be between 1024 and 1048576")
    if worst_case_result_bytes(config.agent) > cluster.link_max_message_bytes:
        # Every execute result must fit the link by construction, not by luck.
        problems.append(
            "cluster.link_max_message_bytes: must be at least "
            f"{worst_case_result_bytes(config.agent)} to carry one execute result under "
            "agent.stream_output_bytes and agent.rich_output_bytes"
        )
    return problems


def _storage_checks(config: Config) -> list[str]:
    problems = []
    storage = config.storage
    for name in storage.hosts:
        if not STORAGE_HOST_NAME_RE.match(name):
            problems.append(f"storage.hosts.{name}: a host name is 1-64 letters, digits, '._-'")
    if storage.default_host and storage.default_host not in storage.hosts:
        problems.append("storage.default_host: must name one of storage.hosts (or be empty)")
    return problems


def _manager_url_checks(agent: AgentConfig) -> list[str]:
    problems = []
    for index, url in enumerate(agent.manager_urls):
        if (problem := manager_url_problem(url)) is not None:
            problems.append(f"agent.manager_urls[{index}]: {problem}")
    return problems


def manager_url_problem(url: str) -> str | None:
    """Why `url` is not a manager address an agent can dial, or None."""
    shown = repr(url) if len(url) <= 200 else repr(url[:200] + "...")
    if not url.isprintable() or any(c.isspace() for c in url):
        return f"{shown} is not a URL (spaces or control characters)"
    try:
        parts = urlsplit(url)
        port = parts.port  # an out-of-range or non-numeric port raises here
    except ValueError as exc:
        return f"{shown} is not a URL ({exc})"
    if parts.scheme in ("http", "https"):
        # The agent link is a WebSocket: the same host and port, under ws:// or wss://.
        ws = "ws" if parts.scheme == "http" else "wss"
        return f"{shown} must be a WebSocket URL: write {ws}://{parts.netloc}{parts.path}"
    if parts.scheme not in ("ws", "wss"):
        return f"{shown} must be a ws:// or wss:// URL"
    if not parts.hostname:
        return f"{shown} names no host"
    if parts.username is not None or parts.password is not None:
        return f"{shown} must not carry a user or password (agents use cluster.secret)"
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        return f"{shown} must not have a query or fragment"
    if port == 0:
        return f"{shown} names port 0"
    return None
