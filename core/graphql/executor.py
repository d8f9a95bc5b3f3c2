"""One admin GraphQL request, from the JSON body to the ``data`` object (spec 7.1).

Everything that can go wrong becomes a `ProblemError`: a bad body, syntax, a limit or a
validation rule → ``400 invalid-api-params`` (detail = the first message); a mutation
while the manager is frozen → ``503 server-frozen``; a problem a resolver raises → that
problem; anything else → ``500 general-error`` without internals (logged here).
"""

from __future__ import annotations

import logging
from typing import Any

import attrs
from graphql import (
    DocumentNode,
    ExecutionResult,
    GraphQLError,
    GraphQLSchema,
    OperationType,
    execute_sync,
    get_operation_ast,
    parse,
    validate,
)

from crucible import errors
from crucible.config import Config
from crucible.db.pool import Database
from crucible.graphql.context import GraphQLContext
from crucible.graphql.data import FETCHERS
from crucible.graphql.limits import VALIDATION_RULES, check_document, check_source
from crucible.graphql.loader import Loader
from crucible.graphql.mutations import MUTATIONS
from crucible.graphql.schema import ADMIN_SCHEMA, OWNER_SCHEMA
from crucible.keypairs import Keypair, KeypairCache, KeypairRepository
from crucible.manager.status import ManagerStatus, ManagerStatusStore
from crucible.resource_policies import ResourcePolicyStore

log = logging.getLogger(__name__)

#: Passes over one document; each reaches one level of data deeper. The depth limit
#: bounds the levels, so this only guards against a resolver that never stops missing.
MAX_PASSES = 32


@attrs.frozen
class GraphQLOutcome:
    data: dict[str, Any]
    #: SQL statements the request ran (its keypair lookup for authentication aside).
    statements: int
    passes: int


@attrs.define
class GraphQLService:
    """The services a GraphQL request may use; one per manager."""

    config: Config
    db: Database
    keypairs: KeypairRepository
    keypair_cache: KeypairCache
    status: ManagerStatusStore
    #: The same store session placement uses.
    policies: ResourcePolicyStore

    async def run(self, viewer: Keypair, body: Any) -> GraphQLOutcome:
        query, variables, operation_name = _request_parts(body)
        limits = self.config.graphql
        try:
            check_source(query, limits)
            document = parse(query, max_tokens=limits.max_tokens)
        except GraphQLError as exc:
            raise errors.InvalidAPIParameters(exc.message) from None
        check_document(document, limits)
        schema = ADMIN_SCHEMA if viewer.is_admin else OWNER_SCHEMA
        # Suggestions would read the owner schema only, but keep messages plain for owners.
        problems = validate(
            schema,
            document,
            VALIDATION_RULES,
            max_errors=10,
            hide_suggestions=not viewer.is_admin,
        )
        if problems:
            raise errors.InvalidAPIParameters(problems[0].message)
        operation = get_operation_ast(document, operation_name)
        if operation is None:
            raise errors.InvalidAPIParameters(
                "Name the operation to run (operationName)."
                if operation_name is None
                else f"No operation named {operation_name!r}."
            )
        if operation.operation is not OperationType.QUERY and (
            operation.operation is OperationType.SUBSCRIPTION or schema.mutation_type is None
        ):
            # Owners have no Mutation type; graphql-core would only notice while executing.
            raise errors.InvalidAPIParameters(
                f"This key may not run {operation.operation.value} operations."
            )
        if operation.operation is OperationType.MUTATION:
            await self._require_running()
        loader = Loader(self.db, FETCHERS, MUTATIONS)
        loader.context = GraphQLContext(
            viewer=viewer,
            loader=loader,
            config=self.config,
            keypairs=self.keypairs,
            keypair_cache=self.keypair_cache,
            policies=self.policies,
        )
        return await _execute(schema, document, loader, variables, operation_name)

    async def _require_running(self) -> None:
        status = await self.status.get()
        if status is ManagerStatus.FROZEN:
            raise errors.ServerFrozen("Mutations are refused while the manager is frozen.")
        if status is not ManagerStatus.RUNNING:
            raise errors.ServiceUnavailable(f"The manager is {status.value}.")


def _request_parts(body: Any) -> tuple[str, dict[str, Any] | None, str | None]:
    if not isinstance(body, dict):
        raise errors.InvalidAPIParameters("The body must be a JSON object.")
    query = body.get("query")
    if not isinstance(query, str):
        raise errors.InvalidAPIParameters("'query' must be a string.")
    variables = body.get("variables")
    if variables is not None and not isinstance(variables, dict):
        raise errors.InvalidAPIParameters("'variables' must be an object.")
    operation_name = body.get("operationName")
    if operation_name is not None and not isinstance(operation_name, str):
        raise errors.InvalidAPIParameters("'operationName' must be a string.")
    return query, variables, operation_name


async def _execute(
    schema: GraphQLSchema,
    document: DocumentNode,
    loader: Loader,
    variables: dict[str, Any] | None,
    operation_name: str | None,
) -> GraphQLOutcome:
    passes = 0
    while passes < MAX_PASSES:
        passes += 1
        result = execute_sync(
            schema,
            document,
            context_value=loader.context,
            variable_values=variables,
            operation_name=operation_name,
        )
        if result.errors or not loader.has_pending:
            break
        try:
            await loader.fetch_pending()
        except errors.ProblemError:
            raise
        except Exception as exc:
            log.exception("GraphQL data loading failed")
            raise errors.GeneralError("The query could not be answered.") from exc
    else:
        log.error("GraphQL execution did not settle within %d passes", MAX_PASSES)
        raise errors.GeneralError("The query could not be answered.")
    _raise_first_error(result)
    return GraphQLOutcome(data=result.data or {}, statements=loader.statements, passes=passes)


def _raise_first_error(result: ExecutionResult) -> None:
    if not result.errors:
        return
    # A crash anywhere outranks the client's own mistakes: it is what needs fixing.
    for error in result.errors:
        original = error.original_error
        if original is not None and not isinstance(original, (GraphQLError, errors.ProblemError)):
            log.error("GraphQL resolver failed at %s", error.path, exc_info=original)
            raise errors.GeneralError("The query could not be answered.")
    for error in result.errors:
        if isinstance(error.original_error, errors.ProblemError):
            raise error.original_error
    # Variable and argument coercion errors: the request itself is wrong.
    raise errors.InvalidAPIParameters(result.errors[0].message)
