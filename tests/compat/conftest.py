"""The compatibility suite's fixture: one live `crucible up` for the whole test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ._support import RunningCrucible, launched_crucible


@pytest.fixture(scope="session")
def crucible_server() -> Iterator[RunningCrucible]:
    """`crucible up --bind 127.0.0.1:0` in a fresh state directory, stopped with SIGINT
    (see `launched_crucible` for what its teardown checks)."""
    with launched_crucible() as server:
        yield server
