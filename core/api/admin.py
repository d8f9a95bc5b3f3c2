"""``POST /admin/graphql`` (spec 7); the ``/v2``-``/v4`` aliases come from the middleware."""

from __future__ import annotations

import json
import logging

from quart import Blueprint, Response

from crucible.api.body import parsed_body
from crucible.api.context import manager_context
from crucible.api.guard import authenticated, current_keypair

log = logging.getLogger(__name__)

blueprint = Blueprint("admin", __name__)


@blueprint.route("/admin/graphql", methods=["POST"])
@authenticated
async def graphql() -> Response:
    ctx = manager_context()
    outcome = await ctx.graphql.run(current_keypair(), await parsed_body())
    log.debug("graphql: %d statement(s), %d pass(es)", outcome.statements, outcome.passes)
    # The data object itself is the root (spec 7.1 trap), its keys in selection order:
    # json.dumps keeps dict order, where a framework's encoder might sort.
    return Response(json.dumps(outcome.data), status=200, content_type="application/json")
