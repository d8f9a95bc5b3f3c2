"""The two admin GraphQL schemas of spec 7.2-7.4: full admin and restricted owner.

Both share the object types (`crucible.graphql.types`); they differ in their roots.
Owners get no ``Mutation`` type and roots without the arguments that would address
other keys, so using an admin-only field or argument fails standard validation (400),
before anything runs. Each root field is written once below, with the arguments each
schema gives it.

Resolvers only read the request's `Loader` (see `crucible.graphql.loader`).
"""

from __future__ import annotations

import attrs
from graphql import (
    GraphQLArgument,
    GraphQLBoolean,
    GraphQLField,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    GraphQLString,
)

from crucible.graphql import resolvers
from crucible.graphql.resolvers import Resolver
from crucible.graphql.types import (
    Agent,
    ComputeSession,
    ComputeWorker,
    Image,
    KeyPair,
    KeyPairInput,
    ResourcePolicy,
    ResourcePolicyInput,
    UsageRecord,
    VirtualFolder,
    result_type,
)

_STRING = GraphQLArgument(GraphQLString)


def _required(kind: GraphQLInputType) -> GraphQLArgument:
    return GraphQLArgument(GraphQLNonNull(kind))


@attrs.frozen
class RootField:
    kind: GraphQLOutputType
    resolve: Resolver
    #: The admin schema's arguments.
    args: dict[str, GraphQLArgument] = attrs.Factory(dict)
    #: The arguments the owner schema keeps; None: the field is the admin's alone.
    owner_args: tuple[str, ...] | None = None

    def field(self, *, admin: bool) -> GraphQLField:
        names = self.args if admin else (self.owner_args or ())
        return GraphQLField(
            self.kind, args={name: self.args[name] for name in names}, resolve=self.resolve
        )


_USAGE_ARGS = ("start_date", "end_date", "period")

QUERY_FIELDS = {
    "agent": RootField(Agent, resolvers.resolve_agent, {"agent_id": _STRING}),
    "agents": RootField(GraphQLList(Agent), resolvers.resolve_agents, {"status": _STRING}),
    "images": RootField(GraphQLList(Image), resolvers.resolve_images, owner_args=()),
    "keypair": RootField(
        KeyPair, resolvers.resolve_keypair, {"access_key": _STRING}, owner_args=()
    ),
    "keypairs": RootField(
        GraphQLList(KeyPair),
        resolvers.resolve_keypairs,
        {"user_id": _STRING, "is_active": GraphQLArgument(GraphQLBoolean)},
    ),
    "vfolders": RootField(
        GraphQLList(VirtualFolder),
        resolvers.resolve_vfolders,
        {"access_key": _STRING},
        owner_args=(),
    ),
    "compute_sessions": RootField(
        GraphQLList(ComputeSession),
        resolvers.resolve_compute_sessions,
        {"access_key": _STRING, "status": _STRING},
        owner_args=("status",),
    ),
    "compute_session": RootField(
        ComputeSession,
        resolvers.resolve_compute_session,
        {"sess_id": _STRING},
        owner_args=("sess_id",),
    ),
    "compute_workers": RootField(
        GraphQLList(ComputeWorker),
        resolvers.resolve_compute_workers,
        {"sess_id": _required(GraphQLString), "status": _STRING},
        owner_args=("sess_id", "status"),
    ),
    "usage": RootField(
        GraphQLList(UsageRecord),
        resolvers.resolve_usage,
        {"access_key": _STRING, **dict.fromkeys(_USAGE_ARGS, _STRING)},
        owner_args=_USAGE_ARGS,
    ),
    "resource_policy": RootField(
        ResourcePolicy, resolvers.resolve_resource_policy, {"name": _STRING}, owner_args=()
    ),
    "resource_policies": RootField(
        GraphQLList(ResourcePolicy), resolvers.resolve_resource_policies
    ),
}


def _query(*, admin: bool) -> GraphQLObjectType:
    return GraphQLObjectType(
        "Query",
        {
            name: root.field(admin=admin)
            for name, root in QUERY_FIELDS.items()
            if admin or root.owner_args is not None
        },
    )


#: Mutation name → (its result type, its arguments); the admin's alone.
MUTATION_FIELDS: dict[str, tuple[GraphQLObjectType, dict[str, GraphQLArgument]]] = {
    "create_keypair": (
        result_type("CreateKeyPair", keypair=GraphQLField(KeyPair)),
        {"user_id": _required(GraphQLString), "props": _required(KeyPairInput)},
    ),
    "modify_keypair": (
        result_type("ModifyKeyPair"),
        {"access_key": _required(GraphQLString), "props": _required(KeyPairInput)},
    ),
    "delete_keypair": (result_type("DeleteKeyPair"), {"access_key": _required(GraphQLString)}),
    "create_resource_policy": (
        result_type("CreateResourcePolicy"),
        {"name": _required(GraphQLString), "props": _required(ResourcePolicyInput)},
    ),
    "modify_resource_policy": (
        result_type("ModifyResourcePolicy"),
        {"name": _required(GraphQLString), "props": _required(ResourcePolicyInput)},
    ),
    "delete_resource_policy": (
        result_type("DeleteResourcePolicy"),
        {"name": _required(GraphQLString)},
    ),
}


def _mutation() -> GraphQLObjectType:
    return GraphQLObjectType(
        "Mutation",
        {
            name: GraphQLField(kind, args=args, resolve=resolvers.mutation(name))
            for name, (kind, args) in MUTATION_FIELDS.items()
        },
    )


ADMIN_SCHEMA = GraphQLSchema(query=_query(admin=True), mutation=_mutation())
OWNER_SCHEMA = GraphQLSchema(query=_query(admin=False))

__all__ = ["ADMIN_SCHEMA", "OWNER_SCHEMA"]
