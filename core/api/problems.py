"""The single place that renders errors as ``application/problem+json`` (spec 1.7)."""

from __future__ import annotations

import json
import logging

from quart import Quart, Response, request
from werkzeug import exceptions as http_exc

from crucible import errors

log = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"


def problem_response(problem: errors.ProblemError) -> Response:
    response = Response(
        json.dumps(problem.to_problem()),
        status=problem.status,
        content_type=PROBLEM_CONTENT_TYPE,
    )
    response.headers.update(problem.headers())
    return response


def problem_for_http_exception(exc: http_exc.HTTPException) -> errors.ProblemError:
    """Translate the framework's own HTTP errors into the project's problem types."""
    if isinstance(exc, http_exc.NotFound):
        return errors.GenericNotFound(f"No route for {request.path}.")
    if isinstance(exc, http_exc.MethodNotAllowed):
        return errors.MethodNotAllowed(
            f"{request.method} is not allowed on {request.path}.",
            allowed=list(exc.valid_methods or []),
        )
    if isinstance(exc, http_exc.RequestEntityTooLarge):
        return errors.RequestTooLarge("The request body exceeds the server's limit.")
    if isinstance(exc, http_exc.RequestTimeout):
        return errors.GenericBadRequest("The request body did not arrive in time.")
    if exc.code is not None and exc.code < 500:
        return errors.GenericBadRequest(exc.description or exc.name)
    return errors.InternalServerError()


def register_error_handlers(app: Quart) -> None:
    @app.errorhandler(errors.ProblemError)
    async def on_problem(exc: errors.ProblemError) -> Response:
        return problem_response(exc)

    @app.errorhandler(http_exc.HTTPException)
    async def on_http_exception(exc: http_exc.HTTPException) -> Response:
        return problem_response(problem_for_http_exception(exc))

    @app.errorhandler(Exception)
    async def on_unexpected(exc: Exception) -> Response:
        # The traceback goes to the log, never to the client.
        log.error("unhandled error on %s %s", request.method, request.path, exc_info=exc)
        return problem_response(errors.InternalServerError())

