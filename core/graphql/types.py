"""The object and input types of the admin schemas (spec 7.2-7.4), shared by both.

Fields that need more data than their parent row carries (a session's workers, a
keypair's sessions, an agent's computations...) load it through the request's `Loader`,
batched with their siblings (`crucible.graphql.loader`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from operator import itemgetter
from typing import Any

from graphql import (
    GraphQLArgument,
    GraphQLBoolean,
    GraphQLField,
    GraphQLFloat,
    GraphQLInputField,
    GraphQLInputObjectType,
    GraphQLInt,
    GraphQLList,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    GraphQLString,
)

from crucible.graphql.arguments import session_status
from crucible.graphql.context import context_of
from crucible.graphql.scalars import BigIntScalar, DateTimeScalar, JSONStringScalar, UUIDScalar


def _loaded(
    kind: GraphQLOutputType,
    data: str,
    key: Callable[[dict[str, Any]], Hashable | None],
    *,
    by_status: bool = False,
) -> GraphQLField:
    """A field of type `kind` holding the `data` loaded for its parent's `key`; with
    `by_status`, a ``status`` argument (a session status) filters it. A parent without
    the key (the all-null placeholder session) has nothing to load."""

    def resolve(parent: dict[str, Any], info: GraphQLResolveInfo, status: Any = None) -> Any:
        parent_key = key(parent)
        if parent_key is None:
            return None
        params = (session_status(status),) if by_status else ()
        return context_of(info).loader.load(data, parent_key, params)

    args = {"status": GraphQLArgument(GraphQLString)} if by_status else None
    return GraphQLField(kind, args=args, resolve=resolve)


def _kernel_fields() -> dict[str, GraphQLField]:
    """The fields ComputeSession, ComputeWorker and Computation share, in spec order."""
    return {
        "sess_id": GraphQLField(GraphQLString),
        "id": GraphQLField(UUIDScalar),
        "role": GraphQLField(GraphQLString),
        "lang": GraphQLField(GraphQLString),
        "status": GraphQLField(GraphQLString),
        "status_info": GraphQLField(GraphQLString),
        "created_at": GraphQLField(DateTimeScalar),
        "terminated_at": GraphQLField(DateTimeScalar),
        "agent": GraphQLField(GraphQLString),
        "container_id": GraphQLField(GraphQLString),
        "service_ports": GraphQLField(JSONStringScalar),
        "mem_slot": GraphQLField(GraphQLInt, description="MiB"),
        "cpu_slot": GraphQLField(GraphQLFloat, description="cores"),
        "gpu_slot": GraphQLField(GraphQLFloat, description="GPUs: whole devices or shares"),
        "tpu_slot": GraphQLField(GraphQLFloat),
        "occupied_slots": GraphQLField(
            JSONStringScalar, description="every slot it holds: cpu, mem (bytes), cuda.*"
        ),
        "devices": GraphQLField(
            JSONStringScalar,
            description="the accelerator devices it holds, as last reported (as Agent.devices)",
        ),
        "num_queries": GraphQLField(BigIntScalar),
        "cpu_used": GraphQLField(BigIntScalar, description="ms"),
        "mem_max_bytes": GraphQLField(BigIntScalar),
        "mem_cur_bytes": GraphQLField(BigIntScalar),
        "net_rx_bytes": GraphQLField(BigIntScalar),
        "net_tx_bytes": GraphQLField(BigIntScalar),
        "io_read_bytes": GraphQLField(BigIntScalar),
        "io_write_bytes": GraphQLField(BigIntScalar),
        "io_max_scratch_size": GraphQLField(BigIntScalar),
        "io_cur_scratch_size": GraphQLField(BigIntScalar),
    }


ComputeWorker = GraphQLObjectType("ComputeWorker", _kernel_fields)
Computation = GraphQLObjectType("Computation", _kernel_fields)


def _worker_key(session: dict[str, Any]) -> tuple[str, str] | None:
    if session.get("sess_id") is None:  # the all-null placeholder session
        return None
    return (session["_access_key"], session["sess_id"])


def _session_fields() -> dict[str, GraphQLField]:
    fields = _kernel_fields()
    ordered: dict[str, GraphQLField] = {}
    for name, field in fields.items():
        ordered[name] = field
        if name == "lang":
            ordered["tag"] = GraphQLField(GraphQLString)
    ordered["workers"] = _loaded(GraphQLList(ComputeWorker), "workers", _worker_key, by_status=True)
    return ordered


ComputeSession = GraphQLObjectType("ComputeSession", _session_fields)

VirtualFolder = GraphQLObjectType(
    "VirtualFolder",
    lambda: {
        "id": GraphQLField(UUIDScalar),
        "host": GraphQLField(GraphQLString),
        "name": GraphQLField(GraphQLString),
        "max_files": GraphQLField(GraphQLInt),
        "max_size": GraphQLField(BigIntScalar, description="KiB"),
        "created_at": GraphQLField(DateTimeScalar),
        "last_used": GraphQLField(DateTimeScalar),
        "num_files": GraphQLField(GraphQLInt),
        "cur_size": GraphQLField(BigIntScalar, description="KiB"),
    },
)


KeyPair = GraphQLObjectType(
    "KeyPair",
    lambda: {
        "user_id": GraphQLField(GraphQLString),
        "access_key": GraphQLField(GraphQLString),
        "secret_key": GraphQLField(GraphQLString),
        "is_active": GraphQLField(GraphQLBoolean),
        "is_admin": GraphQLField(GraphQLBoolean),
        "resource_policy": GraphQLField(GraphQLString),
        "created_at": GraphQLField(DateTimeScalar),
        "last_used": GraphQLField(DateTimeScalar),
        "concurrency_limit": GraphQLField(GraphQLInt),
        "concurrency_used": _loaded(GraphQLInt, "concurrency_used", itemgetter("access_key")),
        "rate_limit": GraphQLField(GraphQLInt),
        "num_queries": GraphQLField(BigIntScalar),
        "vfolders": _loaded(GraphQLList(VirtualFolder), "vfolders", itemgetter("access_key")),
        "compute_sessions": _loaded(
            GraphQLList(ComputeSession), "sessions", itemgetter("access_key"), by_status=True
        ),
    },
)


Agent = GraphQLObjectType(
    "Agent",
    lambda: {
        "id": GraphQLField(GraphQLString),
        "status": GraphQLField(GraphQLString),
        "region": GraphQLField(GraphQLString),
        "addr": GraphQLField(GraphQLString),
        "first_contact": GraphQLField(DateTimeScalar),
        "lost_at": GraphQLField(DateTimeScalar),
        "mem_slots": GraphQLField(GraphQLInt, description="MiB"),
        "cpu_slots": GraphQLField(GraphQLFloat),
        "gpu_slots": GraphQLField(GraphQLFloat, description="GPUs: whole devices or shares"),
        "tpu_slots": GraphQLField(GraphQLFloat),
        "available_slots": GraphQLField(
            JSONStringScalar, description="every slot it offers: cpu, mem (bytes), cuda.*"
        ),
        "occupied_slots": GraphQLField(
            JSONStringScalar, description="every slot its live kernels hold"
        ),
        "devices": GraphQLField(
            JSONStringScalar,
            description="its accelerator devices at the last heartbeat: plugin, device_id, "
            "mem_total_bytes, mem_used_bytes, utilization_pct",
        ),
        "used_mem_slots": GraphQLField(GraphQLInt, description="MiB"),
        "used_cpu_slots": GraphQLField(GraphQLFloat),
        "used_gpu_slots": GraphQLField(GraphQLFloat),
        "used_tpu_slots": GraphQLField(GraphQLFloat),
        "cpu_cur_pct": GraphQLField(GraphQLFloat),
        "mem_cur_bytes": GraphQLField(GraphQLFloat),
        "warm_pool_ready": GraphQLField(
            GraphQLInt, description="kernels its warm pool holds ready, all images"
        ),
        "warm_pool_starting": GraphQLField(GraphQLInt),
        "warm_pool_mem_bytes": GraphQLField(
            GraphQLFloat, description="memory the warm pool holds (at the kernels' limits)"
        ),
        "warm_pool_claims": GraphQLField(
            GraphQLInt, description="creates served from the warm pool since the agent started"
        ),
        "warm_pool_misses": GraphQLField(GraphQLInt),
        "computations": _loaded(
            GraphQLList(Computation), "computations", itemgetter("id"), by_status=True
        ),
    },
)

Image = GraphQLObjectType(
    "Image",
    {
        "name": GraphQLField(GraphQLString),
        "tag": GraphQLField(GraphQLString),
        "hash": GraphQLField(GraphQLString),
    },
)


def _iso(attribute: str) -> GraphQLField:
    return GraphQLField(
        GraphQLString, resolve=lambda record, _info: getattr(record, attribute).isoformat()
    )


UsageRecord = GraphQLObjectType(
    "UsageRecord",
    {
        "access_key": GraphQLField(GraphQLString),
        "period_start": _iso("period_start"),
        "period_end": _iso("period_end"),
        "sessions_started": GraphQLField(BigIntScalar),
        "executions": GraphQLField(BigIntScalar),
        "cpu_time_ms": GraphQLField(BigIntScalar),
        "gpu_time_ms": GraphQLField(BigIntScalar),
        "mem_peak_bytes": GraphQLField(BigIntScalar),
        "mem_avg_bytes": GraphQLField(BigIntScalar),
        "storage_bytes": GraphQLField(BigIntScalar),
    },
)

ResourcePolicy = GraphQLObjectType(
    "ResourcePolicy",
    {
        "name": GraphQLField(GraphQLString),
        "max_concurrent_sessions": GraphQLField(GraphQLInt),
        "max_cpu_cores": GraphQLField(GraphQLFloat),
        "max_memory_bytes": GraphQLField(BigIntScalar),
        "max_vfolder_count": GraphQLField(GraphQLInt),
        "max_vfolder_size_bytes": GraphQLField(BigIntScalar),
        "max_gpu_slots": GraphQLField(GraphQLFloat),
        "created_at": GraphQLField(DateTimeScalar),
    },
)

# -- mutations' input and result types ------------------------------------------------------

KeyPairInput = GraphQLInputObjectType(
    "KeyPairInput",
    {
        # No schema defaults: on modify an absent field must mean "unchanged". Create
        # applies the spec's defaults (active, not admin) and the configured limits.
        "is_active": GraphQLInputField(GraphQLBoolean),
        "is_admin": GraphQLInputField(GraphQLBoolean),
        "resource_policy": GraphQLInputField(GraphQLString),
        "concurrency_limit": GraphQLInputField(GraphQLInt),
        "rate_limit": GraphQLInputField(GraphQLInt),
    },
)

ResourcePolicyInput = GraphQLInputObjectType(
    "ResourcePolicyInput",
    {
        "max_concurrent_sessions": GraphQLInputField(GraphQLInt),
        "max_cpu_cores": GraphQLInputField(GraphQLFloat),
        "max_memory_bytes": GraphQLInputField(BigIntScalar),
        "max_vfolder_count": GraphQLInputField(GraphQLInt),
        "max_vfolder_size_bytes": GraphQLInputField(BigIntScalar),
        "max_gpu_slots": GraphQLInputField(GraphQLFloat),
    },
)


def result_type(name: str, **extra: GraphQLField) -> GraphQLObjectType:
    """A mutation's answer: ``ok``, ``msg`` and what else it returns."""
    return GraphQLObjectType(
        name, {"ok": GraphQLField(GraphQLBoolean), "msg": GraphQLField(GraphQLString), **extra}
    )
