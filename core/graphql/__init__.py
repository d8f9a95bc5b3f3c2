"""The admin GraphQL API (spec 7): schemas, batched loading and the request executor."""

from crucible.graphql.executor import GraphQLOutcome, GraphQLService

__all__ = ["GraphQLOutcome", "GraphQLService"]
