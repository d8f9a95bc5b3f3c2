"""The Docker engine as seen by the agent: the only module that imports ``docker``.

Every SDK call is blocking, so each one runs in a worker thread
(`trio.to_thread.run_sync`) under a `trio.CapacityLimiter` of
``agent.docker_concurrency`` and a deadline of ``agent.docker_timeout`` seconds. Results
come back as the small frozen values of `crucible.agent.docker.specs` and failures as
the exception classes of `crucible.agent.docker.errors` (`DockerError` and subclasses),
raised ``from`` the SDK's exception, so no caller ever handles a ``docker`` or
``requests`` type.

Cancellation: a thread cannot be cancelled, so every call uses
``abandon_on_cancel=True``; a timeout or a cancelled caller returns at once and the
thread finishes in the background, its result discarded. That is safe here because

* the SDK's own HTTP timeout is set a little above ``docker_timeout``, so an abandoned
  thread ends shortly after it was given up, and the limiter keeps counting it until
  then (trio releases the token only when the thread really finishes), so abandoned
  threads can never exceed ``docker_concurrency``;
* read calls (inspect, stats, logs, lists, ping, wait) have no effect to lose;
* for mutating calls the engine may still carry the operation out after we gave up
  (a container created after its create timed out). Every kernel container carries the
  ``crucible.*`` labels, so the agent's orphan sweep (`list_containers` by label, then
  `remove`) finds and removes such leftovers; kill and remove are idempotent in effect.

Waiting for a container to exit is a long poll that would hold a limiter token for the
lifetime of a kernel, so it runs under a second limiter of the same size and in chunks of
at most ``docker_timeout`` seconds.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, TypeVar

import docker
import docker.errors
import docker.types
import requests.exceptions
import trio

from crucible.agent.docker import errors
from crucible.agent.docker.answers import count, dig, parse_time, stats_from_docker
from crucible.agent.docker.specs import ContainerSpec, ContainerState, ContainerSummary
from crucible.config import AgentConfig
from crucible.kernels.catalog import ImageInfo
from crucible.protocol.stats import KernelStats

log = logging.getLogger(__name__)

T = TypeVar("T")


class DockerDriver:
    """Async access to one Docker engine. Build with `connect` or `open_docker_driver`."""

    def __init__(self, client: Any, config: AgentConfig) -> None:
        self._client = client
        self._api: Any = client.api
        self._timeout = float(config.docker_timeout)
        #: Seconds the SDK's HTTP timeout exceeds a call's deadline, so that trio's
        #: deadline fires first (a clean `DockerTimeout`) and abandoned threads still
        #: end soon after (``agent.docker_http_margin``).
        self._http_margin = float(config.docker_http_margin)
        self._limiter = trio.CapacityLimiter(config.docker_concurrency)
        self._wait_limiter = trio.CapacityLimiter(config.docker_concurrency)

    @classmethod
    async def connect(cls, config: AgentConfig, *, base_url: str | None = None) -> DockerDriver:
        """Connect to the engine (``DOCKER_HOST`` or the local socket) and check it answers.

        Raises `DockerUnavailable` when no engine answers within ``docker_timeout``.
        """
        # One HTTP connection per thread the two limiters allow (plus a spare pair); a
        # smaller pool would make urllib3 open and discard connections under load.
        pool = 2 * config.docker_concurrency + 2
        http_timeout = math.ceil(config.docker_timeout + config.docker_http_margin)

        def make() -> Any:
            # version="auto" asks the engine for its API version: the SDK's default
            # (1.45) is newer than what Debian's 20.10 engine (1.41) accepts.
            if base_url is None:
                return docker.from_env(version="auto", timeout=http_timeout, max_pool_size=pool)
            return docker.DockerClient(
                base_url=base_url, version="auto", timeout=http_timeout, max_pool_size=pool
            )

        try:
            with trio.fail_after(config.docker_timeout):
                client = await trio.to_thread.run_sync(make, abandon_on_cancel=True)
        except trio.TooSlowError as exc:
            raise errors.DockerUnavailable("the Docker engine did not answer") from exc
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise errors.DockerUnavailable(f"cannot reach the Docker engine: {exc}") from exc
        return cls(client, config)

    async def aclose(self) -> None:
        """Close the HTTP connections (threads still running fail harmlessly)."""
        await trio.to_thread.run_sync(self._client.close)

    # -- plumbing -------------------------------------------------------------------------

    async def _call(
        self,
        what: str,
        fn: Callable[[], T],
        *,
        subject: str = "container",
        time_limit: float | None = None,
        limiter: trio.CapacityLimiter | None = None,
    ) -> T:
        """Run *fn* in a thread with the limiter and deadline; translate its errors."""
        seconds = self._timeout if time_limit is None else time_limit
        try:
            with trio.fail_after(seconds):
                return await trio.to_thread.run_sync(
                    fn, limiter=limiter or self._limiter, abandon_on_cancel=True
                )
        except trio.TooSlowError as exc:
            message = f"{what}: no answer from the engine within {seconds:g}s"
            raise errors.DockerTimeout(message) from exc
        except docker.errors.APIError as exc:
            image_missing = isinstance(exc, docker.errors.ImageNotFound)
            raise errors.from_api_error(what, subject, exc, image_missing=image_missing) from exc
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise errors.DockerUnavailable(f"{what}: {exc}") from exc

    # -- containers -----------------------------------------------------------------------

    async def create_and_start(self, spec: ContainerSpec) -> str:
        """Create the container described by *spec* with its hardening, start it, and
        return its id. Nothing is pulled: a missing image raises `ImageNotFound`.

        If start fails the container is removed again before the error is raised.
        """
        api = self._api
        h = spec.hardening

        def create() -> str:
            host_config = api.create_host_config(
                network_mode=h.network_mode,
                cap_drop=list(h.cap_drop),
                security_opt=h.security_opt(),
                privileged=h.privileged,
                read_only=spec.read_only_rootfs,
                pids_limit=spec.pids_limit,
                mem_limit=spec.memory_bytes,
                memswap_limit=spec.memory_bytes + h.swap_bytes,
                oom_kill_disable=h.oom_kill_disable,
                oom_score_adj=h.oom_score_adj,
                nano_cpus=spec.nano_cpus,
                tmpfs={m.target: m.options() for m in spec.tmpfs},
                # The Mounts API (unlike -v binds) fails when the source is missing
                # instead of creating an empty root-owned directory on the host.
                mounts=[
                    docker.types.Mount(
                        b.target,
                        b.source,
                        type="bind",
                        read_only=b.read_only,
                        propagation=b.propagation or None,
                    )
                    for b in spec.binds
                ],
                ulimits=[
                    docker.types.Ulimit(name=u.name, soft=u.soft, hard=u.hard) for u in h.ulimits
                ],
                init=h.init,
                ipc_mode=h.ipc_mode,
                shm_size=h.shm_size_bytes,
                log_config=docker.types.LogConfig(type=h.log_driver, config=dict(h.log_options)),
                auto_remove=False,
                **_device_requests(spec),
            )
            created = api.create_container(
                spec.image,
                command=list(spec.command) if spec.command is not None else None,
                entrypoint=list(spec.entrypoint) if spec.entrypoint is not None else None,
                name=spec.name,
                user=spec.user,
                working_dir=spec.workdir,
                hostname=spec.hostname,
                environment=dict(spec.env),
                labels=dict(spec.labels),
                host_config=host_config,
                detach=True,
                # Otherwise the SDK copies the host's ~/.docker/config.json proxy
                # settings into the container's environment.
                use_config_proxy=False,
            )
            return str(created["Id"])

        container_id = await self._call(f"create {spec.name}", create, subject="image")
        try:
            await self._call(f"start {spec.name}", lambda: api.start(container_id))
        except BaseException as exc:
            log.warning("container %s did not start (%s); removing it", spec.name, exc)
            # Shielded: a cancelled caller must not leave a created, never-started
            # container behind (the orphan sweep would get it, but only later).
            with trio.CancelScope(shield=True):
                with contextlib.suppress(errors.DockerError):
                    await self.remove(container_id)
            raise
        return container_id

    async def update_limits(
        self, container: str, *, cpu_cores: float, memory_bytes: int, swap_bytes: int
    ) -> None:
        """Change a running container's CPU quota and memory limit (``docker update``)."""
        api = self._api
        body = {
            # The SDK's update_container has no NanoCpus, and a container made with
            # NanoCpus refuses a CpuQuota update: post the engine's own fields.
            "NanoCpus": round(cpu_cores * 1_000_000_000),
            "Memory": memory_bytes,
            "MemorySwap": memory_bytes + swap_bytes,
        }

        def update() -> None:
            url = api._url("/containers/{0}/update", container)
            api._raise_for_status(api._post_json(url, data=body))

        await self._call(f"update {container}", update)

    async def rename(self, container: str, name: str) -> None:
        await self._call(f"rename {container}", lambda: self._api.rename(container, name))

    async def inspect(self, container: str) -> ContainerState:
        """The container's state; `ContainerNotFound` if it does not exist."""
        raw = await self._call(
            f"inspect {container}", lambda: self._api.inspect_container(container)
        )
        state = raw.get("State") or {}
        return ContainerState(
            id=str(raw.get("Id", "")),
            name=str(raw.get("Name", "")).lstrip("/"),
            status=str(state.get("Status", "")),
            running=bool(state.get("Running", False)),
            exit_code=count(state.get("ExitCode")),
            oom_killed=bool(state.get("OOMKilled", False)),
            started_at=parse_time(state.get("StartedAt")),
            finished_at=parse_time(state.get("FinishedAt")),
            labels=dict(dig(raw, "Config", "Labels") or {}),
            error=str(state.get("Error") or ""),
        )

    async def wait_for_exit(self, container: str) -> int:
        """Wait until the container is not running and return its exit code.

        Returns at once for a stopped container. Waits as long as the caller's cancel
        scope allows: bound it with ``trio.fail_after`` / ``move_on_after``.
        """
        api = self._api
        while True:
            # One long poll per chunk: never longer than docker_timeout, so an abandoned
            # thread (caller cancelled) ends soon, and never past the caller's deadline.
            left = trio.current_effective_deadline() - trio.current_time()
            chunk = max(1.0, min(left, self._timeout))

            def wait(chunk: float = chunk) -> int | None:
                try:
                    result = api.wait(container, timeout=math.ceil(chunk))
                except requests.exceptions.ReadTimeout:
                    return None  # still running; the loop asks again
                except requests.exceptions.ConnectionError as exc:
                    # urllib3 reports a read timeout on a pooled connection this way.
                    if "timed out" in str(exc).lower():
                        return None
                    raise
                return count(result.get("StatusCode"))

            try:
                code = await self._call(
                    f"wait {container}",
                    wait,
                    time_limit=chunk + self._http_margin,
                    limiter=self._wait_limiter,
                )
            except errors.DockerTimeout:
                code = None
            if code is not None:
                return code

    async def kill(self, container: str, *, signal: str = "SIGKILL") -> bool:
        """Send *signal*; False if the container was not running (no error).

        `ContainerNotFound` if there is no such container.
        """
        try:
            await self._call(f"kill {container}", lambda: self._api.kill(container, signal=signal))
        except errors.ContainerConflict:
            return False  # "is not running"
        return True

    async def remove(self, container: str) -> bool:
        """Force-remove the container (killing it if needed) and its anonymous volumes.

        Idempotent: returns False when it was already gone or being removed.
        """
        try:
            await self._call(
                f"remove {container}",
                lambda: self._api.remove_container(container, force=True, v=True),
            )
        except errors.ContainerNotFound:
            return False
        except errors.ContainerConflict:
            return False  # "removal already in progress"
        return True

    async def stats(self, container: str) -> KernelStats:
        """One stats sample (no stream) as the spec 4.4 object.

        A stopped container yields zeros for what the engine no longer reports.
        """
        raw = await self._call(
            f"stats {container}",
            # one_shot: answer from one sample instead of waiting ~1 s for a second one
            # (API >= 1.41; the precpu fields it leaves empty are not used here).
            lambda: self._api.stats(container, stream=False, one_shot=True),
        )
        return stats_from_docker(raw or {})

    async def logs(self, container: str, *, tail_lines: int = 1000, max_bytes: int = 65536) -> str:
        """The last *tail_lines* lines of combined stdout and stderr, at most *max_bytes*
        (the end is kept), decoded as UTF-8 with replacement characters."""
        raw = await self._call(
            f"logs {container}",
            lambda: self._api.logs(
                container, stdout=True, stderr=True, stream=False, tail=max(1, tail_lines)
            ),
        )
        data = bytes(raw or b"")
        if len(data) > max_bytes:
            data = data[-max_bytes:]
        return data.decode("utf-8", errors="replace")

    async def list_containers(
        self, labels: Mapping[str, str] | Sequence[str]
    ) -> list[ContainerSummary]:
        """All containers (running or not) carrying every given label.

        *labels* is a mapping ``{key: value}`` or a sequence of keys / ``key=value``.
        """
        if isinstance(labels, Mapping):
            wanted = [f"{k}={v}" for k, v in labels.items()]
        else:
            wanted = list(labels)
        if not wanted:
            # An empty filter would list every container on the host, including ones
            # that are not ours; callers must say what they are looking for.
            raise ValueError("list_containers needs at least one label filter")

        rows = await self._call(
            "list containers",
            lambda: self._api.containers(all=True, filters={"label": wanted}),
        )
        return [
            ContainerSummary(
                id=str(row.get("Id", "")),
                name=str((row.get("Names") or ["?"])[0]).lstrip("/"),
                image=str(row.get("Image", "")),
                status=str(row.get("State", "")),
                labels=dict(row.get("Labels") or {}),
            )
            for row in rows or ()
        ]

    # -- images ---------------------------------------------------------------------------

    async def list_images(self, label_key: str) -> list[ImageInfo]:
        """Local images that carry the label *label_key* (any value)."""
        rows = await self._call(
            "list images",
            lambda: self._api.images(filters={"label": label_key}),
            subject="image",
        )
        return [
            ImageInfo(
                id=str(row.get("Id", "")),
                tags=tuple(t for t in (row.get("RepoTags") or ()) if t != "<none>:<none>"),
                labels=dict(row.get("Labels") or {}),
            )
            for row in rows or ()
        ]

    async def image_labels(self, ref: str) -> dict[str, str]:
        """The labels of one local image; `ImageNotFound` if it is not there."""
        return (await self.image_identity(ref))[1]

    async def image_identity(self, ref: str) -> tuple[str, dict[str, str]]:
        """The id and the labels of one local image; `ImageNotFound` if it is not there."""
        raw = await self._call(
            f"inspect image {ref}", lambda: self._api.inspect_image(ref), subject="image"
        )
        return str(raw.get("Id", "")), dict(dig(raw, "Config", "Labels") or {})

    # -- engine ---------------------------------------------------------------------------

    async def ping(self) -> None:
        """Return if the engine answers; raise `DockerUnavailable` otherwise."""
        try:
            ok = await self._call("ping", self._api.ping)
        except errors.DockerTimeout as exc:
            raise errors.DockerUnavailable("ping: the Docker engine did not answer") from exc
        except errors.DockerUnavailable:
            raise
        except errors.DockerError as exc:
            raise errors.DockerUnavailable(f"ping: {exc}") from exc
        if not ok:
            raise errors.DockerUnavailable("ping: unexpected answer")


@contextlib.asynccontextmanager
async def open_docker_driver(
    config: AgentConfig, *, base_url: str | None = None
) -> AsyncIterator[DockerDriver]:
    """``async with open_docker_driver(cfg.agent) as driver:`` — connect, then close."""
    driver = await DockerDriver.connect(config, base_url=base_url)
    try:
        yield driver
    finally:
        with trio.CancelScope(shield=True):
            await driver.aclose()


def _device_requests(spec: ContainerSpec) -> dict[str, Any]:
    """``device_requests`` for the host config, only when there are any: the argument
    needs API 1.40, and a container without accelerators must not require it."""
    if not spec.device_requests:
        return {}
    return {
        "device_requests": [
            docker.types.DeviceRequest(
                driver=request.driver,
                device_ids=list(request.device_ids),
                capabilities=[list(alternative) for alternative in request.capabilities],
            )
            for request in spec.device_requests
        ]
    }
