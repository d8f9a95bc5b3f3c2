"""Supervised services: restarted after a failure, with a backoff; a failure before the
first start, or a normal return, ends supervision."""

from __future__ import annotations

import functools
import itertools

import pytest
import trio

from crucible.supervision import supervise


class Boom(Exception):
    pass


async def test_a_failing_service_is_restarted_with_a_growing_backoff() -> None:
    starts: list[float] = []

    async def service(*, task_status: trio.TaskStatus[str]) -> None:
        starts.append(trio.current_time())
        task_status.started(f"start {len(starts)}")
        if len(starts) < 4:
            raise Boom(f"failure {len(starts)}")
        await trio.sleep_forever()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            quick = functools.partial(supervise, delays=(0.01, 0.05, 0.1))
            first = await nursery.start(quick, "svc", service)
            while len(starts) < 4:
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
    assert first == "start 1"  # the first start's value, once
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert gaps[0] >= 0.01 and gaps[1] >= 0.05 and gaps[2] >= 0.1


async def test_a_failure_before_the_first_start_propagates() -> None:
    async def service(*, task_status: trio.TaskStatus[None]) -> None:
        raise Boom("no Docker engine")

    with trio.fail_after(5), pytest.RaisesGroup(Boom, flatten_subgroups=True):
        async with trio.open_nursery() as nursery:
            await nursery.start(supervise, "svc", service)


async def test_a_restart_that_fails_to_start_is_retried() -> None:
    attempts = 0

    async def service(*, task_status: trio.TaskStatus[None]) -> None:
        nonlocal attempts
        attempts += 1
        if attempts in (2, 3):
            raise Boom("not yet")  # fails before started(): retried after the first start
        task_status.started()
        if attempts == 1:
            raise Boom("after the start")
        await trio.sleep_forever()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(functools.partial(supervise, delays=(0.01,)), "svc", service)
            while attempts < 4:
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()


async def test_a_service_that_returns_ends_supervision() -> None:
    runs = 0

    async def service(*, task_status: trio.TaskStatus[None]) -> None:
        nonlocal runs
        runs += 1
        task_status.started()

    with trio.fail_after(5):
        await supervise("svc", service)
    assert runs == 1
