"""The sections of the configuration, and `Config`, the whole file.

One frozen attrs class per TOML table; the comment above a key is its documentation
(``crucible.example.toml`` repeats it, with the default).
"""

from __future__ import annotations

from pathlib import Path

import attrs

from crucible.config.agent import AgentConfig, ImagesConfig
from crucible.config.pool import PoolConfig
from crucible.config.types import (
    DEFAULT_BIND,
    Delays,
    GiB,
    HostPort,
    LocalPath,
    LogLevel,
    MiB,
    NonNegativeFloat,
    NonNegativeInt,
    PathPrefix,
    PluginOptions,
    PositiveFloat,
    PositiveInt,
    absolute_path,
    default_state_dir,
)


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
    #: Seconds an idle HTTP connection is kept open for the client's next request.
    keep_alive_timeout: PositiveFloat = PositiveFloat(75.0)
    #: Seconds the rest of a request body is read and dropped after an early answer (a
    #: 413, a refused upload), so that a client still sending sees the answer.
    discard_body_timeout: PositiveFloat = PositiveFloat(30.0)
    #: Seconds ``crucible up`` waits for its local agent's first heartbeat (which says
    #: what images there are) before it prints the client's keys.
    local_agent_timeout: PositiveFloat = PositiveFloat(30.0)
    #: ``crucible up`` runs its agent in a process of its own (both cores busy); off,
    #: in the manager's process. Seconds that process may take to start (it recovers
    #: kernels first) and to stop before it is killed.
    local_agent_process: bool = True
    local_agent_start_timeout: PositiveFloat = PositiveFloat(120.0)
    local_agent_stop_timeout: PositiveFloat = PositiveFloat(15.0)


