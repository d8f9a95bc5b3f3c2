"""Resource policies: named caps a keypair lives under (sessions, CPU, memory, vfolders).

A keypair names its policy (``keypairs.resource_policy``). The policy caps

* live sessions at once (together with the keypair's own ``concurrency_limit``: the
  smaller wins) — beyond it session creation answers ``412 quota-exceeded``;
* cores, memory and GPUs: each new session's request is capped to them (as image
  limits are, spec 4.2), and the live sessions of the keypair together may not exceed
  them (``412 quota-exceeded``);
* the number of virtual folders the keypair owns and the size of each (enforced by the
  vfolder API through `vfolder_limits`).

Policies come from TOML (``[resource_policies.NAME]``, synced by `sync_from_config` at
start-up) and from the admin GraphQL API.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from crucible import errors
from crucible.config import ResourcePolicyConfig
from crucible.db.pool import Connection, Database
from crucible.db.queries import keypairs, resource_policies
from crucible.db.queries.kernels import KeypairLoad
from crucible.db.queries.resource_policies import ResourcePolicy
from crucible.sessions.resources import GPU_SLOTS, Resources

__all__ = [
    "FALLBACK",
    "ResourcePolicy",
    "ResourcePolicyStore",
    "cap",
    "check_session_quota",
    "vfolder_limits",
]


def cap(policy: ResourcePolicy, resources: Resources) -> Resources:
    """`resources` no larger than one session may get under `policy`."""
    cpu, mem = resources.cpu, resources.mem
    if policy.max_cpu_cores is not None:
        cpu = min(cpu, policy.max_cpu_cores)
    if policy.max_memory_bytes is not None:
        mem = min(mem, policy.max_memory_bytes)
    accelerators = dict(resources.accelerators)
    if policy.max_gpu_slots is not None:
        # One GPU slot per session at most (cuda.device or cuda.shares), capped as a whole.
        accelerators = {
            slot: round(min(amount, policy.max_gpu_slots), 2) if slot in GPU_SLOTS else amount
            for slot, amount in accelerators.items()
        }
    return attrs.evolve(resources, cpu=cpu, mem=mem, accelerators=accelerators)


def check_session_quota(
    policy: ResourcePolicy, concurrency_limit: int, load: KeypairLoad, wanted: Resources
) -> None:
    """Raise `QuotaExceeded` unless one more session of `wanted` fits under `policy` and
    the keypair's `concurrency_limit`, beside what its live sessions hold (`load`)."""
    limit = min(concurrency_limit, policy.max_concurrent_sessions)
    if load.sessions >= limit:
        raise errors.QuotaExceeded(f"This keypair may run {limit} sessions at once.")
    # A small tolerance: slots are stored as floats rounded to thousandths.
    if policy.max_cpu_cores is not None and load.cpu + wanted.cpu > policy.max_cpu_cores + 1e-6:
        raise errors.QuotaExceeded(
            f"Resource policy {policy.name!r} allows {policy.max_cpu_cores:g} cores in total; "
            f"{load.cpu:g} are in use."
        )
    if policy.max_memory_bytes is not None and load.mem + wanted.mem > policy.max_memory_bytes:
        raise errors.QuotaExceeded(
            f"Resource policy {policy.name!r} allows {policy.max_memory_bytes} bytes of memory "
            f"in total; {load.mem} are in use."
        )
    cap_gpu = policy.max_gpu_slots
    if cap_gpu is not None and wanted.gpu and load.gpu + wanted.gpu > cap_gpu + 1e-6:
        raise errors.QuotaExceeded(
            f"Resource policy {policy.name!r} allows {cap_gpu:g} GPUs in total; "
            f"{load.gpu:g} are in use."
        )


#: What applies when a keypair's policy row is gone (it cannot be: a foreign key guards
#: it, but a permissive fallback beats refusing every session over a bookkeeping gap).
FALLBACK = ResourcePolicy("default", 5, None, None, None, None)


@attrs.frozen
class ResourcePolicyStore:
    """Resource policies: kept in step with TOML, changed through the admin API (the SQL is
    `crucible.db.queries.resource_policies`)."""

    db: Database

    async def get(self, name: str) -> ResourcePolicy | None:
        return await resource_policies.get(self.db, name)

    async def for_keypair(self, conn: Connection, access_key: str) -> ResourcePolicy:
        """The policy of `access_key`, read on `conn` (inside the caller's transaction)."""
        return await resource_policies.of_keypair(conn, access_key) or FALLBACK

    async def list(self) -> list[ResourcePolicy]:
        return await resource_policies.listing(self.db)

    async def upsert(self, policy: ResourcePolicy) -> ResourcePolicy:
        return await resource_policies.upsert(self.db, policy)

    async def create(self, policy: ResourcePolicy) -> ResourcePolicy | None:
        """Insert `policy`; None when the name is taken."""
        return await resource_policies.insert_new(self.db, policy)

    async def update(self, name: str, changes: Mapping[str, Any]) -> ResourcePolicy | None:
        """Set the given columns (None clears an optional cap); None when no such policy."""
        return await resource_policies.update(self.db, name, changes)

    async def delete(self, name: str) -> str | None:
        """Delete the policy; returns why it could not be deleted, or None on success."""
        async with self.db.transaction() as conn:
            users = await keypairs.count_under_policy(conn, name)
            if users:
                return f"{users} keypair(s) still use resource policy {name!r}."
            if not await resource_policies.delete(conn, name):
                return f"No resource policy named {name!r}."
        return None

    async def sync_from_config(self, policies: Mapping[str, ResourcePolicyConfig]) -> None:
        """Make the table agree with TOML for every policy TOML names (others stay)."""
        for name, config in policies.items():
            await self.upsert(ResourcePolicy.from_config(name, config))


async def vfolder_limits(db: Database, access_key: str) -> tuple[int | None, int | None]:
    """``(max folders owned, max bytes per folder)`` of `access_key`'s policy (None: no cap).

    For the vfolder API to call before creating a folder.
    """
    policy = await resource_policies.of_keypair(db, access_key)
    if policy is None:
        return None, None
    return policy.max_vfolder_count, policy.max_vfolder_size_bytes
