"""Fixtures of the vfolder tests: more users, and the session cluster for mounts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from sessions.conftest import (  # noqa: F401 (fixtures)
    cluster,
    docker_ready,
    kernel_start,
    short_state_dir,
)

from crucible.keypairs import KeypairRepository, NewKeypair
from testlib.server import Harness
from testlib.signing import Credentials, SigningClient

#: The `make_user` fixture: a user id in, a client signing as a new keypair of it out.
MakeUser = Callable[[str], Awaitable[SigningClient]]


@pytest.fixture
def make_user(manager: Harness, keypairs: KeypairRepository) -> MakeUser:
    """``await make_user("bob@test")`` → a client signing as a new keypair of that user."""

    async def make(user_id: str) -> SigningClient:
        kp = await keypairs.create(NewKeypair(user_id))
        return manager.client.with_credentials(Credentials(kp.access_key, kp.secret_key))

    return make