@attrs.frozen
class DatabaseConfig:
    #: ``postgresql://...`` of an external server; empty starts the embedded one.
    dsn: str = attrs.field(default="", repr=False)
    pool_min_size: PositiveInt = PositiveInt(1)
    pool_max_size: PositiveInt = PositiveInt(10)
    connect_timeout: PositiveFloat = PositiveFloat(10.0)
    command_timeout: PositiveFloat = PositiveFloat(30.0)
    #: Seconds the embedded PostgreSQL may take to start, and to stop.
    embedded_start_timeout: PositiveFloat = PositiveFloat(60.0)


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
    #: Seconds between sweeps that forget the windows of clients gone quiet.
    sweep_interval: PositiveFloat = PositiveFloat(60.0)


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
class SessionsConfig:
    #: Seconds without an API call before a session is reaped; 0 disables the reaper.
    idle_timeout: NonNegativeInt = NonNegativeInt(1800)
    #: Seconds between scans for idle sessions.
    reap_interval: PositiveFloat = PositiveFloat(10.0)
    #: Resources a session gets when neither the request nor the image says.
    default_cpu_cores: PositiveFloat = PositiveFloat(1.0)
    default_memory_bytes: PositiveInt = PositiveInt(512 * MiB)
    #: Hard caps on any request, whatever the image allows.
    max_cpu_cores: PositiveFloat = PositiveFloat(4.0)
    max_memory_bytes: PositiveInt = PositiveInt(4096 * MiB)
    #: GPUs (whole devices or shares of them, ``instanceGPUs``) one session may get at
    #: most; larger requests are capped to it. 0: no cap.
    max_gpus: NonNegativeFloat = NonNegativeFloat(8.0)
    #: Seconds an execute call waits before answering ``continued`` (spec 4.6), and the
    #: same for the streaming API's frames.
    exec_flush_interval: PositiveFloat = PositiveFloat(2.0)
    stream_flush_interval: PositiveFloat = PositiveFloat(0.2)
    #: Seconds between writes of sessions' last activity and execution counts.
    activity_flush_interval: PositiveFloat = PositiveFloat(1.0)
    #: Seconds a running session found for an execute is used from memory before its
    #: row is read again (0: read it every time), and how many sessions are held.
    live_cache_ttl: NonNegativeFloat = NonNegativeFloat(2.0)
    live_cache_entries: PositiveInt = PositiveInt(10000)
    #: A manager marks an agent lost after this many seconds without a heartbeat; it
    #: looks for such agents every `lost_scan_interval` seconds.
    agent_lost_after: PositiveFloat = PositiveFloat(15.0)
    lost_scan_interval: PositiveFloat = PositiveFloat(2.0)
    #: Seconds an agent may take to create (or restart) a kernel, and to answer any
    #: other call; an execute call may take `execute_call_margin` beyond its flush.
    create_timeout: PositiveFloat = PositiveFloat(120.0)
    agent_call_timeout: PositiveFloat = PositiveFloat(30.0)
    execute_call_margin: PositiveFloat = PositiveFloat(10.0)
    #: Seconds a manager waits for an agent to start a session's app (keep it above the
    #: agents' agent.service_start_timeout, so that their clearer error arrives first).
    service_call_timeout: PositiveFloat = PositiveFloat(90.0)
    #: Session events across managers (PostgreSQL LISTEN/NOTIFY): seconds between checks
    #: of the listening connection, and between attempts after a failure; how many
    #: outgoing events may wait while the database is unreachable.
    event_relay_check_interval: PositiveFloat = PositiveFloat(5.0)
    event_relay_retry_interval: PositiveFloat = PositiveFloat(1.0)
    event_relay_queue: PositiveInt = PositiveInt(1000)
    #: Seconds the agent may take to acknowledge the cancellation of a run whose client
    #: went away (waited for while the request ends, so keep it short).
    cancel_timeout: PositiveFloat = PositiveFloat(5.0)
    #: A running kernel that its agent's heartbeats stop listing ends after this many
    #: seconds of age (younger ones may still be in the making).
    missing_kernel_grace: PositiveFloat = PositiveFloat(30.0)
    #: Seconds ``crucible up`` may spend ending its sessions when it stops.
    shutdown_destroy_timeout: PositiveFloat = PositiveFloat(30.0)
    #: Seconds a new session that fits no agent waits in the queue (PENDING) before
    #: its create fails with 503 instance-not-available.
    pending_timeout: PositiveFloat = PositiveFloat(30.0)
    #: Seconds between safety passes over the queue: placement re-runs as soon as
    #: capacity frees (a session ends, an agent joins), this only covers a missed
    #: notification between managers.
    pending_recheck_interval: PositiveFloat = PositiveFloat(10.0)


@attrs.frozen
class StreamsConfig:
    #: Terminals and app tunnels (spec 5.3, 5.5; docs/internals.md, "Byte streams"):
    #: bytes each side of a stream may have in flight per direction before the other
    #: grants more (so a flood holds at most this much in the manager and the agent),
    #: and the largest piece one stream message carries.
    window_bytes: PositiveInt = PositiveInt(512 * 1024)
    chunk_bytes: PositiveInt = PositiveInt(64 * 1024)
    #: Streams (terminal clients and tunnel connections) one kernel may have open.
    max_per_kernel: PositiveInt = PositiveInt(32)
    #: Seconds a new tunnel waits for its service to accept a connection (it is being
    #: started) before it is closed with code 1014.
    service_wait_timeout: PositiveFloat = PositiveFloat(30.0)
    #: Seconds one WebSocket send to a client may take: a client that stops reading is
    #: disconnected after this, so it cannot stall a terminal others share.
    client_send_timeout: PositiveFloat = PositiveFloat(10.0)
    #: Seconds the kernel may take to open a stream (the terminal's shell started).
    open_timeout: PositiveFloat = PositiveFloat(10.0)


@attrs.frozen
class SchedulerConfig:
    #: Name of the scheduler plugin (entry-point group ``crucible.schedulers``):
    #: ``fifo``, ``lifo``, ``drf`` built in.
    name: str = "fifo"
    #: Name of the agent selector (group ``crucible.agent_selectors``): ``dispersed``,
    #: ``concentrated``, ``round-robin`` built in.
    agent_selector: str = "dispersed"
    #: Seconds the head of a head-of-line queue (``fifo``) that fits no agent may keep
    #: the sessions behind it waiting; after that they are placed past it.
    head_block_timeout: PositiveFloat = PositiveFloat(10.0)


