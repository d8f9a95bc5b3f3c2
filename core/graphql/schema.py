"""The two admin GraphQL schemas of spec 7.2-7.4: full admin and restricted owner.

Both share the object types; they differ in their roots. Owners get no ``Mutation`` type
and roots without the arguments that would address other keys, so using an admin-only
field or argument fails standard validation (400), before anything runs.

Resolvers only read the request's `Loader` (see `crucible.graphql.loader`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
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
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLSchema,
    GraphQLString,
)

from crucible import errors
from crucible.graphql.context import context_of
from crucible.graphql.scalars import BigIntScalar, DateTimeScalar, JSONStringScalar, UUIDScalar
from crucible.sessions.model import LIVE_STATUSES
from crucible.usage import MAX_RANGE_DAYS, Period

SESSION_STATUSES = (*LIVE_STATUSES, "TERMINATED", "ERROR")
AGENT_STATUSES = ("ALIVE", "LOST", "RESTARTING", "TERMINATED")

Resolver = Callable[..., Any]


def _status(value: str | None, allowed: tuple[str, ...], what: str) -> str | None:
    if value is not None and value not in allowed:
        raise errors.InvalidAPIParameters(
            f"Unknown {what} status {value!r}; expected one of {', '.join(allowed)}."
        )
    return value


def _session_status(value: str | None) -> str | None:
    return _status(value, SESSION_STATUSES, "session")


def _str_arg(value: Any) -> str | None:
    # `user_id` may arrive as an integer through an `Int!` variable (spec 7.4 trap).
    return None if value is None else str(value)


# -- object types ---------------------------------------------------------------------------


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
        "gpu_slot": GraphQLField(GraphQLFloat),
        "tpu_slot": GraphQLField(GraphQLFloat),
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


_STATUS_ARG = {"status": GraphQLArgument(GraphQLString)}

ComputeWorker = GraphQLObjectType("ComputeWorker", _kernel_fields)
Computation = GraphQLObjectType("Computation", _kernel_fields)


def _resolve_workers(
    session: dict[str, Any], info: GraphQLResolveInfo, status: str | None = None
) -> Any:
    if session.get("sess_id") is None:  # the all-null placeholder session
        return None
    key = (session["_access_key"], session["sess_id"])
    return context_of(info).loader.load("workers", key, (_session_status(status),))


def _session_fields() -> dict[str, GraphQLField]:
    fields = _kernel_fields()
    ordered: dict[str, GraphQLField] = {}
    for name, field in fields.items():
        ordered[name] = field
        if name == "lang":
            ordered["tag"] = GraphQLField(GraphQLString)
    ordered["workers"] = GraphQLField(
        GraphQLList(ComputeWorker), args=dict(_STATUS_ARG), resolve=_resolve_workers
    )
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


def _resolve_kp_sessions(
    kp: dict[str, Any], info: GraphQLResolveInfo, status: str | None = None
) -> Any:
    return context_of(info).loader.load("sessions", kp["access_key"], (_session_status(status),))


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
        "concurrency_used": GraphQLField(
            GraphQLInt,
            resolve=lambda kp, info: context_of(info).loader.load(
                "concurrency_used", kp["access_key"]
            ),
        ),
        "rate_limit": GraphQLField(GraphQLInt),
        "num_queries": GraphQLField(BigIntScalar),
        "vfolders": GraphQLField(
            GraphQLList(VirtualFolder),
            resolve=lambda kp, info: context_of(info).loader.load("vfolders", kp["access_key"]),
        ),
        "compute_sessions": GraphQLField(
            GraphQLList(ComputeSession), args=dict(_STATUS_ARG), resolve=_resolve_kp_sessions
        ),
    },
)


def _resolve_computations(
    agent: dict[str, Any], info: GraphQLResolveInfo, status: str | None = None
) -> Any:
    return context_of(info).loader.load("computations", agent["id"], (_session_status(status),))


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
        "gpu_slots": GraphQLField(GraphQLFloat),
        "tpu_slots": GraphQLField(GraphQLFloat),
        "used_mem_slots": GraphQLField(GraphQLInt, description="MiB"),
        "used_cpu_slots": GraphQLField(GraphQLFloat),
        "used_gpu_slots": GraphQLField(GraphQLFloat),
        "used_tpu_slots": GraphQLField(GraphQLFloat),
        "cpu_cur_pct": GraphQLField(GraphQLFloat),
        "mem_cur_bytes": GraphQLField(GraphQLFloat),
        "computations": GraphQLField(
            GraphQLList(Computation), args=dict(_STATUS_ARG), resolve=_resolve_computations
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
        "created_at": GraphQLField(DateTimeScalar),
    },
)

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
    },
)


def _result_type(name: str, **extra: GraphQLField) -> GraphQLObjectType:
    return GraphQLObjectType(
        name, {"ok": GraphQLField(GraphQLBoolean), "msg": GraphQLField(GraphQLString), **extra}
    )


CreateKeyPair = _result_type("CreateKeyPair", keypair=GraphQLField(KeyPair))
ModifyKeyPair = _result_type("ModifyKeyPair")
DeleteKeyPair = _result_type("DeleteKeyPair")
CreateResourcePolicy = _result_type("CreateResourcePolicy")
ModifyResourcePolicy = _result_type("ModifyResourcePolicy")
DeleteResourcePolicy = _result_type("DeleteResourcePolicy")


# -- root resolvers -------------------------------------------------------------------------


def _own(info: GraphQLResolveInfo) -> str:
    return context_of(info).viewer.access_key


def _owner_filter(info: GraphQLResolveInfo) -> str | None:
    """None (anyone's) for admins; the viewer's key for owners."""
    ctx = context_of(info)
    return None if ctx.is_admin else ctx.viewer.access_key


def resolve_agent(_root: Any, info: GraphQLResolveInfo, agent_id: str | None = None) -> Any:
    if agent_id is None:
        return None
    return context_of(info).loader.load("agent", agent_id)


def resolve_agents(_root: Any, info: GraphQLResolveInfo, status: str | None = None) -> Any:
    status = _status(status, AGENT_STATUSES, "agent")
    return context_of(info).loader.load("agents", None, (status,))


def resolve_images(_root: Any, info: GraphQLResolveInfo) -> Any:
    return context_of(info).loader.load("images", None)


def resolve_keypair(_root: Any, info: GraphQLResolveInfo, access_key: str | None = None) -> Any:
    return context_of(info).loader.load("keypair", access_key or _own(info))


def resolve_keypairs(
    _root: Any, info: GraphQLResolveInfo, user_id: Any = None, is_active: bool | None = None
) -> Any:
    return context_of(info).loader.load("keypairs", None, (_str_arg(user_id), is_active))


def resolve_vfolders(_root: Any, info: GraphQLResolveInfo, access_key: str | None = None) -> Any:
    return context_of(info).loader.load("vfolders", access_key or _own(info))


def resolve_compute_sessions(
    _root: Any, info: GraphQLResolveInfo, access_key: str | None = None, status: str | None = None
) -> Any:
    status = _session_status(status)
    return context_of(info).loader.load("sessions", access_key or _own(info), (status,))


def resolve_compute_session(
    _root: Any, info: GraphQLResolveInfo, sess_id: str | None = None
) -> Any:
    if sess_id is None:
        return {}
    params = (_owner_filter(info), _own(info))
    return context_of(info).loader.load("session", sess_id, params)


def resolve_compute_workers(
    _root: Any, info: GraphQLResolveInfo, sess_id: str, status: str | None = None
) -> Any:
    params = (_owner_filter(info), _session_status(status))
    return context_of(info).loader.load("workers_by_token", sess_id, params)


def _parse_day(value: str | None, name: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise errors.InvalidAPIParameters(f"'{name}' must be a date (YYYY-MM-DD).") from None


def resolve_usage(
    _root: Any,
    info: GraphQLResolveInfo,
    access_key: str | None = None,
    start_date: str | None = None,
    end_date: str | None = None,
    period: str | None = None,
) -> Any:
    ctx = context_of(info)
    try:
        chosen = Period(period or "day")
    except ValueError:
        raise errors.InvalidAPIParameters(
            f"'period' must be one of {', '.join(p.value for p in Period)}."
        ) from None
    last = _parse_day(end_date, "end_date") or datetime.now(UTC).date()
    first = _parse_day(start_date, "start_date") or last
    if first > last:
        raise errors.InvalidAPIParameters("'start_date' is after 'end_date'.")
    if last - first > timedelta(days=MAX_RANGE_DAYS):
        raise errors.InvalidAPIParameters(f"A usage query covers at most {MAX_RANGE_DAYS} days.")
    if not ctx.is_admin:
        keys: tuple[str, ...] | None = (ctx.viewer.access_key,)
    else:
        # Admins: one key, or every key when none is named (cluster-wide statistics).
        keys = (access_key,) if access_key else None
    params = (keys, first.isoformat(), last.isoformat(), chosen.value)
    return ctx.loader.load("usage", None, params)


def resolve_resource_policy(_root: Any, info: GraphQLResolveInfo, name: str | None = None) -> Any:
    ctx = context_of(info)
    return ctx.loader.load("policy", name or ctx.viewer.resource_policy)


def resolve_resource_policies(_root: Any, info: GraphQLResolveInfo) -> Any:
    return context_of(info).loader.load("policies", None)


def _mutation(name: str) -> Resolver:
    def resolve(_root: Any, info: GraphQLResolveInfo, **arguments: Any) -> Any:
        return context_of(info).loader.mutate(str(info.path.key), name, arguments)

    return resolve


# -- roots ----------------------------------------------------------------------------------

_STRING = GraphQLArgument(GraphQLString)
_USAGE_ARGS = {
    "start_date": _STRING,
    "end_date": _STRING,
    "period": _STRING,
}


def _admin_query() -> GraphQLObjectType:
    return GraphQLObjectType(
        "Query",
        {
            "agent": GraphQLField(Agent, args={"agent_id": _STRING}, resolve=resolve_agent),
            "agents": GraphQLField(
                GraphQLList(Agent), args={"status": _STRING}, resolve=resolve_agents
            ),
            "images": GraphQLField(GraphQLList(Image), resolve=resolve_images),
            "keypair": GraphQLField(KeyPair, args={"access_key": _STRING}, resolve=resolve_keypair),
            "keypairs": GraphQLField(
                GraphQLList(KeyPair),
                args={"user_id": _STRING, "is_active": GraphQLArgument(GraphQLBoolean)},
                resolve=resolve_keypairs,
            ),
            "vfolders": GraphQLField(
                GraphQLList(VirtualFolder), args={"access_key": _STRING}, resolve=resolve_vfolders
            ),
            "compute_sessions": GraphQLField(
                GraphQLList(ComputeSession),
                args={"access_key": _STRING, "status": _STRING},
                resolve=resolve_compute_sessions,
            ),
            "compute_session": GraphQLField(
                ComputeSession, args={"sess_id": _STRING}, resolve=resolve_compute_session
            ),
            "compute_workers": GraphQLField(
                GraphQLList(ComputeWorker),
                args={"sess_id": GraphQLArgument(GraphQLNonNull(GraphQLString)), "status": _STRING},
                resolve=resolve_compute_workers,
            ),
            "usage": GraphQLField(
                GraphQLList(UsageRecord),
                args={"access_key": _STRING, **_USAGE_ARGS},
                resolve=resolve_usage,
            ),
            "resource_policy": GraphQLField(
                ResourcePolicy, args={"name": _STRING}, resolve=resolve_resource_policy
            ),
            "resource_policies": GraphQLField(
                GraphQLList(ResourcePolicy), resolve=resolve_resource_policies
            ),
        },
    )


def _owner_query() -> GraphQLObjectType:
    return GraphQLObjectType(
        "Query",
        {
            "images": GraphQLField(GraphQLList(Image), resolve=resolve_images),
            "keypair": GraphQLField(KeyPair, resolve=resolve_keypair),
            "vfolders": GraphQLField(GraphQLList(VirtualFolder), resolve=resolve_vfolders),
            "compute_sessions": GraphQLField(
                GraphQLList(ComputeSession),
                args={"status": _STRING},
                resolve=resolve_compute_sessions,
            ),
            "compute_session": GraphQLField(
                ComputeSession, args={"sess_id": _STRING}, resolve=resolve_compute_session
            ),
            "compute_workers": GraphQLField(
                GraphQLList(ComputeWorker),
                args={"sess_id": GraphQLArgument(GraphQLNonNull(GraphQLString)), "status": _STRING},
                resolve=resolve_compute_workers,
            ),
            "usage": GraphQLField(
                GraphQLList(UsageRecord), args=dict(_USAGE_ARGS), resolve=resolve_usage
            ),
            "resource_policy": GraphQLField(ResourcePolicy, resolve=resolve_resource_policy),
        },
    )


def _nonnull(kind: Any) -> GraphQLArgument:
    return GraphQLArgument(GraphQLNonNull(kind))


def _admin_mutation() -> GraphQLObjectType:
    return GraphQLObjectType(
        "Mutation",
        {
            "create_keypair": GraphQLField(
                CreateKeyPair,
                args={"user_id": _nonnull(GraphQLString), "props": _nonnull(KeyPairInput)},
                resolve=_mutation("create_keypair"),
            ),
            "modify_keypair": GraphQLField(
                ModifyKeyPair,
                args={"access_key": _nonnull(GraphQLString), "props": _nonnull(KeyPairInput)},
                resolve=_mutation("modify_keypair"),
            ),
            "delete_keypair": GraphQLField(
                DeleteKeyPair,
                args={"access_key": _nonnull(GraphQLString)},
                resolve=_mutation("delete_keypair"),
            ),
            "create_resource_policy": GraphQLField(
                CreateResourcePolicy,
                args={"name": _nonnull(GraphQLString), "props": _nonnull(ResourcePolicyInput)},
                resolve=_mutation("create_resource_policy"),
            ),
            "modify_resource_policy": GraphQLField(
                ModifyResourcePolicy,
                args={"name": _nonnull(GraphQLString), "props": _nonnull(ResourcePolicyInput)},
                resolve=_mutation("modify_resource_policy"),
            ),
            "delete_resource_policy": GraphQLField(
                DeleteResourcePolicy,
                args={"name": _nonnull(GraphQLString)},
                resolve=_mutation("delete_resource_policy"),
            ),
        },
    )


ADMIN_SCHEMA = GraphQLSchema(query=_admin_query(), mutation=_admin_mutation())
OWNER_SCHEMA = GraphQLSchema(query=_owner_query())

__all__ = ["ADMIN_SCHEMA", "AGENT_STATUSES", "OWNER_SCHEMA", "SESSION_STATUSES"]
