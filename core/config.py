"""Configuration: one TOML file validated into frozen attrs classes.

Every problem in the file is reported at once as ``file: a.b.c: message`` (see
`ConfigError`); unknown keys are errors, so a typo never passes silently. Secrets are
kept out of reprs.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NewType

import attrs
import cattrs

PositiveInt = NewType("PositiveInt", int)
NonNegativeInt = NewType("NonNegativeInt", int)
PositiveFloat = NewType("PositiveFloat", float)
NonNegativeFloat = NewType("NonNegativeFloat", float)
HostPort = NewType("HostPort", str)
LogLevel = NewType("LogLevel", str)
PathPrefix = NewType("PathPrefix", str)
AccessKey = NewType("AccessKey", str)
SecretKey = NewType("SecretKey", str)

ACCESS_KEY_RE = re.compile(r"^[A-Z0-9]{20}$")
SECRET_KEY_RE = re.compile(r"^[A-Za-z0-9_\-/+=]{40}$")
MiB = 1024 * 1024

DEFAULT_BIND = "127.0.0.1:8081"


def default_state_dir() -> str:
    return str(Path("~/.local/state/crucible").expanduser())


@attrs.frozen
class ManagerConfig:
    #: Address the API listens on, ``HOST:PORT``.
    bind: HostPort = HostPort(DEFAULT_BIND)
    #: The ``host[:port]`` clients sign requests with, when a reverse proxy rewrites the
    #: ``Host`` header; empty means "trust the Host header".
    public_host: str = ""
    #: Path prefix of the public endpoint (e.g. ``/api``), stripped by a proxy or not.
    path_prefix: PathPrefix = PathPrefix("")
    #: Largest request body accepted by ordinary endpoints (413 beyond).
    max_body_bytes: PositiveInt = PositiveInt(32 * MiB)
    #: Longest accepted value of any authentication header.
    max_auth_header_bytes: PositiveInt = PositiveInt(1024)
    #: Largest allowed difference between the client's Date and ours (spec 2.5).
    clock_skew_seconds: PositiveInt = PositiveInt(900)
    #: How long a graceful stop may take before connections are cut.
    shutdown_timeout: PositiveFloat = PositiveFloat(5.0)
    #: Seconds a client may take to send its request body.
    body_timeout: PositiveFloat = PositiveFloat(60.0)


@attrs.frozen
class DatabaseConfig:
    #: ``postgresql://...`` of an external server; empty starts the embedded one.
    dsn: str = attrs.field(default="", repr=False)
    pool_min_size: PositiveInt = PositiveInt(1)
    pool_max_size: PositiveInt = PositiveInt(10)
    connect_timeout: PositiveFloat = PositiveFloat(10.0)
    command_timeout: PositiveFloat = PositiveFloat(30.0)


@attrs.frozen
class AuthConfig:
    #: Seconds a keypair lookup is cached in one manager process. A keypair deactivated
    #: elsewhere (CLI, another manager) stops working after at most this long.
    keypair_cache_ttl: PositiveFloat = PositiveFloat(2.0)
    #: Seconds between writes of ``last_used`` / ``num_queries`` to the database.
    usage_flush_interval: PositiveFloat = PositiveFloat(1.0)


@attrs.frozen
class RateLimitConfig:
    #: Rolling window, seconds (spec 3 fixes it at 900).
    window: PositiveInt = PositiveInt(900)
    #: Requests per window per client IP for public endpoints and failed authentication.
    public_limit: PositiveInt = PositiveInt(3000)
    #: ``rate_limit`` of keypairs created without one.
    default_keypair_limit: PositiveInt = PositiveInt(5000)


@attrs.frozen
class KeypairDefaultsConfig:
    concurrency_limit: PositiveInt = PositiveInt(5)


@attrs.frozen
class BootstrapConfig:
    """The admin keypair created on first start (random when left empty)."""

    access_key: str = ""
    secret_key: str = attrs.field(default="", repr=False)
    user_id: str = "admin@localhost"


@attrs.frozen
class ClusterConfig:
    #: Shared secret that agents present to managers. Empty: ``crucible up`` generates
    #: one into ``<state_dir>/cluster.secret``; a multi-host cluster must set it.
    secret: str = attrs.field(default="", repr=False)
    #: The manager <-> agent link (docs/security.md): messages travel in frames of at
    #: most this many bytes of payload (1 KiB to 1 MiB), so no frame nears a WebSocket
    #: limit, whatever the message holds.
    link_frame_bytes: PositiveInt = PositiveInt(256 * 1024)
    #: Largest message either side takes (a call, a reply); a larger one fails its call.
    link_max_message_bytes: PositiveInt = PositiveInt(32 * MiB)
    #: Messages one side sends interleaved, or takes in part, at once.
    link_max_partial_messages: PositiveInt = PositiveInt(8)
    #: Seconds one frame may take to go out before the link is dropped and redialled.
    link_send_timeout: PositiveFloat = PositiveFloat(30.0)


@attrs.frozen
class AgentConfig:
    #: This agent's id, unique per Docker engine; empty: host name + digest of state_dir.
    id: str = ""
    #: WebSocket URLs of the managers to register with; empty means the local manager.
    manager_urls: list[str] = attrs.Factory(list)
    heartbeat_interval: PositiveFloat = PositiveFloat(3.0)
    #: Capacity to offer; 0 means "detect from the host".
    cpu_cores: NonNegativeInt = NonNegativeInt(0)
    #: Sessions may together be promised this many times the cores: most sessions idle
    #: most of the time, and each still gets a hard CPU quota of what it asked for.
    cpu_overcommit: PositiveFloat = PositiveFloat(4.0)
    memory_bytes: NonNegativeInt = NonNegativeInt(0)
    #: Per-kernel limits every container gets, whatever the image asks.
    pids_limit: PositiveInt = PositiveInt(256)
    scratch_size_bytes: PositiveInt = PositiveInt(256 * MiB)
    tmp_size_bytes: PositiveInt = PositiveInt(64 * MiB)
    #: Upper bound on any image's per-run time limit (``ai.backend.timeout``), seconds;
    #: 0 means "the image decides".
    max_exec_seconds: NonNegativeInt = NonNegativeInt(0)
    #: Timeout of one Docker engine call, and how many may run at once.
    docker_timeout: PositiveFloat = PositiveFloat(60.0)
    docker_concurrency: PositiveInt = PositiveInt(8)
    #: Execution limits (docs/security.md, "Execution limits"). Per kernel: runs queued
    #: behind the executing one, and the characters of their code together (beyond
    #: either the next run is refused, 429 execution-queue-full).
    run_queue_length: PositiveInt = PositiveInt(64)
    run_queue_chars: PositiveInt = PositiveInt(64 * MiB)
    #: Per kernel: runs started per second, sustained, and how many may start back to
    #: back after a quiet spell (a token bucket).
    run_start_rate: PositiveFloat = PositiveFloat(100.0)
    run_start_burst: PositiveInt = PositiveInt(500)
    #: Per agent: runs executing at once, over all kernels; a slot that frees goes to the
    #: access key holding the fewest (then to the one served least recently).
    concurrent_runs: PositiveInt = PositiveInt(64)
    #: Seconds a cancelled run has to end after its interrupt before it is killed (and
    #: again after the kill before its kernel is ended).
    run_cancel_grace: PositiveFloat = PositiveFloat(2.0)
    #: Seconds a queued or running run may go with no execute call waiting on it before
    #: it is cancelled (its client is gone); 0 never cancels.
    uncollected_run_timeout: NonNegativeFloat = NonNegativeFloat(120.0)
    #: Seconds a new container's runner may take to dial the agent, and how long a
    #: restarted agent waits for the runners of the kernels it recovers.
    runner_start_timeout: PositiveFloat = PositiveFloat(30.0)
    runner_recover_timeout: PositiveFloat = PositiveFloat(10.0)
    #: Each container's log on the host (Docker's json-file driver): files of at most
    #: this many bytes, this many files kept; and the most one logs call returns.
    container_log_max_bytes: PositiveInt = PositiveInt(4 * MiB)
    container_log_files: PositiveInt = PositiveInt(2)
    logs_max_bytes: PositiveInt = PositiveInt(64 * 1024)
    #: Output one execute call hands out: each of stdout and stderr in bytes of UTF-8
    #: (spec 4.6's 524,288, counted in bytes), and all other items (html, media, log)
    #: together, in bytes of JSON. Beyond them output is dropped, with a note.
    stream_output_bytes: PositiveInt = PositiveInt(524_288)
    rich_output_bytes: PositiveInt = PositiveInt(4 * MiB)
    #: Output the agent holds for runs nobody has collected yet, per session and in
    #: total; finished runs' output is discarded first when a limit is reached.
    session_output_bytes: PositiveInt = PositiveInt(16 * MiB)
    total_output_bytes: PositiveInt = PositiveInt(256 * MiB)


@attrs.frozen
class SessionsConfig:
    #: Seconds without an API call before a session is reaped; 0 disables the reaper.
    idle_timeout: NonNegativeInt = NonNegativeInt(1800)
    #: Resources a session gets when neither the request nor the image says.
    default_cpu_cores: PositiveFloat = PositiveFloat(1.0)
    default_memory_bytes: PositiveInt = PositiveInt(512 * MiB)
    #: Hard caps on any request, whatever the image allows.
    max_cpu_cores: PositiveFloat = PositiveFloat(4.0)
    max_memory_bytes: PositiveInt = PositiveInt(4096 * MiB)
    #: Seconds an execute call waits before answering ``continued`` (spec 4.6).
    exec_flush_interval: PositiveFloat = PositiveFloat(2.0)
    #: A manager marks an agent lost after this many seconds without a heartbeat.
    agent_lost_after: PositiveFloat = PositiveFloat(15.0)


@attrs.frozen
class SchedulerConfig:
    #: Name of the scheduler plugin (entry-point group ``crucible.schedulers``).
    name: str = "fifo"


@attrs.frozen
class ImagesConfig:
    #: The Debian suite of the base image, and the mirror debootstrap fetches it from.
    base_suite: str = "bookworm"
    debian_mirror: str = "http://deb.debian.org/debian"


#: Names of storage hosts: how clients address them (vfolder create's ``host``).
STORAGE_HOST_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
GiB = 1024 * MiB
PluginOptions = NewType("PluginOptions", dict)  # type: ignore[type-arg]


@attrs.frozen
class StorageHostConfig:
    """One vfolder host: which storage plugin serves it, where, and per-folder quotas."""

    #: The storage plugin (entry-point group ``crucible.storage``), e.g. ``local``.
    type: str = "local"
    #: The plugin's root: for ``local`` a directory; empty means ``<state_dir>/vfolders``.
    path: str = ""
    #: Quotas of every folder created on this host.
    max_size_bytes: PositiveInt = PositiveInt(GiB)
    max_files: PositiveInt = PositiveInt(1000)
    #: Settings only a third-party plugin reads (validated by that plugin at start).
    options: PluginOptions = attrs.Factory(lambda: PluginOptions({}))


def _default_storage_hosts() -> dict[str, StorageHostConfig]:
    return {"local": StorageHostConfig()}


@attrs.frozen
class StorageConfig:
    #: The host of folders created without one; empty: ``host`` is then required.
    default_host: str = "local"
    #: Hosts by name. Listing any replaces the default ``local`` host.
    hosts: dict[str, StorageHostConfig] = attrs.Factory(_default_storage_hosts)
    #: Seconds between samples of each owner's folder sizes for usage statistics.
    usage_record_interval: PositiveFloat = PositiveFloat(300.0)


@attrs.frozen
class GraphQLConfig:
    """Bounds on one admin GraphQL request, checked before any SQL runs."""

    #: Longest accepted query document, bytes (400 beyond).
    max_query_bytes: PositiveInt = PositiveInt(65536)
    #: Most lexical tokens in one document (bounds parsing and validation work).
    max_tokens: PositiveInt = PositiveInt(10000)
    #: Deepest nesting of selection sets (and of brackets anywhere in the document).
    max_depth: PositiveInt = PositiveInt(10)
    #: Most fields one query may select once fragments are expanded (aliases and fragment
    #: spreads can otherwise multiply a small document into a huge amount of work).
    max_fields: PositiveInt = PositiveInt(2000)


@attrs.frozen
class LimitsConfig:
    """Bounds on what one API request may carry, checked before the database, an agent
    or Docker sees it. A body over `max_json_body_bytes` is 413 request-too-large; a
    field, list or map over its bound is 400 invalid-api-params naming the field and
    the limit (docs/security.md lists every bound, these and the fixed ones)."""

    #: Largest JSON request body, bytes (multipart uploads have their own bounds).
    max_json_body_bytes: PositiveInt = PositiveInt(2 * MiB)
    #: Deepest nesting of arrays and objects in a JSON body (or a stream frame).
    max_json_depth: PositiveInt = PositiveInt(32)
    #: ``code`` of one execute or complete request, and one input text, UTF-8 bytes.
    max_code_bytes: PositiveInt = PositiveInt(256 * 1024)
    #: Each string in ``options`` (batch commands, completion context), UTF-8 bytes.
    max_option_bytes: PositiveInt = PositiveInt(8 * 1024)
    #: ``config.environ`` of a new session: entries, bytes of one name, of one value,
    #: and of all names and values together.
    max_environ_entries: PositiveInt = PositiveInt(64)
    max_environ_name_bytes: PositiveInt = PositiveInt(256)
    max_environ_value_bytes: PositiveInt = PositiveInt(32 * 1024)
    max_environ_bytes: PositiveInt = PositiveInt(64 * 1024)
    #: User ids one folder invitation may name.
    max_invitees: PositiveInt = PositiveInt(64)
    #: Files one folder upload, download or delete_files request may name.
    max_folder_files: PositiveInt = PositiveInt(100)


@attrs.frozen
class ResourcePolicyConfig:
    """One ``[resource_policies.NAME]`` table; 0 means "no cap" for the optional caps."""

    #: Live sessions at once (a keypair's own ``concurrency_limit`` applies as well).
    max_concurrent_sessions: PositiveInt = PositiveInt(5)
    #: Cores / bytes of memory one session may get, and all live sessions together.
    max_cpu_cores: NonNegativeFloat = NonNegativeFloat(0.0)
    max_memory_bytes: NonNegativeInt = NonNegativeInt(0)
    #: Virtual folders the keypair may own, and the size of each.
    max_vfolder_count: NonNegativeInt = NonNegativeInt(0)
    max_vfolder_size_bytes: NonNegativeInt = NonNegativeInt(0)


def _default_resource_policies() -> dict[str, ResourcePolicyConfig]:
    # The policy the first migration seeds; new keypairs get it unless told otherwise.
    return {"default": ResourcePolicyConfig()}


@attrs.frozen
class LoggingConfig:
    level: LogLevel = LogLevel("INFO")


@attrs.frozen
class Config:
    #: Where the embedded database, the client.env file and other local state live.
    state_dir: str = attrs.field(factory=default_state_dir)
    manager: ManagerConfig = attrs.Factory(ManagerConfig)
    database: DatabaseConfig = attrs.Factory(DatabaseConfig)
    auth: AuthConfig = attrs.Factory(AuthConfig)
    ratelimit: RateLimitConfig = attrs.Factory(RateLimitConfig)
    keypairs: KeypairDefaultsConfig = attrs.Factory(KeypairDefaultsConfig)
    bootstrap: BootstrapConfig = attrs.Factory(BootstrapConfig)
    cluster: ClusterConfig = attrs.Factory(ClusterConfig)
    agent: AgentConfig = attrs.Factory(AgentConfig)
    sessions: SessionsConfig = attrs.Factory(SessionsConfig)
    scheduler: SchedulerConfig = attrs.Factory(SchedulerConfig)
    images: ImagesConfig = attrs.Factory(ImagesConfig)
    storage: StorageConfig = attrs.Factory(StorageConfig)
    graphql: GraphQLConfig = attrs.Factory(GraphQLConfig)
    limits: LimitsConfig = attrs.Factory(LimitsConfig)
    #: Policies synced into the ``resource_policies`` table at start-up (TOML wins for
    #: the names it lists; policies made through the admin API are left alone).
    resource_policies: dict[str, ResourcePolicyConfig] = attrs.Factory(_default_resource_policies)
    logging: LoggingConfig = attrs.Factory(LoggingConfig)

    @property
    def state_path(self) -> Path:
        return Path(self.state_dir).expanduser()


class ConfigError(Exception):
    """All problems found in one configuration source, each as ``a.b.c: message``."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