@attrs.frozen
class StorageHostConfig:
    """One vfolder host: which storage plugin serves it, where, and per-folder quotas."""

    #: The storage plugin (entry-point group ``crucible.storage``), e.g. ``local``.
    type: str = "local"
    #: The plugin's root: for ``local`` a directory (a relative one is taken from the
    #: working directory); empty means ``<state_dir>/vfolders``.
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
    #: GPUs (``instanceGPUs``: whole devices or shares) one session may get (requests
    #: are capped), and all live sessions of the keypair together.
    max_gpu_slots: NonNegativeFloat = NonNegativeFloat(0.0)


def _default_resource_policies() -> dict[str, ResourcePolicyConfig]:
    # The policy the first migration seeds; new keypairs get it unless told otherwise.
    return {"default": ResourcePolicyConfig()}


@attrs.frozen
class SupervisionConfig:
    """How ``crucible up`` and ``crucible agent`` restart a manager or agent that fails."""

    #: Seconds before each restart after consecutive failures; the last one repeats.
    restart_delays: Delays = Delays((0.5, 1.0, 2.0, 5.0, 10.0))
    #: A service that ran this long before failing starts again without delay growth.
    stable_after: PositiveFloat = PositiveFloat(60.0)


@attrs.frozen
class LoggingConfig:
    level: LogLevel = LogLevel("INFO")


@attrs.frozen
class Config:
    #: Where the embedded database, the client.env file and other local state live (a
    #: relative path is taken from the working directory).
    state_dir: LocalPath = attrs.field(factory=lambda: LocalPath(default_state_dir()))
    manager: ManagerConfig = attrs.Factory(ManagerConfig)
    database: DatabaseConfig = attrs.Factory(DatabaseConfig)
    auth: AuthConfig = attrs.Factory(AuthConfig)
    ratelimit: RateLimitConfig = attrs.Factory(RateLimitConfig)
    keypairs: KeypairDefaultsConfig = attrs.Factory(KeypairDefaultsConfig)
    bootstrap: BootstrapConfig = attrs.Factory(BootstrapConfig)
    cluster: ClusterConfig = attrs.Factory(ClusterConfig)
    agent: AgentConfig = attrs.Factory(AgentConfig)
    sessions: SessionsConfig = attrs.Factory(SessionsConfig)
    streams: StreamsConfig = attrs.Factory(StreamsConfig)
    scheduler: SchedulerConfig = attrs.Factory(SchedulerConfig)
    images: ImagesConfig = attrs.Factory(ImagesConfig)
    storage: StorageConfig = attrs.Factory(StorageConfig)
    graphql: GraphQLConfig = attrs.Factory(GraphQLConfig)
    limits: LimitsConfig = attrs.Factory(LimitsConfig)
    pool: PoolConfig = attrs.Factory(PoolConfig)
    #: Policies synced into the ``resource_policies`` table at start-up (TOML wins for
    #: the names it lists; policies made through the admin API are left alone).
    resource_policies: dict[str, ResourcePolicyConfig] = attrs.Factory(_default_resource_policies)
    supervision: SupervisionConfig = attrs.Factory(SupervisionConfig)
    logging: LoggingConfig = attrs.Factory(LoggingConfig)
    #: One table per accelerator plugin named in ``agent.accelerators``,
    #: ``[accelerators.NAME]``; its keys are the plugin's own, checked when the agent
    #: loads it (docs/plugins.md).
    accelerators: dict[str, PluginOptions] = attrs.Factory(dict)

    @property
    def state_path(self) -> Path:
        # Loading resolves `state_dir` already; a Config built in code may not have.
        return Path(absolute_path(self.state_dir))
