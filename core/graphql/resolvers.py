"""The root fields' resolvers: the arguments checked, the viewer's rights applied, the
data asked of the request's `Loader` (`crucible.graphql.data` fetches it).

An owner's schema has no arguments that address other keys (`crucible.graphql.schema`);
here an absent key means the viewer's own, and owners are held to their own data.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from graphql import GraphQLResolveInfo

from crucible.graphql.arguments import UsageRange, agent_status, session_status, str_arg
from crucible.graphql.context import context_of

Resolver = Callable[..., Any]


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
    return context_of(info).loader.load("agents", None, (agent_status(status),))


def resolve_images(_root: Any, info: GraphQLResolveInfo) -> Any:
    return context_of(info).loader.load("images", None)


def resolve_keypair(_root: Any, info: GraphQLResolveInfo, access_key: str | None = None) -> Any:
    return context_of(info).loader.load("keypair", access_key or _own(info))


def resolve_keypairs(
    _root: Any, info: GraphQLResolveInfo, user_id: Any = None, is_active: bool | None = None
) -> Any:
    return context_of(info).loader.load("keypairs", None, (str_arg(user_id), is_active))


def resolve_vfolders(_root: Any, info: GraphQLResolveInfo, access_key: str | None = None) -> Any:
    return context_of(info).loader.load("vfolders", access_key or _own(info))


def resolve_compute_sessions(
    _root: Any, info: GraphQLResolveInfo, access_key: str | None = None, status: str | None = None
) -> Any:
    status = session_status(status)
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
    params = (_owner_filter(info), session_status(status))
    return context_of(info).loader.load("workers_by_token", sess_id, params)


def resolve_usage(
    _root: Any,
    info: GraphQLResolveInfo,
    access_key: str | None = None,
    start_date: str | None = None,
    end_date: str | None = None,
    period: str | None = None,
) -> Any:
    ctx = context_of(info)
    dates = UsageRange.from_arguments(start_date, end_date, period)
    if not ctx.is_admin:
        keys: tuple[str, ...] | None = (ctx.viewer.access_key,)
    else:
        # Admins: one key, or every key when none is named (cluster-wide statistics).
        keys = (access_key,) if access_key else None
    params = (keys, dates.first.isoformat(), dates.last.isoformat(), dates.period.value)
    return ctx.loader.load("usage", None, params)


def resolve_resource_policy(_root: Any, info: GraphQLResolveInfo, name: str | None = None) -> Any:
    ctx = context_of(info)
    return ctx.loader.load("policy", name or ctx.viewer.resource_policy)


def resolve_resource_policies(_root: Any, info: GraphQLResolveInfo) -> Any:
    return context_of(info).loader.load("policies", None)


def mutation(name: str) -> Resolver:
    """The resolver of mutation `name` (`crucible.graphql.mutations` runs it)."""

    def resolve(_root: Any, info: GraphQLResolveInfo, **arguments: Any) -> Any:
        return context_of(info).loader.mutate(str(info.path.key), name, arguments)

    return resolve