# -- strict scalar hooks -------------------------------------------------------------------
# cattrs' defaults coerce ("3" → 3, "no" → True); a config file should say what it means.


def _strict(kind: type, *, allow: tuple[type, ...] = ()) -> Any:
    def hook(value: Any, _: Any) -> Any:
        if isinstance(value, bool) and kind is not bool:
            raise ValueError(f"expected {kind.__name__}, got a boolean")
        if not isinstance(value, (kind, *allow)):
            raise ValueError(f"expected {kind.__name__}, got {type(value).__name__}")
        return kind(value)

    return hook


def _checked(base: Any, check: Any, message: str) -> Any:
    def hook(value: Any, _: Any) -> Any:
        value = base(value, None)
        if not check(value):
            raise ValueError(message)
        return value

    return hook


def _valid_host_port(value: str) -> bool:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        return False
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return re.fullmatch(r"[A-Za-z0-9.-]+", host) is not None
    return True


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True)
    strict_int = _strict(int)
    strict_float = _strict(float, allow=(int,))
    strict_str = _strict(str)
    conv.register_structure_hook(int, strict_int)
    conv.register_structure_hook(float, strict_float)
    conv.register_structure_hook(str, strict_str)
    conv.register_structure_hook(bool, _strict(bool))
    conv.register_structure_hook(
        PositiveInt, _checked(strict_int, lambda v: v > 0, "must be a positive integer")
    )
    conv.register_structure_hook(
        NonNegativeInt, _checked(strict_int, lambda v: v >= 0, "must be zero or more")
    )
    conv.register_structure_hook(
        PositiveFloat, _checked(strict_float, lambda v: v > 0, "must be a positive number")
    )
    conv.register_structure_hook(
        NonNegativeFloat,
        _checked(strict_float, lambda v: 0 <= v < float("inf"), "must be zero or more"),
    )
    conv.register_structure_hook(
        HostPort, _checked(strict_str, _valid_host_port, "must be HOST:PORT")
    )
    conv.register_structure_hook(
        LogLevel,
        _checked(
            strict_str,
            lambda v: v.upper() in logging.getLevelNamesMapping(),
            "must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL",
        ),
    )
    conv.register_structure_hook(
        PathPrefix,
        _checked(
            strict_str,
            lambda v: v == "" or (v.startswith("/") and not v.endswith("/")),
            "must be empty or start with '/' and not end with '/'",
        ),
    )
    conv.register_structure_hook(PluginOptions, _plugin_options)
    return conv


