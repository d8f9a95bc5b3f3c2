"""``instanceGPUs`` as the 18.12 client sends it, checked, capped and named as the slot
the agents offer (`crucible.sessions.resources`), and the resource policy's GPU caps."""

from __future__ import annotations

from typing import Any

import pytest

from crucible import errors
from crucible.config import NonNegativeFloat, SessionsConfig
from crucible.db.queries.kernels import KeypairLoad
from crucible.resource_policies import ResourcePolicy, cap, check_session_quota
from crucible.sessions.resources import (
    Resources,
    gpu_slots,
    requested_gpus,
    requested_resources,
    resolve_resources,
)

#: What alive agents offer, and the most one of them has free.
DISCRETE = {"cpu": 4.0, "mem": 8e9, "cuda.device": 2.0}
FRACTIONAL = {"cpu": 4.0, "mem": 8e9, "cuda.shares": 1.5}
BOTH = {**DISCRETE, **FRACTIONAL}


@pytest.mark.parametrize(
    ("value", "gpus"),
    [
        (None, 0.0),
        ("", 0.0),
        (0, 0.0),
        ("0", 0.0),
        ("1", 1.0),
        (2, 2.0),
        ("0.5", 0.5),
        ("0.29", 0.29),
        (0.01, 0.01),
        ("1.25", 1.25),
    ],
)
def test_gpu_amounts(value: Any, gpus: float) -> None:
    assert requested_gpus({"instanceGPUs": value}) == gpus


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-1", "zero or a positive number"),
        (-0.5, "zero or a positive number"),
        ("abc", "must be a number of GPUs (e.g. 1 or 0.5), not 'abc'"),
        ("nan", "zero or a positive number"),
        ("inf", "zero or a positive number"),
        (True, "must be a number"),
        ([1], "must be a number of GPUs"),
        ("0.001", "steps of 0.01 of a GPU, not 0.001"),
        ("0.505", "steps of 0.01"),
        (10**400, "out of range"),
    ],
)
def test_bad_gpu_amounts_are_400(value: Any, message: str) -> None:
    with pytest.raises(errors.InvalidAPIParameters) as caught:
        requested_gpus({"instanceGPUs": value})
    assert message in str(caught.value)


def test_the_api_edge_checks_gpus_with_the_rest() -> None:
    assert requested_resources({"instanceGPUs": "1"}) == (None, None, 1.0)
    with pytest.raises(errors.InvalidAPIParameters):
        requested_resources({"instanceGPUs": "x"})


def test_gpus_become_the_slot_agents_offer() -> None:
    assert gpu_slots(0, DISCRETE) == {}
    assert gpu_slots(1, DISCRETE) == {"cuda.device": 1}
    assert gpu_slots(1, FRACTIONAL) == {"cuda.shares": 1}
    assert gpu_slots(0.5, FRACTIONAL) == {"cuda.shares": 0.5}
    # Both kinds of agents: whole numbers take whole devices, fractions shares...
    assert gpu_slots(2, BOTH) == {"cuda.device": 2}
    assert gpu_slots(0.5, BOTH) == {"cuda.shares": 0.5}
    # ... unless only the other kind has room now.
    assert gpu_slots(1, {**BOTH, "cuda.device": 0.0}) == {"cuda.shares": 1}
    assert gpu_slots(3, BOTH) == {"cuda.device": 3}  # no room anywhere: placement says so
    with pytest.raises(errors.InvalidAPIParameters, match="whole GPUs only"):
        gpu_slots(0.5, DISCRETE)
    with pytest.raises(errors.InstanceNotAvailable, match="No agent offers GPUs"):
        gpu_slots(1, {"cpu": 4.0, "mem": 8e9})


def test_resolved_resources_carry_the_gpu_slot_capped_by_the_server() -> None:
    limits = SessionsConfig(max_gpus=NonNegativeFloat(2.0))
    resources = resolve_resources({"instanceGPUs": "4"}, {}, limits, DISCRETE)
    assert resources.accelerators == {"cuda.device": 2.0}
    assert resources.slots()["cuda.device"] == 2.0
    assert resources.gpu == 2.0
    plain = resolve_resources({}, {}, limits, DISCRETE)
    assert plain.accelerators == {} and set(plain.slots()) == {"cpu", "mem"}
    # 0 means no cap.
    uncapped = resolve_resources(
        {"instanceGPUs": "16"}, {}, SessionsConfig(max_gpus=NonNegativeFloat(0.0)), DISCRETE
    )
    assert uncapped.gpu == 16.0


def _policy(max_gpu_slots: float | None) -> ResourcePolicy:
    return ResourcePolicy("p", 10, None, None, None, None, max_gpu_slots=max_gpu_slots)


def test_the_policy_caps_one_session_and_all_of_a_keys() -> None:
    wanted = Resources(cpu=1.0, mem=1 << 28, accelerators={"cuda.shares": 1.5})
    assert cap(_policy(1.0), wanted).accelerators == {"cuda.shares": 1.0}
    assert cap(_policy(None), wanted).accelerators == {"cuda.shares": 1.5}

    def check(policy: ResourcePolicy, wanted: Resources, used_gpu: float) -> None:
        check_session_quota(
            policy, 10, KeypairLoad(sessions=1, cpu=0.0, mem=0, gpu=used_gpu), wanted
        )

    check(_policy(2.0), wanted, 0.5)
    with pytest.raises(errors.QuotaExceeded, match="allows 2 GPUs in total; 1 are in use"):
        check(_policy(2.0), wanted, 1.0)
    # A session without GPUs is never refused for them.
    check(_policy(0.5), Resources(1.0, 1 << 28), 3.0)
