"""The agent's tables: ``[agent]`` (one agent per Docker host: its managers, capacity,
per-kernel limits, execution limits, timeouts) and ``[images]`` (building kernel images).
The comment above a key is its documentation (``crucible.example.toml`` repeats it)."""

from __future__ import annotations

import attrs

from crucible.config.types import (
    Delays,
    MiB,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
)


@attrs.frozen
class AgentConfig:
    #: This agent's id, unique per Docker engine; empty: host name + digest of state_dir.
    id: str = ""
    #: WebSocket URLs (``ws://`` or ``wss://``) of the managers to register with; empty
    #: means the local manager.
    manager_urls: list[str] = attrs.Factory(list)
    heartbeat_interval: PositiveFloat = PositiveFloat(3.0)
    #: Dialling a manager: seconds the WebSocket handshake may take, seconds before each
    #: new attempt after consecutive failures (the last repeats), and seconds a closing
    #: link waits for the manager's close frame.
    manager_connect_timeout: PositiveFloat = PositiveFloat(10.0)
    manager_reconnect_delays: Delays = Delays((0.2, 0.5, 1.0, 2.0, 5.0))
    manager_disconnect_timeout: PositiveFloat = PositiveFloat(2.0)
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
    #: Seconds the Docker SDK's own HTTP timeout exceeds a call's deadline, so that the
    #: deadline fires first (a clean timeout) and abandoned threads still end soon after.
    docker_http_margin: PositiveFloat = PositiveFloat(5.0)
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
    #: Seconds a code completion call may take before it answers nothing (the runner
    #: itself gives the interpreter 3 s of it).
    complete_timeout: PositiveFloat = PositiveFloat(5.0)
    #: Seconds a kernel's app (spec 9 service ports: Jupyter...) may take to accept
    #: connections once started on demand; one that does not is stopped.
    service_start_timeout: PositiveFloat = PositiveFloat(60.0)
    #: Seconds a new container's runner may take to dial the agent, and how long a
    #: restarted agent waits for the runners of the kernels it recovers.
    runner_start_timeout: PositiveFloat = PositiveFloat(30.0)
    runner_recover_timeout: PositiveFloat = PositiveFloat(10.0)
    #: Seconds one message to a runner may take to go out; a runner that stops reading
    #: its socket this long is taken for broken and its kernel ends.
    runner_send_timeout: PositiveFloat = PositiveFloat(30.0)
    #: Seconds a staged session-file upload may sit untouched before it is dropped.
    upload_idle_timeout: PositiveFloat = PositiveFloat(120.0)
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
    #: Accelerator plugins to load (entry-point group ``crucible.accelerators``), each
    #: configured by its own ``[accelerators.NAME]`` table; empty: CPU and memory only.
    accelerators: list[str] = attrs.Factory(list)


@attrs.frozen
class ImagesConfig:
    """Building kernel images (``crucible images build``)."""

    #: The Debian suite of the base image, and the mirror debootstrap fetches it from.
    base_suite: str = "bookworm"
    debian_mirror: str = "http://deb.debian.org/debian"
    #: Seconds each build step may take. Cold builds download a few hundred MiB from the
    #: mirror: the limits are generous but finite, so a stalled mirror fails the build
    #: instead of hanging it.
    debootstrap_timeout: PositiveFloat = PositiveFloat(30 * 60.0)
    tar_timeout: PositiveFloat = PositiveFloat(10 * 60.0)
    import_timeout: PositiveFloat = PositiveFloat(10 * 60.0)
    build_timeout: PositiveFloat = PositiveFloat(60 * 60.0)
    #: Seconds of one ``docker image inspect`` (or ``rm``), and of an image's version check.
    inspect_timeout: PositiveFloat = PositiveFloat(60.0)
    verify_timeout: PositiveFloat = PositiveFloat(120.0)
    #: Seconds a build waits for another one sharing its state directory to finish.
    lock_timeout: PositiveFloat = PositiveFloat(2 * 60 * 60.0)