def _plugin_options(value: Any, _: Any) -> Any:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ValueError("expected a table")
    return PluginOptions(dict(value))


_CONVERTER = _make_converter()
_EXTRA_RE = re.compile(r"^extra fields found \((?P<names>.*)\) @ (?P<path>.*)$")


def _path_to_dotted(path: str) -> str:
    path = path.removeprefix("$").removeprefix(".")
    # Keys of dict-valued tables (storage.hosts) read as TOML writes them: a.b.NAME.c.
    path = re.sub(r"\['([^']*)'\]", r".\1", path)
    return path or "(top level)"


def _readable(messages: list[str]) -> list[str]:
    problems = []
    for message in messages:
        if match := _EXTRA_RE.match(message):
            base = _path_to_dotted(match["path"])
            for name in match["names"].split(", "):
                key = name if base == "(top level)" else f"{base}.{name}"
                problems.append(f"{key}: unknown key")
            continue
        text, _, path = message.rpartition(" @ ")
        text = text.removeprefix("invalid value for type, ")
        problems.append(f"{_path_to_dotted(path)}: {text}")
    return problems


def _format_exception(exc: BaseException, type_: Any) -> str:
    if isinstance(exc, KeyError):
        return "required key missing"
    if isinstance(exc, ValueError):
        return str(exc)
    return cattrs.v.format_exception(exc, type_)


