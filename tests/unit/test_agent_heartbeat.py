"""The heartbeat's background refresh outlives a Docker engine that fails, and offers
only images whose labels are good."""

from __future__ import annotations

import pytest
import trio

from crucible.agent.docker.errors import DockerUnavailable
from crucible.agent.heartbeat import Heartbeats
from crucible.kernels.catalog import ImageInfo
from crucible.kernels.service_ports import LABEL_SERVICE_PORTS


class _FailingEngine:
    """A driver whose image list always fails (the engine went away)."""

    def __init__(self) -> None:
        self.calls = 0

    async def list_images(self, label_key: str) -> list[ImageInfo]:
        self.calls += 1
        await trio.lowlevel.checkpoint()
        raise DockerUnavailable("list images: the engine went away")


async def test_a_failing_engine_does_not_end_the_refresh() -> None:
    engine = _FailingEngine()
    heartbeats = Heartbeats(
        engine,  # type: ignore[arg-type]
        {},
        agent_id="agent-1",
        capacity={"cpu": 1.0, "mem": 1.0},
        interval=0.01,
    )
    # The refreshes run in a nursery, so the failure arrives as an exception group: it
    # is logged and the next round comes, the agent stays up.
    with trio.move_on_after(0.5):
        await heartbeats.collect_forever()
    assert engine.calls >= 3
    assert heartbeats.heartbeat().agent.images == ()


class _Images:
    """A driver with two images: one declaring its service ports well, one badly."""

    async def list_images(self, label_key: str) -> list[ImageInfo]:
        await trio.lowlevel.checkpoint()
        return [
            ImageInfo(
                "sha256:good", ("crucible/kernel-good:1",), {LABEL_SERVICE_PORTS: "j:http:8080"}
            ),
            ImageInfo(
                "sha256:bad", ("crucible/kernel-bad:1",), {LABEL_SERVICE_PORTS: "j:http:2001"}
            ),
        ]


async def test_an_image_with_bad_service_ports_is_not_offered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    heartbeats = Heartbeats(
        _Images(),  # type: ignore[arg-type]
        {},
        agent_id="agent-1",
        capacity={"cpu": 1.0, "mem": 1.0},
        interval=0.01,
    )
    images = await heartbeats.refresh_images()
    assert [image.ref for image in images] == ["crucible/kernel-good:1"]
    assert "not offering image crucible/kernel-bad:1" in caplog.text and "reserved" in caplog.text
