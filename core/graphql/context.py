"""What every resolver and mutation of one GraphQL request can reach."""

from __future__ import annotations

import attrs
from graphql import GraphQLResolveInfo

from crucible.config import Config
from crucible.graphql.loader import Loader
from crucible.keypairs import Keypair, KeypairCache, KeypairRepository
from crucible.resource_policies import ResourcePolicyStore


@attrs.define
class GraphQLContext:
    #: The keypair making the request: admins see everything, owners their own data.
    viewer: Keypair
    loader: Loader
    config: Config
    keypairs: KeypairRepository
    keypair_cache: KeypairCache
    policies: ResourcePolicyStore

    @property
    def is_admin(self) -> bool:
        return self.viewer.is_admin


def context_of(info: GraphQLResolveInfo) -> GraphQLContext:
    context: GraphQLContext = info.context
    return context