def _extra_checks(config: Config) -> list[str]:
    problems = []
    boot = config.bootstrap
    if boot.access_key and not ACCESS_KEY_RE.match(boot.access_key):
        problems.append("bootstrap.access_key: must be 20 upper-case letters or digits")
    if boot.secret_key and not SECRET_KEY_RE.match(boot.secret_key):
        problems.append("bootstrap.secret_key: must be 40 URL-safe base64 characters")
    if bool(boot.access_key) != bool(boot.secret_key):
        problems.append("bootstrap: access_key and secret_key must be given together")
    db = config.database
    if db.dsn and not db.dsn.startswith(("postgresql://", "postgres://")):
        problems.append("database.dsn: must be a postgresql:// URL")
    if db.pool_min_size > db.pool_max_size:
        problems.append("database.pool_min_size: must not exceed pool_max_size")
    for name in config.resource_policies:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name):
            problems.append(
                f"resource_policies.{name}: the name must be 1-64 letters, digits, '_', '.', '-'"
            )
    problems += _link_checks(config)
    storage = config.storage
    for name in storage.hosts:
        if not STORAGE_HOST_NAME_RE.match(name):
            problems.append(f"storage.hosts.{name}: a host name is 1-64 letters, digits, '._-'")
    if storage.default_host and storage.default_host not in storage.hosts:
        problems.append("storage.default_host: must name one of storage.hosts (or be empty)")
    return problems


