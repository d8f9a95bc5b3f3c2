"""The app factory: a Quart-trio app around the services it is given."""

from __future__ import annotations

from quart import Response, g
from quart_trio import QuartTrio

from crucible.api import (
    admin,
    agent_socket,
    auth_check,
    folders,
    kernel,
    kernel_files,
    kernel_streams,
    manager_status,
    terminal,
    tunnels,
    version,
)
from crucible.api.context import EXTENSION_KEY
from crucible.api.flow_control import (
    DISCARD_TIMEOUT_KEY,
    StreamingHTTPConnection,
    StreamingRequest,
)
from crucible.api.middleware import APIMiddleware
from crucible.api.problems import register_error_handlers
from crucible.manager.components import ManagerComponents

BLUEPRINTS = (
    version.blueprint,
    auth_check.blueprint,
    manager_status.blueprint,
    kernel.blueprint,
    kernel_files.blueprint,
    kernel_streams.blueprint,
    terminal.blueprint,
    tunnels.blueprint,
    agent_socket.blueprint,
    folders.blueprint,
    admin.blueprint,
)


def create_app(ctx: ManagerComponents) -> QuartTrio:
    """Build the API app over the manager's components (`open_manager`), which carry
    every service the handlers use."""
    app = QuartTrio("crucible")
    # Bodies with flow control, so folder uploads stream to disk (crucible.api.flow_control).
    app.request_class = StreamingRequest
    app.asgi_http_class = StreamingHTTPConnection
    app.extensions[EXTENSION_KEY] = ctx
    app.config["MAX_CONTENT_LENGTH"] = ctx.config.manager.max_body_bytes
    app.config["BODY_TIMEOUT"] = ctx.config.manager.body_timeout
    app.config[DISCARD_TIMEOUT_KEY] = ctx.config.manager.discard_body_timeout
    app.config["JSON_SORT_KEYS"] = False
    # Every route lists its methods itself; automatic OPTIONS would shadow CORS handling.
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.url_map.strict_slashes = False
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    register_error_handlers(app)

    @app.after_request
    async def add_rate_limit_headers(response: Response) -> Response:
        headers: dict[str, str] | None = g.get("ratelimit_headers")
        if headers:
            response.headers.update(headers)
        return response

    app.asgi_app = APIMiddleware(  # type: ignore[method-assign, assignment]
        app.asgi_app, path_prefix=ctx.config.manager.path_prefix
    )
    return app