#: JSON may escape one byte of stream text into six (``\u0001``); other items are
#: counted as JSON already. A result has some structure (and notes) around its output.
JSON_EXPANSION = 6
RESULT_OVERHEAD_BYTES = 64 * 1024


def worst_case_result_bytes(agent: AgentConfig) -> int:
    """The largest one execute result can be on the link, given the output caps."""
    streams = JSON_EXPANSION * 2 * agent.stream_output_bytes
    return streams + agent.rich_output_bytes + RESULT_OVERHEAD_BYTES


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


def deep_merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Return `base` with `overrides` laid over it, merging nested tables."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def config_from_dict(data: Mapping[str, Any], *, source: str = "<config>") -> Config:
    """Validate a parsed TOML document; raise `ConfigError` listing every problem."""
    try:
        config = _CONVERTER.structure(dict(data), Config)
    except cattrs.BaseValidationError as exc:
        messages = cattrs.transform_error(exc, path="$", format_exception=_format_exception)
        raise ConfigError(source, _readable(messages)) from None
    if problems := _extra_checks(config):
        raise ConfigError(source, problems)
    return config


def load_config(path: Path | None, overrides: Mapping[str, Any] | None = None) -> Config:
    """Read `path` (or nothing: all defaults), apply command-line `overrides`, validate."""
    data: dict[str, Any] = {}
    source = str(path) if path else "<defaults>"
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(source, [f"cannot read: {exc.strerror}"]) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(source, [f"not valid TOML: {exc}"]) from None
    return config_from_dict(deep_merge(data, overrides or {}), source=source)
